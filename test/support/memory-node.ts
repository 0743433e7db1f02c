import { NotHandedError } from "../../src/cluster/handoff.ts";
import { builtinWorkflows } from "../../plugins/index.ts";
import { LocalBus } from "../../src/bus/local.ts";
import { CheckedJob, checkJob, prepareHead } from "../../src/cluster/submit.ts";
import type {
  CheckedSeed,
  ClusterEvent,
  ClusterNode,
  EventKind,
  EventQuery,
  JobIntake,
  JobState,
  JobStatus,
  JobSubmission,
  Member,
  RetryOutcome,
} from "../../src/cluster/types.ts";
import { JobStoreError } from "../../src/store/index.ts";
import { Semaphore } from "../../src/util/wait.ts";
import { Engine } from "../../src/engine/engine.ts";
import { StepTimes } from "../../src/engine/step-times.ts";
import { label, PromWriter } from "../../src/metrics/text.ts";
import type { JobRuntime } from "../../src/engine/job.ts";
import { topFailures } from "../../src/engine/failures.ts";
import { addRow, emptyTally, metricMeans } from "../../src/engine/metrics.ts";
import type { JobTally } from "../../src/protocol/job.ts";
import { seedTrials, startTask } from "../../src/engine/tasks.ts";
import { ConfigError } from "../../src/errors.ts";
import type { LlmClient } from "../../src/llm/types.ts";
import { type Logger, silentLogger } from "../../src/log.ts";
import { Registry } from "../../src/plugin/registry.ts";
import type { OutputRow } from "../../src/protocol/task.ts";
import { VERSION } from "../../src/version.ts";

export interface MemoryNodeOptions {
  name?: string;
  registry?: Registry;
  /** slots of every hosted role (default 64) */
  slots?: number;
  llm?: LlmClient;
  log?: Logger;
}

class MemoryJob {
  state: JobState = "running";
  readonly rows: string[] = [];
  admitted = 0;
  ok = 0;
  failed = 0;
  promptTokens = 0;
  completionTokens = 0;
  readonly createdAt = Date.now();
  updatedAt = this.createdAt;
  readonly tally: JobTally = emptyTally();
  readonly admission: Semaphore;
  #wake: (() => void)[] = [];
  readonly #stop: Promise<void>;
  #stopNow!: () => void;

