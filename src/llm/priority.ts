import type { AttemptFailure } from "./call.ts";
import type { LlmConfig } from "./config.ts";
import type { ChatOptions } from "./types.ts";

/**
 * Where `admission` priorities count from (2025-01-01, epoch ms): a task's
 * priority is the seconds from then to its admission, the same on every
 * node, so the servers that several nodes share order their tasks alike.
 * Seconds, not ms: tasks admitted within a second run in arrival order, and
 * SGLang preempts a running request for a waiting one only when their
 * priorities differ by more than its threshold (10 by default), so only a
 * task ten seconds older takes a slot from a running one.
 */
const PRIORITY_EPOCH_MS = Date.UTC(2025, 0, 1);

/**
 * A request's priority under the client's policy, lower first (as vLLM and
 * the client's own queue take it): the task's admission second, minus its
 * steps done, or its steps done; undefined without a task or with policy
 * `none`.
 */
export function priorityOf(policy: LlmConfig["priority"], task: ChatOptions["task"]): number | undefined {
  if (task === undefined || policy === "none") return undefined;
  if (policy === "steps") return -task.steps;
  if (policy === "fewest-steps") return task.steps;
  return Math.max(0, Math.floor((task.admitted - PRIORITY_EPOCH_MS) / 1000));
}

/** Whether a failed attempt is the server refusing a request's `priority` (it does not schedule by one). */
export function refusesPriority(err: AttemptFailure): boolean {
  return err.kind === "status" && err.status === 400 && /priorit/i.test(err.detail);
}
