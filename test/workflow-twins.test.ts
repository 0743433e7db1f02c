import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { z } from "zod";
import { builtinWorkflows } from "../plugins/index.ts";
import { makeJobRuntime } from "../src/engine/job.ts";
import { runJob } from "../src/engine/run.ts";
import { createLlmClient } from "../src/llm/index.ts";
import type { ChatOptions, ChatRequest, LlmClient } from "../src/llm/types.ts";
import { silentLogger } from "../src/log.ts";
import type { AnyWorkflow } from "../src/plugin/api.ts";
import { Registry } from "../src/plugin/registry.ts";
import { startSim, type SimServer } from "../src/sim/index.ts";
import { canonicalJson, fnv1a } from "../src/util/hash.ts";
import { type LoadedWorkflow, loadWorkflowFile, parseWorkflowText } from "../src/workflow/index.ts";
import { readRows, tempDir, writeLines } from "./support/files.ts";
import { ROOT } from "./support/matrixd.ts";
import { completion, startServer } from "./support/scripted-llm.ts";

/**
 * The bundled workflows written as files (configs/workflows/) against their
 * TypeScript twins (plugins/): each pair runs the same seeds against the
 * same LLM servers and must give the same dataset (output, metrics, every
 * turn's text, tokens and model) from the same LLM requests. The rows'
 * `workflow`, provenance and timings differ by design.
 */

const tmp = tempDir();
const registry = new Registry(builtinWorkflows);
const builtin = (name: string) => (registry.names().includes(name) ? registry.get(name) : undefined);
const fileOf = (name: string) => join(ROOT, "configs/workflows", `${name}.yaml`);
const load = (name: string): LoadedWorkflow => loadWorkflowFile(fileOf(name), { workflows: builtin });

const RE_MODELS = { filterModel: "re-small", scoreModel: "re-large", questionModel: "re-large" };

let sims: SimServer[] = [];
let llm: LlmClient;

beforeAll(async () => {
  // A server for unnamed models and one per reasoning-extract model, so model names route as in production.
  sims = await Promise.all(["sim-llm", "re-small", "re-large"].map((model) => startSim({ model, slots: 256, timeScale: 0.0005 })));
  llm = createLlmClient({ endpoints: sims.map((s) => ({ url: `${s.url}/v1`, models: [s.options.model], maxConcurrency: 256 })), retries: 2 });
});

afterAll(async () => {
  await llm?.close();
  for (const s of sims) await s.stop();
  tmp.remove();
});

/** The seed lines of a shipped set, the first `n`. */
function shipped(name: string, n = Infinity): string[] {
  return readFileSync(join(ROOT, "configs/seeds", `${name}.jsonl`), "utf8")
    .split("\n")
    .filter((l) => l.length > 0)
    .slice(0, n);
}

/** A client that records every request its callers make. */
function recording(inner: LlmClient): { client: LlmClient; requests: ChatRequest[] } {
  const requests: ChatRequest[] = [];
  const client = new Proxy(inner, {
    get(target, prop) {
      if (prop === "chat") {
        return (req: ChatRequest, opts?: ChatOptions) => {
          requests.push(structuredClone(req));
          return target.chat(req, opts);
        };
      }
      const v = Reflect.get(target, prop, target);
      return typeof v === "function" ? v.bind(target) : v;
    },
  });
  return { client, requests };
}

/** What must be the same in both twins' rows. */
// biome-ignore lint/suspicious/noExplicitAny: rows read back from files
function comparable(r: any) {
  return {
    id: r.id,
    status: r.status,
    error: r.error,
    output: r.output,
    metrics: r.metrics,
    // biome-ignore lint/suspicious/noExplicitAny: turns of those rows
    history: r.history.map((t: any) => ({ role: t.role, text: t.text, toolCalls: t.toolCalls, toolCallId: t.toolCallId, usage: t.usage, model: t.model })),
  };
}

