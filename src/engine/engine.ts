import { type Bus, type Lease, roleKey } from "../bus/bus.ts";
import { describe, LlmError } from "../errors.ts";
import type { LlmClient } from "../llm/types.ts";
import type { Logger } from "../log.ts";
import type { AgentContext, AnyWorkflow, StepResult, TaskLlm } from "../plugin/api.ts";
import type { OutputRow, TaskState } from "../protocol/task.ts";
import type { Accounting } from "./accounting.ts";
import type { JobResolver, JobRuntime } from "./job.ts";
import { buildRow } from "./row.ts";
import { afterStepError, applyStep, nextAfterStep, stepRandom } from "./step.ts";

/** Counters a node keeps about the steps it ran. */
export interface EngineStats {
  steps: number;
  hops: number;
  ok: number;
  failed: number;
  running: number;
  promptTokens: number;
  completionTokens: number;
  stepErrors: number;
  /** tasks started over from their seed because the node they were pinned to was gone */
  restarts: number;
}

/** How many times a task is started over after losing the node it was pinned to, before it fails. */
export const MAX_RESTARTS = 2;
/** The key of `attempts` that counts a task's restarts. */
export const RESTART_KEY = "restart";

export interface EngineOptions {
  bus: Bus;
  jobs: JobResolver;
  node: string;
  log: Logger;
  llm?: LlmClient;
  /** stores a finished task's row durably; the task's lease is let go after it resolves */
  finish: (row: OutputRow, state: TaskState) => Promise<void>;
  services?: Record<string, unknown>;
  /** counts every answered LLM call by job, role, model and endpoint (budgets, cost, /metrics) */
  accounting?: Accounting;
}

const noLlm: TaskLlm = {
  chat: () => Promise.reject(new LlmError("no LLM endpoint is configured (use --llm)", undefined, undefined, false)),
};

/**
 * Runs steps of tasks that arrive on the bus for the roles this node hosts,
 * and hands each task on to its next role or, when done, to `finish`.
 */
export class Engine {
  readonly stats: EngineStats = {
    steps: 0,
    hops: 0,
    ok: 0,
    failed: 0,
    running: 0,
    promptTokens: 0,
    completionTokens: 0,
    stepErrors: 0,
    restarts: 0,
  };
  readonly #opts: EngineOptions;
  readonly #abort = new AbortController();

  constructor(opts: EngineOptions) {
    this.#opts = opts;
  }

  /** Host every role of a workflow with the given slots per role. */
  hostWorkflow(workflow: AnyWorkflow, slots: (role: string) => number): void {
    for (const role of Object.keys(workflow.roles)) {
      this.#opts.bus.host(roleKey(workflow.name, role), slots(role), (state, lease) => this.#step(state, lease));
    }
  }

  /** A new task's state, before its first step. */
  static newTask(job: JobRuntime, id: string, trial: number, seed: Record<string, unknown>): TaskState {
    const now = Date.now();
    const { next, vars } = job.workflow.start(seed, job.config);
    return {
      v: 1,
      job: job.id,
      id,
      trial,
      workflow: job.workflow.name,
      next,
      seed,
      history: [],
      vars: vars ?? {},
      attempts: {},
      steps: 0,
      timings: { admitted: now, updated: now },
      provenance: { nodes: [], endpoints: [], models: [] },
    };
  }

