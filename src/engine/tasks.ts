import type { Lease } from "../bus/bus.ts";
import { describe, LlmError, RowTooBigError } from "../errors.ts";
import type { LlmClient } from "../llm/types.ts";
import type { Logger } from "../log.ts";
import type { AgentContext, StepResult, TaskLlm } from "../plugin/api.ts";
import type { OutputRow, TaskState } from "../protocol/task.ts";
import { parseSeedLine } from "../seeds/seeds.ts";
import { fileLines } from "../util/lines.ts";
import type { Accounting } from "./accounting.ts";
import type { JobResolver, JobRuntime } from "./job.ts";
import type { StepTimes } from "./step-times.ts";
import { buildRow, seedErrorRow, slimRow } from "./row.ts";
import { afterStepError, applyStep, nextAfterStep, startOf, stepRandom } from "./step.ts";

/**
 * A task's life, from its seed line to its row: the seeds of a job become
 * tasks (ids, trials, failed rows for seeds that are no task), and each
 * step of a task is run with its consequences (next role, retry, restart,
 * failure, the row). Whatever schedules the steps (the engine over a bus,
 * or a benchmark's baseline) runs them through this.
 */

/** How many times a task is started over after losing the node it was pinned to, before it fails. */
export const MAX_RESTARTS = 2;
/** The key of `attempts` that counts a task's restarts. */
export const RESTART_KEY = "restart";

/** The id of a seed's task in one trial: the seed's id, suffixed `#trial` when the job has several trials. */
export function taskId(seedId: string, trial: number, trials: number): string {
  return trials > 1 ? `${seedId}#${trial}` : seedId;
}

/** One task to start: its id, trial, the seed line it came from (when known) and its seed. */
export interface TaskSeed {
  id: string;
  trial: number;
  line?: number;
  seed: Record<string, unknown>;
}

/**
 * A checked seed's tasks, one per trial. With several trials each task gets
 * its own copy of the seed (`copy`), as steps may change what they are given;
 * a seed that crosses the wire is a copy already.
 */
export function* seedTrials(s: { id: string; line: number; seed: Record<string, unknown> }, trials: number, copy = true): Generator<TaskSeed> {
  for (let trial = 0; trial < trials; trial++) {
    yield { id: taskId(s.id, trial, trials), trial, line: s.line, seed: copy && trials > 1 ? structuredClone(s.seed) : s.seed };
  }
}