/** Run one workflow on seed lines; the rows (sorted by id) and the requests (canonical JSON, sorted). */
async function runOn(workflow: AnyWorkflow, seeds: string[], options: Record<string, unknown>, client: LlmClient, label: string) {
  const rec = recording(client);
  const base = tmp.path(`${label}-${Math.random().toString(36).slice(2)}`);
  writeLines(`${base}.seeds.jsonl`, seeds);
  // One job id for both twins: it names nothing the rows compare, but keeps everything else equal.
  const job = makeJobRuntime({ id: "twins", workflow, options, seed: 1, stepRetries: 0 });
  const summary = await runJob({ job, seedsPath: `${base}.seeds.jsonl`, outPath: `${base}.out.jsonl`, concurrency: 256, trials: 1, llm: rec.client, log: silentLogger, node: "n1" });
  const rows = readRows(`${base}.out.jsonl`)
    .map(comparable)
    .sort((a, b) => a.id.localeCompare(b.id));
  return { summary, rows, requests: rec.requests.map((r) => canonicalJson(r)).sort() };
}

/** Both twins on the same seeds and options: the same requests and the same dataset. */
async function twins(name: string, seeds: string[], options: Record<string, unknown> = {}, client: LlmClient = llm, file: LoadedWorkflow = load(name)) {
  const ts = await runOn(registry.get(name), seeds, options, client, `${name}-ts`);
  const fromFile = await runOn(file.workflow, seeds, options, client, `${name}-file`);
  expect(ts.rows.length).toBe(seeds.length);
  return { ts, file: fromFile };
}

/** The first difference between two row lists, for a readable failure. */
function firstDifference<T extends { id: string }>(a: T[], b: T[]): { ts: T | undefined; file: T | undefined } | undefined {
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    if (canonicalJson(a[i]) !== canonicalJson(b[i])) return { ts: a[i], file: b[i] };
  }
  return undefined;
}

function expectSame(pair: Awaited<ReturnType<typeof twins>>): void {
  expect(firstDifference(pair.ts.rows, pair.file.rows)).toBeUndefined();
  expect(pair.file.rows).toEqual(pair.ts.rows);
  expect(pair.file.requests.length).toBe(pair.ts.requests.length);
  expect(pair.file.requests).toEqual(pair.ts.requests);
}

