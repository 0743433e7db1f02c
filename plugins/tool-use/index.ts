import { z } from "zod";
import { describe } from "../../src/errors.ts";
import type { Env } from "../../src/env/types.ts";
import { defineWorkflow, llmRole, type AgentContext, type Role, type StepResult, type TurnInput } from "../../src/plugin/api.ts";
import { fnv1a } from "../../src/util/hash.ts";
import { dbFiles, type Scenario, ScenarioSchema } from "./domain.ts";
import { envOwner, type FlowLimits, nextRole, terminationOf, toolUseMetrics, toolUseOutput, type ToolUseState, type ToolUseVars } from "./flow.ts";
import { assistantMessages, userMessages, userSystem } from "./prompts.ts";
import { argumentLines, GIVE_UP_TOOL, isTool, rewardScript, scriptFiles, TOOL_SPECS, toolScript } from "./tools.ts";

export const ToolUseConfigSchema = z.strictObject({
  /** model of the customer; unset asks any endpoint */
  userModel: z.string().optional(),
  /** model of the agent, which calls the tools */
  assistantModel: z.string().optional(),
  /** steps of a task (the setup and reward steps included); the conversation ends when they run out */
  maxSteps: z.number().int().min(4).max(10_000).default(200),
  /** failed tool calls after which the conversation ends */
  maxToolErrors: z.number().int().positive().default(10),
  /** what the customer writes to end the conversation */
  stopToken: z.string().min(1).default("###STOP###"),
  maxTokens: z.number().int().positive().default(1024),
  temperature: z.number().min(0).max(2).default(0.7),
  /** wall-clock limit of one tool run, ms */
  toolTimeoutMs: z.number().int().positive().default(10_000),
  /**
   * Where the tool scripts are inside the environment. Relative to the work
   * folder (default `.tools`): they are written there when the environment
   * is acquired. Absolute (e.g. `/opt/tools`): an image that carries them.
   */
  toolsPath: z.string().regex(/^[A-Za-z0-9_./-]+$/, "a plain path").default(".tools"),
});
export type ToolUseConfig = z.infer<typeof ToolUseConfigSchema>;
type Ctx = AgentContext<ToolUseConfig>;
type ToolUseRole = Role<Scenario, ToolUseVars, ToolUseConfig>;

const DB_DIR = "db";
const EXPECTED_DIR = "expected";

function limits(c: ToolUseConfig): FlowLimits {
  return { maxSteps: c.maxSteps, maxToolErrors: c.maxToolErrors, stopToken: c.stopToken };
}

const NO_ENV = "no environment service on this node (run with --env docker or --env bwrap)";

/** The task's environment, or why it cannot be had here. */
function taskEnv(state: ToolUseState, ctx: Ctx): Env | string {
  const envs = ctx.services.env;
  if (!envs) return NO_ENV;
  const { envId, envNode } = state.vars;
  if (!envId) return "the task has no environment (its setup step did not run)";
  return envs.find(envId) ?? `environment ${envId} is not held by node ${ctx.node} (acquired on ${envNode ?? "?"})`;
}

const setup: ToolUseRole = {
  kind: "env",
  async run(state, ctx) {
    const envs = ctx.services.env;
    if (!envs) return { fail: NO_ENV };
    const s = state.seed;
    const copyScripts = !ctx.config.toolsPath.startsWith("/");
    const files = { ...dbFiles(s.db, DB_DIR, true), ...(copyScripts ? scriptFiles(ctx.config.toolsPath) : {}) };
    const env = await envs.acquire(envOwner(state), { files, timeoutMs: ctx.config.toolTimeoutMs }, ctx.signal);
    // The environment lives on this node: the task stays here until it ends.
    return { vars: { envId: env.id, envNode: ctx.node }, pin: true };
  },
};

function seedOf(state: ToolUseState, role: string): number {
  return fnv1a(`${state.id}:${state.trial}:${role}:${state.steps}`);
}

const user: ToolUseRole = llmRole({
  model: (c) => c.userModel,
  request: (state, ctx) => ({
    messages: userMessages(state, userSystem(state.seed, ctx.config.stopToken)),
    max_tokens: ctx.config.maxTokens,
    temperature: ctx.config.temperature,
    seed: seedOf(state, "user"),
  }),
});

/** The agent: its turn carries the tool calls of its reply. */
const assistant: ToolUseRole = llmRole({
  model: (c) => c.assistantModel,
  request: (state, ctx) => ({
    messages: assistantMessages(state),
    tools: [...TOOL_SPECS],
    tool_choice: "auto",
    max_tokens: ctx.config.maxTokens,
    temperature: ctx.config.temperature,
    seed: seedOf(state, "assistant"),
  }),
});

