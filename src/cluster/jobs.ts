import { type JobRecord, type JobStore, jobKey } from "../store/index.ts";
import { type JobRuntime, makeJobRuntime } from "../engine/job.ts";
import { describe } from "../errors.ts";
import type { Logger } from "../log.ts";
import { CarriedWorkflowError, type NodeWorkflows } from "./workflows.ts";

/** The retry round of a job (0 while its failed tasks never ran again). */
export function retryRound(rec: JobRecord | undefined): number {
  return rec?.retry?.round ?? 0;
}

/** Whether a job's tasks may still be admitted and run. */
export function isLive(rec: JobRecord | undefined): boolean {
  return rec?.state === "running" || rec?.state === "submitting";
}

/**
 * This node's view of the cluster's jobs: every record, kept up to date by
 * a watch on the jobs bucket (and a full read now and then, in case a watch
 * missed something), and the compiled runtime of each job it can run.
 */
export class JobTable {
  readonly #recs = new Map<string, JobRecord>();
  readonly #runtimes = new Map<string, JobRuntime | null>();
  #stopWatch: (() => void) | undefined;
  #timer: ReturnType<typeof setInterval> | undefined;

  constructor(
    private readonly store: JobStore,
    private readonly workflows: NodeWorkflows,
    private readonly log: Logger,
    /** called when a record is new or changed */
    private readonly onChange: (rec: JobRecord) => void,
  ) {}

  async start(resyncMs = 10_000): Promise<void> {
    await this.#resync();
    this.#stopWatch = this.store.watch(
      (rec) => this.set(rec),
      (key) => {
        for (const id of this.#recs.keys()) if (jobKey(id) === key) this.forget(id);
      },
    );
    this.#timer = setInterval(() => void this.#resync(), resyncMs);
  }

  stop(): void {
    this.#stopWatch?.();
    if (this.#timer) clearInterval(this.#timer);
  }

  async #resync(): Promise<void> {
    try {
      const listed = await this.store.list();
      for (const rec of listed) this.set(rec);
      // A job being submitted that is no longer listed was refused and removed (the watch may have missed it).
      const ids = new Set(listed.map((r) => r.id));
      for (const rec of [...this.#recs.values()]) if (rec.state === "submitting" && !ids.has(rec.id)) this.forget(rec.id);
    } catch (err) {
      this.log.debug({ err: describe(err) }, "cannot read the jobs bucket");
    }
  }

  /** Take a record in (from the watch, a read, or a change made here); older ones are ignored. */
  set(rec: JobRecord): void {
    const old = this.#recs.get(rec.id);
    if (old && (old.updatedAt > rec.updatedAt || (old.updatedAt === rec.updatedAt && old.state === rec.state))) return;
    // a job never comes back to life, but to run its failed tasks again (a new retry round)
    if (old && !isLive(old) && isLive(rec) && (rec.retry?.round ?? 0) <= (old.retry?.round ?? 0)) return;
    this.#recs.set(rec.id, rec);
    this.onChange(rec);
  }

  /** A job taken out of the bucket (a streamed submission refused): as if it had never been. */
  forget(id: string): void {
    const rec = this.#recs.get(id);
    this.#recs.delete(id);
    this.#runtimes.delete(id);
    if (rec) this.onChange({ ...rec, state: "cancelled", updatedAt: rec.updatedAt + 1 });
  }

  get(id: string): JobRecord | undefined {
    return this.#recs.get(id);
  }

  all(): JobRecord[] {
    return [...this.#recs.values()].sort((a, b) => a.createdAt - b.createdAt);
  }

  /**
   * The record, read from NATS when this node has not seen it yet. Throws
   * BrokenRecordError, naming the record, when what the jobs bucket holds
   * for the job now is garbage: who follows the job then stops, with why.
   */
  async fetch(id: string): Promise<JobRecord | undefined> {
    this.store.checkNotBroken(id);
    const known = this.#recs.get(id);
    if (known) return known;
    const rec = await this.store.get(id);
    if (rec) this.set(rec);
    return this.#recs.get(id);
  }

  /**
   * The compiled runtime of a job (null when this node cannot run its
   * workflow). A workflow the job carries is compiled and its roles hosted
   * here first, so no task of it is admitted or taken before.
   */
  runtime(rec: JobRecord): JobRuntime | null {
    let rt = this.#runtimes.get(rec.id);
    if (rt !== undefined) return rt;
    try {
      const { workflow, hash } = this.workflows.hosted(rec);
      const s = rec.settings;
      rt = makeJobRuntime({ id: rec.id, workflow, options: s.options, seed: s.seed, maxSteps: s.maxSteps, stepRetries: s.stepRetries, workflowHash: hash });
    } catch (err) {
      // A carried definition that does not compile here was logged once, for all its jobs.
      const level = err instanceof CarriedWorkflowError ? "debug" : "warn";
      this.log[level]({ job: rec.id, workflow: rec.workflow, err: describe(err) }, "this node cannot run the job's workflow");
      rt = null;
    }
    this.#runtimes.set(rec.id, rt);
    return rt;
  }

  /**
   * The engine's job resolver: the runtime of a job whose tasks may run. A
   * cancelled job has none (its tasks are dropped); a done one still has
   * one, so a task run twice can finish and see its duplicate row refused.
   */
  readonly resolve = async (id: string): Promise<JobRuntime | undefined> => {
    const rec = this.#recs.get(id) ?? (await this.fetch(id).catch(() => undefined));
    if (!rec || rec.state === "cancelled") return undefined;
    return this.runtime(rec) ?? undefined;
  };
}
