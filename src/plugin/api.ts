import type { z } from "zod";
import type { Logger } from "../log.ts";
import type { ChatRequest, ChatResult } from "../llm/types.ts";
import type { TaskState, ToolCall, Turn } from "../protocol/task.ts";

/** The LLM as an agent sees it: bound to the task (affinity, accounting). */
export interface TaskLlm {
  chat(req: ChatRequest): Promise<ChatResult>;
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
  /** extra services a node offers (environments...), by name */
  services: Record<string, unknown>;
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
export interface StepResult {
  turns?: TurnInput[];
  /** merged into state.vars (a key set to undefined is removed) */
  vars?: Record<string, unknown>;
  /** end the task as failed with this reason */
  fail?: string;
  /**
   * true: the task's next steps stay on this node (the step acquired something
   * that lives here, such as an environment); false: it may move again.
   */
  pin?: boolean;
}

/** One role: the code for one kind of step. */
export interface Role<C = unknown> {
  /** "llm" when the step waits on an LLM; decides how slots are sized */
  kind: "llm" | "cpu" | "env";
  /** model name the role asks for, when it is configurable */
  model?: (config: C) => string | undefined;
  run(state: Readonly<TaskState>, ctx: AgentContext<C>): Promise<StepResult>;
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
export interface Workflow<S = Record<string, unknown>, C = unknown> {
  name: string;
  description: string;
  seedSchema: z.ZodType<S>;
  configSchema: z.ZodType<C>;
  roles: Record<string, Role<C>>;
  /** the first role and initial variables for a new task */
  start(seed: S, config: C): { next: string; vars?: Record<string, unknown> };
  /** the next role after `ran` has run its step, or null when the task is done */
  next(state: Readonly<TaskState>, config: C, ran: string): string | null;
  /** the row's output and metrics (also called for failed tasks) */
  output(state: Readonly<TaskState>, config: C): { output: unknown; metrics: Record<string, unknown> };
  /**
   * Called once when the task ends, ok or failed, before its row is built:
   * release what the task held (an environment...). Errors are logged, not fatal.
   */
  cleanup?(state: Readonly<TaskState>, ctx: AgentContext<C>): Promise<void>;
  /** steps after which the task fails (default 200) */
  maxSteps?: (config: C) => number;
  /** the dataset's quality figures, the first one being the headline */
  metrics?: Metric[];
}

/** A workflow with its types erased, as the engine holds it. */
// biome-ignore lint/suspicious/noExplicitAny: the engine validates seeds and config with the workflow's own schemas
export type AnyWorkflow = Workflow<any, any>;

/** Identity helper that keeps a workflow's seed and config types checked. */
export function defineWorkflow<S, C>(w: Workflow<S, C>): Workflow<S, C> {
  return w;
}

export type { Turn };