/** The result the assistant reads for a failed call. */
function errorResult(message: string): string {
  return JSON.stringify({ error: message });
}

/** Runs one call; every way it can go wrong becomes an error result, except losing the environment. */
async function runCall(env: Env, toolsDir: string, name: string, args: string, timeoutMs: number): Promise<{ text: string; ok: boolean }> {
  if (!isTool(name)) return { text: errorResult(`unknown tool "${name}"`), ok: false };
  const lines = argumentLines(args);
  if (!lines.ok) return { text: errorResult(lines.error), ok: false };
  const r = await env.exec(["sh", toolScript(toolsDir, name)], { stdin: lines.stdin, timeoutMs });
  if (r.timedOut || r.killed) return { text: errorResult(`${name} did not finish (${r.killed ?? "time"} limit)`), ok: false };
  if (r.exitCode !== 0) {
    const why = r.stderr.trim().split("\n")[0] || `exit code ${r.exitCode}`;
    return { text: errorResult(why), ok: false };
  }
  return { text: r.stdout.trim(), ok: true };
}

const tools: ToolUseRole = {
  kind: "env",
  async run(state, ctx): Promise<StepResult<ToolUseVars>> {
    const env = taskEnv(state, ctx);
    if (typeof env === "string") return { fail: env };
    const last = state.history[state.history.length - 1];
    const calls = last?.role === "assistant" ? (last.toolCalls ?? []) : [];
    const v = state.vars;
    const turns: TurnInput[] = [];
    let errors = 0;
    let gaveUp = false;
    for (const call of calls) {
      let result: { text: string; ok: boolean };
      try {
        result = await runCall(env, ctx.config.toolsPath, call.name, call.arguments, ctx.config.toolTimeoutMs);
      } catch (err) {
        return { fail: `environment ${env.id} failed running ${call.name}: ${describe(err)}` };
      }
      if (!result.ok) errors++;
      if (result.ok && call.name === GIVE_UP_TOOL) gaveUp = true;
      turns.push({ role: "tool", text: result.text, toolCallId: call.id });
    }
    return { turns, vars: { toolCalls: v.toolCalls + calls.length, toolErrors: v.toolErrors + errors, gaveUp: gaveUp || undefined } };
  },
};

const reward: ToolUseRole = {
  kind: "env",
  async run(state, ctx) {
    const env = taskEnv(state, ctx);
    if (typeof env === "string") return { fail: env };
    const termination = terminationOf(state, limits(ctx.config)) ?? "step_limit";
    const s = state.seed;
    // The expected tables go in only now, so no tool call could have read them.
    for (const [path, text] of Object.entries(dbFiles(s.expected, EXPECTED_DIR, false))) await env.put(path, text);
    const r = await env.exec(["sh", rewardScript(ctx.config.toolsPath)], { timeoutMs: ctx.config.toolTimeoutMs });
    if (r.exitCode !== 0) return { fail: `reward script exited ${r.exitCode}: ${r.stderr.trim().slice(0, 300)}` };
    const parsed = RewardSchema.safeParse(safeJson(r.stdout));
    if (!parsed.success) return { fail: `reward script printed no reward: ${r.stdout.trim().slice(0, 300)}` };
    return {
      turns: [{ text: r.stdout.trim() }],
      vars: { termination, reward: parsed.data.reward, rewardTables: parsed.data.tables },
    };
  },
};

const RewardSchema = z.object({ reward: z.number().min(0).max(1), tables: z.record(z.string(), z.boolean()) });

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/**
 * Customer-service tool use: an LLM customer with a goal talks to an LLM
 * agent that calls the domain's tools, which run as scripts in the task's
 * own environment against its account database; a script in the same
 * environment scores the final database against the expected one.
 */
export const toolUse = defineWorkflow<Scenario, ToolUseVars, ToolUseConfig>({
  name: "tool-use",
  description: "a customer and a tool-calling agent settle an account request; rewarded on the final database",
  seedSchema: ScenarioSchema,
  configSchema: ToolUseConfigSchema,
  roles: { setup, user, assistant, tools, reward },
  start: () => ({ next: "setup", vars: { toolCalls: 0, toolErrors: 0 } }),
  next: (state, config, ran) => nextRole(state, limits(config), ran),
  output: (state) => toolUseOutput(state),
  async cleanup(state, ctx) {
    await ctx.services.env?.releaseOwner(envOwner(state));
  },
  // One step past the workflow's own limit: the conversation is cut and scored before the engine would fail it.
  maxSteps: (c) => c.maxSteps + 1,
  metrics: toolUseMetrics,
});