describe("workflow twins", () => {
  test("workflow twins - the files check clean; reasoning-extract borrows only its lang-filter", () => {
    const coral = load("coral");
    expect(Object.values(coral.file.roles).map((r) => r.kind)).not.toContain("ts");
    const re = load("reasoning-extract");
    expect(Object.entries(re.file.roles).flatMap(([n, r]) => (r.kind === "ts" ? [n] : []))).toEqual(["lang-filter"]);
    // The same options, with the same defaults.
    for (const [name, file] of [["coral", coral], ["reasoning-extract", re]] as const) {
      const tsSchema = registry.get(name).configSchema as unknown as z.ZodObject;
      const defaults = tsSchema.parse({}) as Record<string, unknown>;
      const fromFile = file.workflow.configSchema.parse({}) as Record<string, unknown>;
      expect(Object.keys(fromFile).sort()).toEqual(Object.keys(tsSchema.shape).sort());
      // The twin's schema takes the file's defaults and gives back its own; the file's null is the twin's unset.
      expect(tsSchema.parse(Object.fromEntries(Object.entries(fromFile).filter(([, v]) => v !== null)))).toEqual(defaults);
      expect(file.workflow.maxSteps?.(fromFile)).toBe(registry.get(name).maxSteps?.(defaults));
    }
    // maxSteps follows the options, as the twin's does; it can read nothing else.
    expect(coral.workflow.maxSteps?.({ ...coral.workflow.configSchema.parse({}), maxTurns: 50 } as never)).toBe(160);
    expect(() => parseWorkflowText("name: x\nstart: a\nroles: { a: { kind: code, set: { n: '1' }, next: end } }\nmaxSteps: vars.n\n", "x.yaml")).toThrow("reads `vars`");
  });

  test("workflow twins - coral: the same dialogues, extractions, agreements and requests", async () => {
    const pair = await twins("coral", shipped("coral", 120));
    expectSame(pair);
    const agreed = pair.ts.rows.filter((r) => r.output.agreement);
    expect(agreed.length).toBeGreaterThan(0);
    expect(agreed.some((r) => r.output.agreement_correctness)).toBe(true);
    expect(agreed.some((r) => !r.output.agreement_correctness)).toBe(true);
    // Some answers were "not sure" (no letter), which never agree.
    expect(pair.ts.rows.some((r) => r.history.some((t: { role: string; text: string }) => t.role === "extractor" && t.text === "not sure"))).toBe(true);
  }, 60_000);

  test("workflow twins - coral with options: few turns (dialogues that never agree), a whole temperature, models by name", async () => {
    const options = { maxTurns: 3, temperature: 1, maxTokens: 256, teacherModel: "re-large", studentModel: "re-small", extractorModel: "sim-llm" };
    const pair = await twins("coral", shipped("coral", 60), options);
    expectSame(pair);
    expect(pair.ts.rows.some((r) => !r.output.agreement && r.output.turns === 3)).toBe(true);
    expect(pair.ts.rows.some((r) => r.output.agreement)).toBe(true);
    const models = new Set(pair.file.rows.flatMap((r) => r.history.map((t: { role: string; model: string }) => `${t.role}:${t.model}`)));
    expect([...models].sort()).toEqual(["extractor:sim-llm", "student:re-small", "teacher:re-large"]);
  }, 60_000);

  test("workflow twins - reasoning-extract: the shipped documents, every stage's drop and pass, score retries", async () => {
    const docs = shipped("reasoning-extract");
    const pair = await twins("reasoning-extract", docs, RE_MODELS);
    expectSame(pair);
    const rows = pair.ts.rows;
    const reasons = new Set(rows.map((r) => `${r.output.stopped_at}: ${String(r.output.reason).replace(/[\d.]+|"[^"]*"|LLM reply.*/g, "#")}`));
    for (const r of [
      'lang-filter: language tag is #',
      "lang-filter: text looks like de, not English",
      "filter: the filter found no advanced reasoning",
      "score: score # is below the threshold #",
      "score: no valid scores: #",
      "question: no \\boxed{} final answer in the reply",
      "question: the question is not self-contained (it refers to the document)",
      "question: no question in the reply",
      "null: null",
    ]) {
      expect(reasons).toContain(r);
    }
    // Structured output: replies refused and asked again, then valid.
    expect(rows.some((r) => r.metrics.score_tries >= 2 && r.output.scores !== null)).toBe(true);
    // Documents longer than the excerpt were cut the same way.
    const long = new Set(docs.map((l) => JSON.parse(l)).flatMap((d) => (d.text.length > 24_000 ? [d.id] : [])));
    expect(rows.some((r) => long.has(r.id) && r.output.stopped_at !== "lang-filter")).toBe(true);
  }, 60_000);

  test("workflow twins - reasoning-extract with options: a whole threshold, no score retries, short excerpts, more words", async () => {
    const options = { threshold: 3, scoreRetries: 0, maxDocChars: 1000, minWords: 120, temperature: 1, filterMaxTokens: 4 };
    const pair = await twins("reasoning-extract", shipped("reasoning-extract", 800), options);
    expectSame(pair);
    expect(pair.ts.rows.some((r) => /^too short \(\d+ words\)$/.test(r.output.reason))).toBe(true);
    expect(pair.ts.rows.some((r) => /^score [\d.]+ is below the threshold 3$/.test(r.output.reason ?? ""))).toBe(true);
    expect(pair.ts.rows.some((r) => r.output.stopped_at === null)).toBe(true);
  }, 60_000);

  test("workflow twins - odd replies a real model may give are read the same by both (scripted server)", async () => {
    // The answer is a function of the request alone, so both twins get the same ones.
    const pickOf = (body: Record<string, unknown>, list: string[]) => list[fnv1a(canonicalJson([body.messages, body.seed ?? null])) % list.length] as string;
    const server = startServer((_n, body) => {
      const messages = body.messages as { role: string; content: string }[];
      const system = messages[0]?.content ?? "";
      if (system.startsWith("Extract the final answer")) return completion(pickOf(body, [" b.", "(E)", "The answer is (c)", "not sure", "", "answer: A", "D", "(a)\n"]));
      if (system.includes("multiple-choice question")) return completion(pickOf(body, ["  I think (A).\nAnswer: (A)  ", "Hmm.\nAnswer: not sure", "Answer: (B)"]));
      if (system.startsWith("Does the text below")) return completion(pickOf(body, [" Yes", "no.", "  Maybe ", "It argues carefully, so: yes", '"No"', "YES!", "neither"]));
      if (system.startsWith("Score the document")) {
        return completion(
          pickOf(body, [
            '{"reasoning_depth": 4, "problem_complexity": 5, "technical_correctness": 4, "educational_value": 4}',
            '```json\n{"reasoning_depth": 3, "problem_complexity": 3, "technical_correctness": 4, "educational_value": 4, "justification": "ok"}\n```',
            '{"reasoning_depth": 9, "problem_complexity": 3, "technical_correctness": 4, "educational_value": 4}',
            "It is a good page.",
            '{"reasoning_depth": 2, "problem_complexity": 2, "technical_correctness": 1, "educational_value": 2}',
          ]),
        );
      }
      return completion(
        pickOf(body, [
          "Let me think.\nQuestion: What is 2 + 3?\nAnswer: 2 + 3 = \\boxed{5}",
          "Question: draft\nQuestion:  What is 6 / 3?  \nAnswer: it is \\boxed{2} \n",
          "Question: What is 2 + 3?\nAnswer: five",
          "Question:   \nAnswer: \\boxed{1}",
          "Question: According to the text, what is x?\nAnswer: \\boxed{1}",
          "Question: What is x?",
          "no idea",
          "Question: What is {1}?\nAnswer: \\boxed{\\frac{1}{2}} or \\boxed{}",
        ]),
      );
    });
    const scripted = createLlmClient({ endpoints: [{ url: server.url, kind: "vllm", slots: 64 }], retries: 0 });
    try {
      const coral = await twins("coral", shipped("coral", 40), { maxTurns: 4 }, scripted);
      expectSame(coral);
      const docs = shipped("reasoning-extract", 400);
      const re = await twins("reasoning-extract", docs, { scoreRetries: 1 }, scripted);
      expectSame(re);
      const reasons = new Set(re.ts.rows.map((r) => String(r.output.reason)));
      expect(reasons).toContain('the filter answered neither Yes nor No: "  Maybe "');
      expect(reasons).toContain("the question is empty");
      expect(reasons).toContain("no reference answer in the reply");
      expect(re.ts.rows.some((r) => r.output.answer === "2")).toBe(true);
    } finally {
      await scripted.close();
      await server.stop();
    }
  }, 60_000);

  test("workflow twins - a file that drifts from its twin gives a different dataset, and the comparison sees it", async () => {
    const text = readFileSync(fileOf("coral"), "utf8");
    // One word of the extractor's prompt: every request after the first turn changes.
    const drifted = parseWorkflowText(text.replace("Reply with the option letter only", "Reply with the letter only"), "coral.yaml");
    const seeds = shipped("coral", 10);
    const pair = await twins("coral", seeds, {}, llm, drifted);
    expect(firstDifference(pair.ts.rows, pair.file.rows)).toBeDefined();
    expect(pair.file.requests).not.toEqual(pair.ts.requests);
  }, 60_000);
});