  constructor(
    readonly runtime: JobRuntime,
    readonly total: number,
    readonly acceptedBy: string,
    concurrency: number,
  ) {
    this.admission = new Semaphore(concurrency);
    this.#stop = new Promise((r) => {
      this.#stopNow = r;
    });
  }

  add(row: OutputRow): void {
    this.rows.push(JSON.stringify(row));
    if (row.status === "ok") this.ok++;
    else this.failed++;
    this.promptTokens += row.usage.prompt;
    this.completionTokens += row.usage.completion;
    addRow(this.tally, row, this.runtime.workflow.metrics ?? []);
    this.updatedAt = Date.now();
    this.#notify();
  }

  end(state: JobState): void {
    if (this.state !== "running") return;
    this.state = state;
    this.updatedAt = Date.now();
    this.#stopNow();
    this.#notify();
  }

  /** Resolves on the next row or state change. */
  changed(): Promise<void> {
    return new Promise((r) => this.#wake.push(r));
  }

  /** A place in admission, or false once the job is cancelled. */
  async acquire(): Promise<boolean> {
    if (this.state !== "running") return false;
    const wait = this.admission.acquire();
    if (wait) {
      const stopped = await Promise.race([wait.then(() => false), this.#stop.then(() => true)]);
      if (stopped) return false;
    }
    return this.state === "running";
  }

  #notify(): void {
    for (const f of this.#wake.splice(0)) f();
  }

  status(id: string): JobStatus {
    const done = this.ok + this.failed;
    const end = this.state === "running" ? Date.now() : this.updatedAt;
    const secs = Math.max((end - this.createdAt) / 1000, 1e-3);
    return {
      id,
      workflow: this.runtime.workflow.name,
      state: this.state,
      total: this.total,
      queued: this.state === "running" ? this.total - this.admitted : 0,
      running: this.state === "running" ? this.admitted - done : 0,
      ok: this.ok,
      failed: this.failed,
      promptTokens: this.promptTokens,
      completionTokens: this.completionTokens,
      rate: done / secs,
      createdAt: this.createdAt,
      updatedAt: this.updatedAt,
      acceptedBy: this.acceptedBy,
      metrics: metricMeans(this.tally, this.runtime.workflow.metrics ?? []),
      ...(this.tally.failures ? { failures: topFailures(this.tally.failures) } : {}),
      ...(this.tally.timeline ? { timeline: this.tally.timeline } : {}),
      ...(this.tally.failures ? { failures: topFailures(this.tally.failures) } : {}),
    };
  }
}

/**
 * A ClusterNode of one process: the real engine on the in-process bus, jobs
 * and their rows kept in memory. Fast in-process backend for the HTTP-level
 * tests; it runs jobs exactly as `matrixd run` does.
 */
export class MemoryNode implements ClusterNode {
  readonly name: string;
  readonly registry: Registry;
  readonly #steps = new StepTimes();
  readonly #bus = new LocalBus(this.#steps);
  readonly #engine: Engine;
  readonly #jobs = new Map<string, MemoryJob>();
  readonly #llm: LlmClient | undefined;
  readonly #startedAt = Date.now();
  readonly #slots: number;
  /** workflows jobs carried, hosted at their first job */
  readonly #carried = new Set<string>();
  /** the events feed: this node's jobs' changes of state */
  readonly #events: ClusterEvent[] = [];
  #closed = false;

  constructor(opts: MemoryNodeOptions = {}) {
    this.name = opts.name ?? "mem-1";
    this.registry = opts.registry ?? new Registry(builtinWorkflows);
    this.#llm = opts.llm;
    this.#slots = opts.slots ?? 64;
    this.#engine = new Engine({
      bus: this.#bus,
      stepTimes: this.#steps,
      node: this.name,
      log: opts.log ?? silentLogger,
      llm: opts.llm,
      jobs: (id) => {
        const job = this.#jobs.get(id);
        return job && job.state !== "cancelled" ? job.runtime : undefined;
      },
      finish: async (row) => {
        const job = this.#jobs.get(row.job);
        if (!job || job.state === "cancelled") return;
        job.add(row);
        job.admission.release();
      },
    });
    for (const w of this.registry.all()) this.#engine.hostWorkflow(w, () => this.#slots);
  }

  /** Streamed seeds are gathered, then submitted whole (this node keeps its jobs in memory anyway). */
  async intake(job: Omit<JobSubmission, "seeds">): Promise<JobIntake> {
    const head = prepareHead(job, this.registry);
    const seeds: CheckedSeed[] = [];
    return {
      add: async (s) => void seeds.push(s),
      commit: () => this.submit(new CheckedJob(head, seeds)),
      abort: async () => {},
    };
  }

  async submit(sub: JobSubmission): Promise<{ id: string; total: number }> {
    if (this.#closed) throw new Error("node is closed");
    const { head, seeds } = checkJob(sub, this.registry);
    const id = head.id;
    if (this.#jobs.has(id)) throw new ConfigError(`job "${id}" exists already`);
    if (head.carried && !this.#carried.has(head.workflow.name)) {
      this.#carried.add(head.workflow.name);
      this.#engine.hostWorkflow(head.workflow, () => this.#slots);
    }
    const trials = head.settings.trials;
    const job = new MemoryJob(head.runtime, seeds.length * trials, this.name, head.settings.concurrency);
    this.#jobs.set(id, job);
    this.#event("job.submitted", id, `job ${id} submitted: ${job.total} tasks`);
    void this.#run(job, seeds, trials);
    return { id, total: job.total };
  }

  async #run(job: MemoryJob, seeds: readonly CheckedSeed[], trials: number): Promise<void> {
    for (const s of seeds) {
      for (const t of seedTrials(s, trials)) {
        if (!(await job.acquire())) return;
        job.admitted++;
        const started = startTask(job.runtime, t);
        if (started.row) {
          job.add(started.row);
          job.admission.release();
          continue;
        }
        void this.#engine.begin(started.state);
      }
    }
    await job.admission.idle();
    if (job.state !== "running") return;
    job.end("done");
    this.#event("job.done", job.runtime.id, `job ${job.runtime.id} done: ${job.ok} ok, ${job.failed} failed`);
  }

  #event(kind: EventKind, job: string, message: string): void {
    this.#events.push({ seq: this.#events.length + 1, at: Date.now(), kind, node: this.name, job, message });
  }

  async events(q: EventQuery): Promise<ClusterEvent[]> {
    const limit = q.limit ?? 100;
    const mine = this.#events.filter((e) => q.job === undefined || e.job === q.job);
    return q.after === undefined ? mine.slice(-limit) : mine.filter((e) => e.seq > (q.after as number)).slice(0, limit);
  }

  async jobs(): Promise<JobStatus[]> {
    return [...this.#jobs].map(([id, j]) => j.status(id));
  }

  async job(id: string): Promise<JobStatus | undefined> {
    return this.#jobs.get(id)?.status(id);
  }

  async cancel(id: string): Promise<boolean> {
    const job = this.#jobs.get(id);
    if (!job || job.state !== "running") return false;
    job.end("cancelled");
    this.#event("job.cancelled", id, `job ${id} cancelled`);
    return true;
  }

  /** Refuses what the cluster refuses; the failed tasks of a job are not run again here. */
  async retryFailed(id: string): Promise<RetryOutcome | undefined> {
    const job = this.#jobs.get(id);
    if (!job) return undefined;
    if (job.state === "running") throw new JobStoreError(`job "${id}" is still running: its failed tasks can run again once it has ended`);
    const failed = job.rows.filter((r) => JSON.parse(r).status === "failed").length;
    if (failed > 0) throw new JobStoreError(`job "${id}": the in-memory node does not run failed tasks again`);
    return { id, round: 0, tasks: 0 };
  }

  async purge(id: string): Promise<boolean> {
    const job = this.#jobs.get(id);
    if (!job) return false;
    if (job.state === "running") job.end("cancelled");
    this.#jobs.delete(id);
    this.#event("job.purged", id, `job ${id} purged`);
    return true;
  }

  async *results(id: string): AsyncIterable<string> {
    const job = this.#jobs.get(id);
    if (!job) return;
    let i = 0;
    for (;;) {
      while (i < job.rows.length) yield job.rows[i++] as string;
      if (job.state !== "running") return;
      await job.changed();
    }
  }

  async *rowsAfter(id: string, after: number): AsyncIterable<{ seq: number; text: string }> {
    let seq = 0;
    for await (const text of this.results(id)) if (++seq > after) yield { seq, text };
  }

  async followed(id: string): Promise<{ handedUpTo: number }> {
    throw new NotHandedError(`job "${id}" keeps its rows (this node keeps every row in memory)`);
  }

  async tail(id: string, n: number): Promise<string[]> {
    return n < 1 ? [] : (this.#jobs.get(id)?.rows.slice(-n) ?? []);
  }

  async task(job: string, id: string): Promise<string | undefined> {
    return this.#jobs.get(job)?.rows.find((r) => (JSON.parse(r) as { id: string }).id === id);
  }

  async members(): Promise<Member[]> {
    return [
      {
        node: this.name,
        version: VERSION,
        roles: this.#bus.load(),
        services: { llm: this.#llm?.endpoints() ?? [] },
        startedAt: this.#startedAt,
        seenAt: Date.now(),
        state: this.#closed ? "draining" : "running",
      },
    ];
  }

  async metrics(): Promise<string> {
    const s = this.#engine.stats;
    const w = new PromWriter(label("node", this.name));
    w.one("matrixd_steps_total", "counter", "Agent steps run on this node.", s.steps);
    w.one("matrixd_tasks_ok_total", "counter", "Tasks that ended ok on this node.", s.ok);
    w.one("matrixd_tasks_failed_total", "counter", "Tasks that ended failed on this node.", s.failed);
    w.many("matrixd_tokens_total", "counter", "LLM tokens of the steps run here.", [
      ['kind="prompt"', s.promptTokens],
      ['kind="completion"', s.completionTokens],
    ]);
    const steps = [...this.#steps.roles()].map((t) => [`${label("workflow", t.workflow)},${label("role", t.role)}`, t.hist] as const);
    w.histogram("matrixd_step_duration_seconds", "Duration of the steps run on this node (the role's run), by workflow and role.", steps);
    return w.text();
  }

  async close(): Promise<void> {
    this.#closed = true;
    for (const job of this.#jobs.values()) job.end("cancelled");
    this.#engine.abort();
    await this.#bus.close();
  }
}
