/**
 * What one step costs the node, a workflow file against its TypeScript
 * twin: each role's `run` (request building, reply reading, `set`) and the
 * choice of the next role, with an LLM that answers at once, so only the
 * templates and expressions (or the plugin's code) are timed. CPU time of
 * this process over many calls, after a warm-up; the states are those of a
 * real task at a short and a long history.
 */
import { builtinWorkflows } from "../plugins/index.ts";
import { makeJobRuntime } from "../src/engine/job.ts";
import { newTaskState } from "../src/engine/tasks.ts";
import type { ChatRequest, ChatResult } from "../src/llm/types.ts";
import { silentLogger } from "../src/log.ts";
import type { AgentContext, AnyWorkflow } from "../src/plugin/api.ts";
import type { TaskState, Turn } from "../src/protocol/task.ts";
import { Registry } from "../src/plugin/registry.ts";
import { loadWorkflowFile } from "../src/workflow/index.ts";

/** One role's step at one point of a task. */
export interface StepCost {
  workflow: string;
  role: string;
  /** turns in the history when the step runs */
  turns: number;
  /** CPU microseconds per step (run + next) */
  tsUs: number;
  fileUs: number;
}

/** A turn of about `words` words, as the simulated model writes them. */
function turnText(i: number, words: number, answer: string): string {
  const vocab = ["the", "step", "therefore", "we", "check", "value", "answer", "since", "holds", "result", "so", "it", "is", "given"];
  const out: string[] = [];
  for (let w = 0; w < words; w++) out.push(vocab[(i * 7 + w * 3) % vocab.length] as string);
  return `${out.join(" ")}.\nAnswer: (${answer})`;
}

function result(text: string): ChatResult {
  return { text, toolCalls: [], finishReason: "stop", usage: { prompt: 100, completion: 20 }, endpoint: "http://bench", model: "bench", ms: 0, attempts: 1 };
}

/** The replies of an LLM that answers at once, by stage (the first line of the system prompt). */
function instantReply(req: ChatRequest): ChatResult {
  const system = typeof req.messages[0]?.content === "string" ? req.messages[0].content : "";
  if (system.startsWith("Extract the final answer")) return result("B");
  if (system.startsWith("Does the text below")) return result("Yes");
  if (system.startsWith("Score the document")) {
    return result('{"reasoning_depth": 4, "problem_complexity": 4, "technical_correctness": 5, "educational_value": 4, "justification": "it argues"}');
  }
  if (system.startsWith("From the document below")) return result("Question: What is 6 / 3 after the steps?\nAnswer: Dividing, 6 / 3 = \\boxed{2}");
  return result(turnText(req.messages.length, 120, "B"));
}

function context(config: unknown): AgentContext {
  return {
    llm: { chat: async (req) => instantReply(req) },
    log: silentLogger,
    signal: new AbortController().signal,
    config,
    random: () => 0.5,
    node: "bench",
    services: {},
  };
}

/** A coral task after `turns` dialogue turns (each with its extraction), the next speaker about to talk. */
function coralState(wf: AnyWorkflow, config: unknown, turns: number): TaskState {
  const job = makeJobRuntime({ id: "bench", workflow: wf, options: config, seed: 1, stepRetries: 0 });
  const seed = { id: "q1", question: "What is (16 + 5) * 8?", options: ["166", "169", "168", "198"], answer: "C" };
  const state = newTaskState(job, "q1", 0, seed);
  const history: Turn[] = [];
  for (let t = 0; t < turns; t++) {
    const role = t % 2 === 0 ? "teacher" : "student";
    history.push({ role, text: turnText(t, 120, "B"), usage: { prompt: 500, completion: 120 }, model: "bench", endpoint: "http://bench", node: "bench", at: 0, ms: 1 });
    history.push({ role: "extractor", text: "B", usage: { prompt: 150, completion: 1 }, model: "bench", endpoint: "http://bench", node: "bench", at: 0, ms: 1 });
  }
  state.history = history;
  const speaker = turns % 2 === 1 ? "teacher" : "student";
  // The last speaker and its answer, in each twin's own variables (the file keeps `agreed: null` too).
  Object.assign(state.vars, { turn: turns, speaker, answers: { teacher: turns > 0 ? "B" : null, student: turns > 1 ? "A" : null } });
  state.steps = turns * 3;
  return state;
}

