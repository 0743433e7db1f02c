import type { z } from "zod";
import type { EnvService } from "../env/types.ts";
import type { ChatRequest, ChatResult } from "../llm/types.ts";
import type { Logger } from "../log.ts";
import type { TaskState, ToolCall, Turn } from "../protocol/task.ts";

/**
 * The plugin API: what a workflow is made of, typed by its seed (`S`), its
 * variables (`V`) and its config (`C`). `defineWorkflow` keeps those types
 * through every function of the workflow and its roles; the engine holds
 * workflows as `AnyWorkflow`, with the types erased.
 */

/** A seed as the engine holds it: one JSON object. */
export type AnySeed = Record<string, unknown>;
/** Workflow variables as the engine holds them: one JSON object. */
export type AnyVars = Record<string, unknown>;

/** The LLM as an agent sees it: bound to the task (affinity, accounting). */
export interface TaskLlm {
  chat(req: ChatRequest): Promise<ChatResult>;
}

/** What a node offers its agents besides the LLM, by name. */
export interface Services {
  /** per-task environments (containers, bubblewrap), on a node started with `--env` */
  env?: EnvService;
  [name: string]: unknown;
}

/** What an agent gets besides the state. */
export interface AgentContext<C = unknown> {
  llm: TaskLlm;
  log: Logger;
  /** aborted when the task is cancelled or the node shuts down */
  signal: AbortSignal;
  /** the workflow's validated config */
  config: C;
  /** deterministic random numbers in [0,1) for this task and step */
  random: () => number;
  /** the name of the node running the step */
  node: string;
  /** extra services the node offers (environments...) */
  services: Services;
}

/**
 * The task state as a workflow sees it: read-only, its seed (checked by the
 * seed schema) and its variables (written only by the workflow) typed.
 */
export interface TaskView<S = AnySeed, V = AnyVars> extends Readonly<Omit<TaskState, "seed" | "vars">> {
  readonly seed: S;
  readonly vars: V;
}

/** A turn as an agent returns it; the engine adds role, timing and node. */
export interface TurnInput {
  text: string;
  toolCalls?: ToolCall[];
  toolCallId?: string;
  /** the LLM call that produced it: usage, endpoint and model are copied */
  llm?: ChatResult;
  /** overrides the role name recorded on the turn (e.g. "tool") */
  role?: string;
}

/** What one step returns: turns to append, variables to merge, or a failure. */
export interface StepResult<V = AnyVars> {
  turns?: TurnInput[];
  /** merged into state.vars (a key set to undefined is removed) */
  vars?: Partial<V>;
  /** end the task as failed with this reason */
  fail?: string;
  /**
   * true: the task's next steps stay on this node (the step acquired something
   * that lives here, such as an environment); false: it may move again.
   */
  pin?: boolean;
}

/** One role: the code for one kind of step. */
export interface Role<S = AnySeed, V = AnyVars, C = unknown> {
  /** "llm" when the step waits on an LLM; decides how slots are sized */
  kind: "llm" | "cpu" | "env";
  /** model name the role asks for, when it is configurable */
  model?: (config: C) => string | undefined;
  run(state: TaskView<S, V>, ctx: AgentContext<C>): Promise<StepResult<V>>;
}

/**
 * One figure a workflow reports for its dataset: the mean, over rows, of a
 * number read off each row's metrics (undefined leaves the row out).
 */
export interface Metric {
  name: string;
  of(metrics: Readonly<Record<string, unknown>>, status: "ok" | "failed"): number | undefined;
}

/**
 * A workflow: its roles, its seed schema, the rule that picks the next role
 * from the state, and its output row.
 */