/** A new task's state, before its first step (its admission time is now). Throws when the workflow cannot start the seed. */
export function newTaskState(job: JobRuntime, id: string, trial: number, seed: Record<string, unknown>): TaskState {
  const now = Date.now();
  const { next, vars } = startOf(job.workflow, seed, job.config);
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

/** The failed row of a task that never started (its seed line is bad, or the workflow cannot start it). */
export function seedRow(job: JobRuntime, id: string, seed: unknown, error: string, trial = 0): OutputRow {
  const row = seedErrorRow(id, seed, error, { id: job.id, workflow: job.workflow.name, configHash: job.configHash }, trial);
  if (job.workflowHash !== undefined) row.provenance.workflow_hash = job.workflowHash;
  return row;
}

/** Start a task: its first state, or its failed row when the workflow cannot start its seed. */
export function startTask(job: JobRuntime, t: TaskSeed): { state: TaskState; row?: undefined } | { row: OutputRow } {
  try {
    return { state: newTaskState(job, t.id, t.trial, t.seed) };
  } catch (err) {
    const where = t.line !== undefined ? `seed line ${t.line}` : `seed of task "${t.id}"`;
    return { row: seedRow(job, t.id, t.seed, `${where}: workflow cannot start: ${describe(err)}`, t.trial) };
  }
}

/** What a seed file gives: a task to start, or the failed row of a line that is no task. */
export type SeedEntry = ({ ok: true } & TaskSeed) | { ok: false; row: OutputRow };

export interface SeedFileOptions {
  /** tasks to leave out (their rows exist already) */
  skip?: (id: string) => boolean;
  /** once aborted, no more line is read */
  signal?: AbortSignal;
}

/**
 * Reads a job's seed file, streamed, and gives each line's tasks (one per
 * trial). A line that is not a seed of the workflow (not JSON, bad schema)
 * and a line whose seed id was seen before give failed rows instead; the
 * first line with an id keeps it.
 */
export class SeedFile {
  /** lines read so far */
  read = 0;
  /** true when the signal stopped the reading before the end */
  stopped = false;

  constructor(
    readonly path: string,
    readonly job: JobRuntime,
    readonly trials: number,
    readonly opts: SeedFileOptions = {},
  ) {}

  async *entries(): AsyncGenerator<SeedEntry> {
    const { job, trials, opts } = this;
    const seen = new Set<string>();
    let yielded = Date.now();
    for await (const text of fileLines(this.path)) {
      const line = ++this.read;
      // Steps that never wait on I/O chain as microtasks; give timers and signals a turn now and then.
      if ((line & 255) === 0 && Date.now() - yielded > 20) {
        await new Promise((r) => setImmediate(r));
        yielded = Date.now();
      }
      if (opts.signal?.aborted) {
        this.stopped = true;
        return;
      }
      const parsed = parseSeedLine(text, line, job.workflow.seedSchema);
      if (!parsed) continue;
      let baseId = parsed.id;
      let error = parsed.ok ? undefined : parsed.error;
      if (seen.has(baseId)) {
        error = `seed line ${line}: duplicate seed id "${baseId}"`;
        baseId = `${baseId}@line${line}`;
      } else seen.add(baseId);
      for (let trial = 0; trial < trials; trial++) {
        const id = taskId(baseId, trial, trials);
        if (opts.skip?.(id)) continue;
        if (error !== undefined) yield { ok: false, row: seedRow(job, id, parsed.seed, error, trial) };
        else if (parsed.ok) yield { ok: true, id, trial, line, seed: trials > 1 ? structuredClone(parsed.seed) : parsed.seed };
      }
    }
  }
}

/** Counters of the steps a node ran and the tasks they ended. */
export interface TaskStats {
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

export interface TaskRunnerOptions {
  jobs: JobResolver;
  node: string;
  log: Logger;
  llm?: LlmClient;
  /** stores a finished task's row durably; the task's lease is let go after it resolves */
  finish: (row: OutputRow, state: TaskState) => Promise<void>;
  services?: Record<string, unknown>;
  /** counts every answered LLM call by job, role, model and endpoint (budgets, cost, /metrics) */
  accounting?: Accounting;
  /** each role's step durations (/metrics, and the role load members publish) */
  stepTimes?: StepTimes;
}

/**
 * What a step leaves to the scheduler: hand the task (possibly a fresh state)
 * on to its next role (`next`, a hop) or to the same role again (`again`, a
 * step that threw), or nothing (`end`: its row is stored, or it was dropped).
 */
export type StepOutcome = { to: "next" | "again"; state: TaskState } | { to: "end" };

const END: StepOutcome = { to: "end" };

const noLlm: TaskLlm = {
  chat: () => Promise.reject(new LlmError("no LLM endpoint is configured (use --llm)", undefined, undefined, false)),
};

/**
 * Runs one step of a task at a time with its consequences: the role's run,
 * the state it leaves, the next role, retries, restarts of a task pinned to
 * a node that is gone, failures, cleanup and the row. It does not move
 * tasks; the caller does, as the outcome says.
 */
export class TaskRunner {
  readonly stats: TaskStats = {
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
  readonly #opts: TaskRunnerOptions;
  readonly #abort = new AbortController();

  constructor(opts: TaskRunnerOptions) {
    this.#opts = opts;
  }

  /** Abort the steps running now (shutdown). Their tasks get no row. */
  abort(): void {
    this.#abort.abort(new Error("node is shutting down"));
  }

  get aborted(): boolean {
    return this.#abort.signal.aborted;
  }

  /** Run the task's next step (`state.next`); `lease` is what holds the task on the bus (none outside a bus). */
  async step(state: TaskState, lease: Lease | undefined): Promise<StepOutcome> {
    if (this.#abort.signal.aborted) return END;
    const job = await this.#opts.jobs(state.job);
    if (!job) return this.#end(this.fail(state, lease, `job "${state.job}" is unknown or cancelled`));
    if (lease?.broken !== undefined) return this.#end(this.fail(state, lease, lease.broken));
    if (state.pin !== undefined && state.pin !== this.#opts.node) return this.#restart(state, job, lease);
    const roleName = state.next as string;
    const role = job.workflow.roles[roleName];
    if (!role) return this.#end(this.fail(state, lease, `workflow "${job.workflow.name}" has no role "${roleName}"`));

    const stats = this.stats;
    const times = this.#opts.stepTimes;
    const at = Date.now();
    const t0 = times ? performance.now() : 0;
    stats.running++;
    let result: StepResult;
    try {
      result = await role.run(state, this.#context(state, job));
    } catch (err) {
      stats.running--;
      if (this.#abort.signal.aborted) return END;
      if (times) this.#time(times, job, roleName, t0);
      return this.#stepError(state, job, lease, roleName, err);
    }
    stats.running--;
    if (times) this.#time(times, job, roleName, t0);
    stats.steps++;
    let after: ReturnType<typeof nextAfterStep>;
    try {
      applyStep(state, roleName, result, at, this.#opts.node, stats);
      after = nextAfterStep(state, job, roleName, result);
    } catch (err) {
      // a result that is not what a step returns (a plugin's bug) fails its task, never leaves it in flight
      return this.#end(this.fail(state, lease, `${roleName}: its step's result cannot be applied: ${describe(err)}`));
    }
    if (after.fail !== undefined) return this.#end(this.fail(state, lease, after.fail));
    state.next = after.next;
    if (after.next === null) return this.#end(this.#finish(state, job, lease));
    return { to: "next", state };
  }

  #time(times: StepTimes, job: JobRuntime, roleName: string, t0: number): void {
    const now = performance.now();
    times.observe(job.workflow.name, roleName, now - t0, now);
  }

  /** End a task as failed, whatever step it is at: its row is stored (none when its job is gone). */
  async fail(state: TaskState, lease: Lease | undefined, reason: string): Promise<void> {
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

  async #end(ending: Promise<void>): Promise<StepOutcome> {
    await ending;
    return END;
  }

  #context(state: TaskState, job: JobRuntime): AgentContext {
    const llm = this.#opts.llm;
    const signal = this.#abort.signal;
    const acct = this.#opts.accounting;
    const role = state.next ?? "cleanup";
    const taskLlm: TaskLlm = llm
      ? {
          chat: (req) => {
            const call = llm.chat(req, { signal, affinity: state.id, task: { admitted: state.timings.admitted, steps: state.steps } });
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
  async #restart(state: TaskState, job: JobRuntime, lease: Lease | undefined): Promise<StepOutcome> {
    const restarts = state.attempts[RESTART_KEY] ?? 0;
    const why = `the node it was pinned to (${state.pin}) is gone or does not host role "${state.next}"`;
    if (restarts >= MAX_RESTARTS) return this.#end(this.fail(state, lease, `${why}, and it was started over ${restarts} times already`));
    let fresh: TaskState;
    try {
      fresh = newTaskState(job, state.id, state.trial, state.seed);
    } catch (err) {
      return this.#end(this.fail(state, lease, `${why}; it cannot start over: ${describe(err)}`));
    }
    fresh.attempts[RESTART_KEY] = restarts + 1;
    fresh.timings.admitted = state.timings.admitted;
    this.stats.restarts++;
    this.#opts.log.warn({ task: state.id, pinnedTo: state.pin, restarts: restarts + 1 }, `task started over from its seed: ${why}`);
    return { to: "next", state: fresh };
  }

  async #stepError(state: TaskState, job: JobRuntime, lease: Lease | undefined, roleName: string, err: unknown): Promise<StepOutcome> {
    this.stats.stepErrors++;
    const outcome = afterStepError(state, job, roleName, err);
    if (!("retry" in outcome)) return this.#end(this.fail(state, lease, outcome.fail));
    this.#opts.log.warn({ task: state.id, role: roleName, err: describe(err) }, "step failed, trying again");
    return { to: "again", state };
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
    lease?.finishing?.();
    try {
      await this.#opts.finish(row, state);
    } catch (err) {
      if (!(err instanceof RowTooBigError) || !(await this.#storeSlim(row, state, err))) {
        // The row is not stored: keep the lease so the task comes back.
        this.#opts.log.error({ task: state.id, err: describe(err) }, "cannot store row");
        return;
      }
    }
    await lease?.done();
  }

  /** Store, in place of a row too big, the failed row saying so; false when that cannot be stored either. */
  async #storeSlim(row: OutputRow, state: TaskState, err: RowTooBigError): Promise<boolean> {
    const slim = slimRow(row, row.error === undefined ? err.message : `${row.error}; ${err.message}`);
    if (row.status === "ok") {
      this.stats.ok--;
      this.stats.failed++;
    }
    this.#opts.log.warn({ task: state.id, err: err.message }, "row too big to store: storing a failed row without its turns");
    try {
      await this.#opts.finish(slim, state);
      return true;
    } catch {
      return false;
    }
  }
}
