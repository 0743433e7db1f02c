import { numeric } from "../../src/engine/metrics.ts";
import type { Metric, TaskView } from "../../src/plugin/api.ts";
import type { Scenario } from "./domain.ts";
import { GREETING, hasStop } from "./prompts.ts";

/** Why a conversation ended (a task that failed has no termination: its row names the error). */
export const Termination = {
  /** the customer sent the stop token */
  userStop: "user_stop",
  /** the assistant handed the customer to a human */
  assistantGaveUp: "assistant_gave_up",
  /** tool calls failed too often */
  toolErrorLimit: "tool_error_limit",
  /** the conversation used up its steps */
  stepLimit: "step_limit",
} as const;
export type Termination = (typeof Termination)[keyof typeof Termination];
export const TERMINATIONS: readonly Termination[] = Object.values(Termination);

/** What the task keeps between steps. */
export interface ToolUseVars {
  /** the task's environment and the node holding it */
  envId?: string;
  envNode?: string;
  toolCalls: number;
  toolErrors: number;
  gaveUp?: boolean;
  termination?: Termination;
  reward?: number;
  /** per table, whether the final state matches the expected one */
  rewardTables?: Record<string, boolean>;
}

/** The settings the control flow reads. */
export interface FlowLimits {
  maxSteps: number;
  maxToolErrors: number;
  stopToken: string;
}

/** A tool-use task as its roles see it. */
export type ToolUseState = TaskView<Scenario, ToolUseVars>;

/** The environment's owner name: unique per job and task, so a job's leftovers are found by owner. */
export function envOwner(state: Pick<TaskView, "job" | "id">): string {
  return `${state.job}/${state.id}`;
}

/**
 * Whether the conversation is over after the last step, and why. The step
 * limit keeps one step for the reward, so a conversation cut short is
 * still scored.
 */
export function terminationOf(state: ToolUseState, limits: FlowLimits): Termination | undefined {
  const v = state.vars;
  const last = state.history[state.history.length - 1];
  if (last?.role === "user" && hasStop(last.text, limits.stopToken)) return Termination.userStop;
  if (v.gaveUp) return Termination.assistantGaveUp;
  if (v.toolErrors >= limits.maxToolErrors) return Termination.toolErrorLimit;
  if (state.steps >= limits.maxSteps - 1) return Termination.stepLimit;
  return undefined;
}

/** setup, user, then assistant and tools in turn with the user between answers, then reward. */
export function nextRole(state: ToolUseState, limits: FlowLimits, ran: string): string | null {
  if (ran === "reward") return null;
  if (ran === "setup") return "user";
  if (terminationOf(state, limits) !== undefined) return "reward";
  switch (ran) {
    case "user":
    case "tools":
      return "assistant";
    case "assistant": {
      const last = state.history[state.history.length - 1];
      return last?.role === "assistant" && (last.toolCalls?.length ?? 0) > 0 ? "tools" : "user";
    }
    default:
      throw new Error(`unknown role "${ran}"`);
  }
}

/** One message of the trajectory, in the chat completions shape. */
export interface TrajectoryMessage {
  role: "user" | "assistant" | "tool";
  content: string | null;
  tool_calls?: { id: string; name: string; arguments: string }[];
  tool_call_id?: string;
  name?: string;
}

/** The row: the trajectory, how it ended and the reward. */
export function toolUseOutput(state: ToolUseState): { output: unknown; metrics: Record<string, unknown> } {
  const v = state.vars;
  const names = new Map<string, string>();
  const trajectory: TrajectoryMessage[] = [{ role: "assistant", content: GREETING }];
  for (const t of state.history) {
    if (t.role === "user") trajectory.push({ role: "user", content: t.text });
    else if (t.role === "assistant") {
      const calls = t.toolCalls ?? [];
      for (const c of calls) names.set(c.id, c.name);
      trajectory.push(calls.length ? { role: "assistant", content: t.text || null, tool_calls: calls } : { role: "assistant", content: t.text });
    } else if (t.role === "tool") {
      const id = t.toolCallId ?? "";
      trajectory.push({ role: "tool", tool_call_id: id, name: names.get(id) ?? "", content: t.text });
    }
  }
  const metrics: Record<string, unknown> = {
    tool_calls: v.toolCalls,
    tool_errors: v.toolErrors,
    messages: trajectory.length,
  };
  if (v.reward !== undefined) metrics.reward = v.reward;
  if (v.termination !== undefined) metrics.termination = v.termination;
  const output = {
    termination: v.termination ?? null,
    reward: v.reward ?? null,
    reward_tables: v.rewardTables ?? null,
    tool_calls: v.toolCalls,
    tool_errors: v.toolErrors,
    trajectory,
  };
  return { output, metrics };
}

/** Mean reward first; then the share of each termination, tool calls and errors per task. */
export const toolUseMetrics: Metric[] = [
  { name: "reward", of: (m, status) => (status === "ok" ? numeric(m, "reward") : undefined) },
  ...TERMINATIONS.map(
    (t): Metric => ({ name: `termination.${t}`, of: (m, status) => (status === "ok" && typeof m.termination === "string" ? Number(m.termination === t) : undefined) }),
  ),
  { name: "tool_calls", of: (m, status) => (status === "ok" ? numeric(m, "tool_calls") : undefined) },
  { name: "tool_errors", of: (m, status) => (status === "ok" ? numeric(m, "tool_errors") : undefined) },
];