  /** Start a task: send it to its first role. A task that cannot start ends as a failed row. */
  async begin(state: TaskState, lease?: Lease): Promise<void> {
    try {
      this.stats.hops++;
      await (lease ?? this.#opts.bus).send(state);
    } catch (err) {
      await this.#fail(state, lease, describe(err));
    }
  }

  /** Abort the steps running now (shutdown). Their tasks get no row; they stay with the bus. */
  abort(): void {
    this.#abort.abort(new Error("node is shutting down"));
  }

  get aborted(): boolean {
    return this.#abort.signal.aborted;
  }

  async #step(state: TaskState, lease: Lease): Promise<void> {
    if (this.#abort.signal.aborted) return;
    const job = await this.#opts.jobs(state.job);
    if (!job) return this.#fail(state, lease, `job "${state.job}" is unknown or cancelled`);
    if (state.pin !== undefined && state.pin !== this.#opts.node) return this.#restart(state, job, lease);
    const roleName = state.next as string;
    const role = job.workflow.roles[roleName];
    if (!role) return this.#fail(state, lease, `workflow "${job.workflow.name}" has no role "${roleName}"`);

    const stats = this.stats;
    const at = Date.now();
    stats.running++;
    let result: StepResult;
    try {
      result = await role.run(state, this.#context(state, job));
    } catch (err) {
      stats.running--;
      if (this.#abort.signal.aborted) return;
      return this.#stepError(state, job, lease, roleName, err);
    }
    stats.running--;
    stats.steps++;
    applyStep(state, roleName, result, at, this.#opts.node, stats);
    const after = nextAfterStep(state, job, roleName, result);
    if (after.fail !== undefined) return this.#fail(state, lease, after.fail);
    const next = after.next;
    state.next = next;
    if (next === null) return this.#finish(state, job, lease);
    try {
      stats.hops++;
      await lease.send(state);
    } catch (err) {
      await this.#fail(state, lease, describe(err));
    }
  }

  #context(state: TaskState, job: JobRuntime): AgentContext {
    const llm = this.#opts.llm;
    const signal = this.#abort.signal;
    const acct = this.#opts.accounting;
    const role = state.next ?? "cleanup";
    const taskLlm: TaskLlm = llm
      ? {
          chat: (req) => {
            const call = llm.chat(req, { signal, affinity: state.id });
            if (!acct) return call;
            return call.then((r) => {
              acct.add(job.id, role, r);
              return r;
            });
          },
        }
      : noLlm;
    return {
      llm: taskLlm,
      log: this.#opts.log,
      signal,
      config: job.config,
      random: stepRandom(job, state),
      node: this.#opts.node,
      services: this.#opts.services ?? {},
    };
  }

  /**
   * A task pinned to a node (it holds something there, such as an
   * environment) reached this one: that node left or died, and what it held
   * went with it. The task starts over from its seed here, keeping its
   * admission time, at most MAX_RESTARTS times; then it fails saying why.
   */
  async #restart(state: TaskState, job: JobRuntime, lease: Lease): Promise<void> {
    const restarts = state.attempts[RESTART_KEY] ?? 0;
    const why = `the node it was pinned to (${state.pin}) is gone or does not host role "${state.next}"`;
    if (restarts >= MAX_RESTARTS) return this.#fail(state, lease, `${why}, and it was started over ${restarts} times already`);
    let fresh: TaskState;
    try {
      fresh = Engine.newTask(job, state.id, state.trial, state.seed);
    } catch (err) {
      return this.#fail(state, lease, `${why}; it cannot start over: ${describe(err)}`);
    }
    fresh.attempts[RESTART_KEY] = restarts + 1;
    fresh.timings.admitted = state.timings.admitted;
    this.stats.restarts++;
    this.#opts.log.warn({ task: state.id, pinnedTo: state.pin, restarts: restarts + 1 }, `task started over from its seed: ${why}`);
    try {
      this.stats.hops++;
      await lease.send(fresh);
    } catch (err) {
      await this.#fail(fresh, lease, describe(err));
    }
  }

  async #stepError(state: TaskState, job: JobRuntime, lease: Lease, roleName: string, err: unknown): Promise<void> {
    this.stats.stepErrors++;
    const outcome = afterStepError(state, job, roleName, err);
    if (!("retry" in outcome)) return this.#fail(state, lease, outcome.fail);
    this.#opts.log.warn({ task: state.id, role: roleName, err: describe(err) }, "step failed, trying again");
    try {
      await lease.send(state);
    } catch (e) {
      await this.#fail(state, lease, describe(e));
    }
  }

  async #fail(state: TaskState, lease: Lease | undefined, reason: string): Promise<void> {
    state.error = reason;
    state.next = null;
    const job = await this.#opts.jobs(state.job);
    if (!job) {
      // No job to shape the row: the task was cancelled with its job.
      await lease?.done();
      return;
    }
    return this.#finish(state, job, lease);
  }

  async #finish(state: TaskState, job: JobRuntime, lease: Lease | undefined): Promise<void> {
    if (job.workflow.cleanup) {
      try {
        await job.workflow.cleanup(state, this.#context(state, job));
      } catch (err) {
        this.#opts.log.warn({ task: state.id, err: describe(err) }, "task cleanup failed");
      }
    }
    const row = buildRow(state, job);
    if (row.status === "ok") this.stats.ok++;
    else this.stats.failed++;
    try {
      await this.#opts.finish(row, state);
    } catch (err) {
      // The row is not stored: keep the lease so the task comes back.
      this.#opts.log.error({ task: state.id, err: describe(err) }, "cannot store row");
      return;
    }
    await lease?.done();
  }
}