export interface Workflow<S = AnySeed, V = AnyVars, C = unknown> {
  name: string;
  description: string;
  seedSchema: z.ZodType<S>;
  configSchema: z.ZodType<C>;
  roles: Record<string, Role<S, V, C>>;
  /** the first role and the initial variables of a new task */
  start(seed: S, config: C): { next: string; vars: V };
  /** the next role after `ran` has run its step (one of `roles`), or null when the task is done */
  next(state: TaskView<S, V>, config: C, ran: string): string | null;
  /** the row's output and metrics (also called for failed tasks) */
  output(state: TaskView<S, V>, config: C): { output: unknown; metrics: Record<string, unknown> };
  /**
   * Called once when the task ends, ok or failed, before its row is built:
   * release what the task held (an environment...). Errors are logged, not fatal.
   */
  cleanup?(state: TaskView<S, V>, ctx: AgentContext<C>): Promise<void>;
  /** steps after which the task fails (default 200) */
  maxSteps?: (config: C) => number;
  /** the dataset's quality figures, the first one being the headline */
  metrics?: Metric[];
}

/** A workflow with its types erased, as the engine holds it. */
// biome-ignore lint/suspicious/noExplicitAny: the engine validates seeds and config with the workflow's own schemas
export type AnyWorkflow = Workflow<any, any, any>;
/** A role with its types erased. */
// biome-ignore lint/suspicious/noExplicitAny: as AnyWorkflow
export type AnyRole = Role<any, any, any>;

/**
 * Identity helper that keeps a workflow's seed, variables and config types
 * checked: give them (`defineWorkflow<Seed, Vars, Config>({...})`) or let
 * them be inferred from the schemas and from what `start` returns.
 */
export function defineWorkflow<S, V, C>(w: Workflow<S, V, C>): Workflow<S, V, C> {
  return w;
}

/** What a step that cannot make its request returns: the task fails with this reason. */
export interface StepFailure {
  fail: string;
}

/** The one LLM call of an LLM role: its request, what the reply becomes. */
export interface LlmRoleSpec<S, V, C> {
  /**
   * The model the role asks for (it sizes the role's slots); sent as the
   * request's model when the request names none.
   */
  model?: (config: C) => string | undefined;
  /** The step's chat request, or a failure when the state allows none. */
  request(state: TaskView<S, V>, ctx: AgentContext<C>): ChatRequest | StepFailure;
  /** The variables the reply sets (undefined: none). */
  record?(res: ChatResult, state: TaskView<S, V>, ctx: AgentContext<C>): Partial<V> | undefined;
  /** The turn's text (default: the reply's text as it is). */
  text?(res: ChatResult): string;
}

/**
 * An LLM role of one call: it sends `request`, records the reply as the
 * step's turn (its text, tool calls and the call's usage, endpoint and
 * model) and merges what `record` makes of it into the variables.
 */
export function llmRole<S, V, C>(spec: LlmRoleSpec<S, V, C>): Role<S, V, C> {
  const { model, request, record, text } = spec;
  const role: Role<S, V, C> = {
    kind: "llm",
    async run(state, ctx) {
      const req = request(state, ctx);
      if ("fail" in req) return { fail: req.fail };
      const res = await ctx.llm.chat(model !== undefined && req.model === undefined ? { ...req, model: model(ctx.config) } : req);
      const turn: TurnInput = { text: text ? text(res) : res.text, llm: res };
      if (res.toolCalls.length > 0) turn.toolCalls = res.toolCalls;
      const vars = record?.(res, state, ctx);
      return vars === undefined ? { turns: [turn] } : { turns: [turn], vars };
    },
  };
  if (model !== undefined) role.model = model;
  return role;
}

/** The type a zod schema gives (`z.infer`), for a factory that has `z` only as a value. */
export type Infer<T extends z.ZodType> = z.infer<T>;

/** What a plugin file's factory (`export default (api) => workflow`) receives, so the file needs no imports. */
export interface PluginApi {
  /** zod, matrixd's own */
  z: typeof z;
  defineWorkflow: typeof defineWorkflow;
  llmRole: typeof llmRole;
}

export type { Turn };