/** A reasoning-extract task that passed the lang-filter, over the shipped document `text`. */
function extractState(wf: AnyWorkflow, config: unknown, text: string, file: boolean): TaskState {
  const job = makeJobRuntime({ id: "bench", workflow: wf, options: config, seed: 1, stepRetries: 0 });
  const state = newTaskState(job, "doc-1", 0, { id: "doc-1", text, url: "https://example.org/a", lang: "en" });
  state.history = [{ role: "lang-filter", text: "pass (text looks en; en/de/fr/es hits 40/0/0/1)", at: 0, ms: 1 }];
  Object.assign(state.vars, { passed: 1, detected: "en" }, file ? { doc: text.slice(0, 24_000) } : {});
  state.steps = 1;
  return state;
}

/** CPU microseconds per call of `step`, over about `budgetMs` of CPU after a warm-up. */
async function cpuPerCall(step: () => Promise<unknown>, budgetMs: number): Promise<number> {
  for (let i = 0; i < 2000; i++) await step();
  let calls = 0;
  const start = process.cpuUsage();
  let spent = 0;
  while (spent < budgetMs * 1000) {
    for (let i = 0; i < 100; i++) await step();
    calls += 100;
    const u = process.cpuUsage(start);
    spent = u.user + u.system;
  }
  return spent / calls;
}

/** Time one role's step (run, then next) of a workflow on copies of a state. */
function stepOf(wf: AnyWorkflow, role: string, config: unknown, state: TaskState): () => Promise<unknown> {
  const r = wf.roles[role];
  if (!r) throw new Error(`${wf.name} has no role ${role}`);
  const ctx = context(config);
  return async () => {
    const res = await r.run(state, ctx);
    // The engine merges the step's variables before it asks for the next role.
    const after = res.vars ? { ...state, vars: { ...state.vars, ...res.vars } } : state;
    return wf.next(after, config, role);
  };
}

/**
 * Every role of coral and reasoning-extract, the TypeScript plugin against
 * the file in configs/workflows/, `budgetMs` of CPU per measurement.
 */
export async function measureStepCosts(root: string, budgetMs: number, docText: string): Promise<StepCost[]> {
  const registry = new Registry(builtinWorkflows);
  const workflows = (n: string) => registry.find(n);
  const out: StepCost[] = [];
  const pair = (name: string) => {
    const ts = registry.get(name);
    const file = loadWorkflowFile(`${root}/configs/workflows/${name}.yaml`, { workflows }).workflow;
    return { ts, file, tsConfig: ts.configSchema.parse({}), fileConfig: file.configSchema.parse({}) };
  };

  const coral = pair("coral");
  for (const turns of [1, 16]) {
    for (const role of ["teacher", "student", "extractor", "matcher"]) {
      // The speaker that talks next; the extractor and matcher follow the one that just did.
      if ((role === "teacher" && turns % 2 === 1) || (role === "student" && turns % 2 === 0)) continue;
      const tsState = coralState(coral.ts, coral.tsConfig, turns);
      const fileState = coralState(coral.file, coral.fileConfig, turns);
      const tsUs = await cpuPerCall(stepOf(coral.ts, role, coral.tsConfig, tsState), budgetMs);
      const fileUs = await cpuPerCall(stepOf(coral.file, role, coral.fileConfig, fileState), budgetMs);
      out.push({ workflow: "coral", role, turns: tsState.history.length, tsUs, fileUs });
    }
  }

  const re = pair("reasoning-extract");
  for (const role of ["filter", "score", "question"]) {
    const tsUs = await cpuPerCall(stepOf(re.ts, role, re.tsConfig, extractState(re.ts, re.tsConfig, docText, false)), budgetMs);
    const fileUs = await cpuPerCall(stepOf(re.file, role, re.fileConfig, extractState(re.file, re.fileConfig, docText, true)), budgetMs);
    out.push({ workflow: "reasoning-extract", role, turns: 1, tsUs, fileUs });
  }
  return out;
}
