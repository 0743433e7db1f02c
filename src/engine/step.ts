import { describe, LlmError } from "../errors.ts";
import type { AnyVars, AnyWorkflow, StepResult } from "../plugin/api.ts";
import type { TaskState, Turn } from "../protocol/task.ts";
import { fnv1a, seededRandom } from "../util/hash.ts";
import type { JobRuntime } from "./job.ts";

/**
 * The pure parts of one step, shared by the engine and by anything else that
 * must run a workflow's steps with exactly the engine's semantics (the
 * benchmark's baselines): what a step's result does to the state, which role
 * comes next, and what a failed step leads to.
 */

/** Token counters a step's LLM turns add to. */
export interface TokenCounters {
  promptTokens: number;
  completionTokens: number;
}

/**
 * Apply a step's result to the state: its turns (role, timing, node, usage),
 * its variables, and the provenance. `at` is when the step started (epoch ms).
 */
export function applyStep(
  state: TaskState,
  roleName: string,
  result: StepResult,
  at: number,
  node: string,
  tokens?: TokenCounters,
): void {
  const now = Date.now();
  const prov = state.provenance;
  if (prov.nodes[prov.nodes.length - 1] !== node && !prov.nodes.includes(node)) prov.nodes.push(node);
  state.timings.updated = now;
  if (result.turns) {
    for (const t of result.turns) {
      const turn: Turn = { role: t.role ?? roleName, text: t.text, at, ms: now - at };
      if (t.toolCalls?.length) turn.toolCalls = t.toolCalls;
      if (t.toolCallId !== undefined) turn.toolCallId = t.toolCallId;
      const llm = t.llm;
      if (llm) {
        turn.usage = llm.usage;
        turn.endpoint = llm.endpoint;
        turn.model = llm.model;
        if (llm.reasoning) turn.reasoning = llm.reasoning;
        if (tokens) {
          tokens.promptTokens += llm.usage.prompt;
          tokens.completionTokens += llm.usage.completion;
        }
        if (!prov.endpoints.includes(llm.endpoint)) prov.endpoints.push(llm.endpoint);
        if (!prov.models.includes(llm.model)) prov.models.push(llm.model);
      }
      turn.node = node;
      state.history.push(turn);
    }
  }
  if (result.pin === true) state.pin = node;
  else if (result.pin === false) delete state.pin;
  if (result.vars) {
    for (const [k, v] of Object.entries(result.vars)) {
      if (v === undefined) delete state.vars[k];
      else state.vars[k] = v;
    }
  }
}

/** Whether `name` is one of the workflow's roles. */
function isRoleOf(workflow: AnyWorkflow, name: unknown): name is string {
  return typeof name === "string" && Object.hasOwn(workflow.roles, name) && workflow.roles[name] !== undefined;
}

/** What is wrong with a role name the workflow gave (`which`, `whence`) that is none of its roles. */
function notARole(workflow: AnyWorkflow, name: unknown, which: string, whence: string): string {
  const shown = typeof name === "string" ? `"${name}"` : String(JSON.stringify(name) ?? name);
  const roles = Object.keys(workflow.roles).sort().join(", ");
  return `${which} ${shown} ${whence} is not a role of workflow "${workflow.name}" (roles: ${roles})`;
}

/**
 * A new task's first role and variables, from the workflow's `start`. Throws
 * when the first role is none of the workflow's roles (the task then never
 * starts: its row says why).
 */
export function startOf(workflow: AnyWorkflow, seed: Record<string, unknown>, config: unknown): { next: string; vars: AnyVars | undefined } {
  const { next, vars } = workflow.start(seed, config);
  if (!isRoleOf(workflow, next)) throw new Error(notARole(workflow, next, "first role", "from start()"));
  return { next, vars };
}

/** What follows a step whose result is applied: the next role (null: done), or a failure. */
export type NextStep = { next: string | null; fail?: undefined } | { fail: string };

/**
 * Count the step and pick what follows it: the result's own failure, the
 * workflow's rule (a role it does not have fails the task at once), the step
 * limit.
 */
export function nextAfterStep(state: TaskState, job: JobRuntime, roleName: string, result: StepResult): NextStep {
  state.steps++;
  if (result.fail !== undefined) return { fail: `${roleName}: ${result.fail}` };
  let next: string | null;
  try {
    next = job.workflow.next(state, job.config, roleName);
  } catch (err) {
    return { fail: `next role after "${roleName}": ${describe(err)}` };
  }
  if (next !== null && !isRoleOf(job.workflow, next)) return { fail: notARole(job.workflow, next, "next role", `after "${roleName}"`) };
  if (next !== null && state.steps >= job.maxSteps) return { fail: `step limit reached (${job.maxSteps} steps)` };
  return { next };
}

/**
 * What a step that threw leads to: an LLM error (after the client's own
 * retries) fails the task; anything else is tried again until the job's
 * step retries are spent. A retry is counted in `state.attempts`.
 */
export function afterStepError(state: TaskState, job: JobRuntime, roleName: string, err: unknown): { retry: true } | { fail: string } {
  const reason = `${roleName}: ${describe(err)}`;
  if (err instanceof LlmError) return { fail: reason };
  const spent = state.attempts[roleName] ?? 0;
  if (spent >= job.stepRetries) return { fail: `${reason} (after ${spent + 1} tries)` };
  state.attempts[roleName] = spent + 1;
  return { retry: true };
}

/** The deterministic random numbers of a task's next step. */
export function stepRandom(job: JobRuntime, state: TaskState): () => number {
  return seededRandom(fnv1a(`${job.seed}:${state.id}:${state.trial}:${state.steps}`));
}
