import type { JobRecord, JobStore, SeedMessage } from "../store/index.ts";
import { describe, SeedError } from "../errors.ts";
import type { Logger } from "../log.ts";
import { entryRole, type JobHead, newJobRecord, seedMessages, seedOrder, seedSizeProblem } from "./submit.ts";
import { inAdmissionOrderAsync } from "../engine/admission.ts";
import type { CheckedSeed, JobIntake } from "./types.ts";

/** Seeds waiting to be stored at most; `add` waits past it. */
const QUEUE_MAX = 1024;
/** How often the record of a job being streamed in says it is alive, with the count so far. */
const TOUCH_EVERY_MS = 30_000;

export interface IntakeOptions {
  head: JobHead;
  store: JobStore;
  node: string;
  maxMessageBytes: number;
  log: Logger;
  /** the record as it changes, for this node's job table */
  onRecord: (rec: JobRecord) => void;
  /** the job was removed: forget it */
  onRemoved: (id: string) => void;
}

/**
 * A job whose seeds arrive one at a time (a streamed submission). The record
 * is made with the first seed, marked `streamed`, so no node admits a task
 * while seeds are still coming; each seed is stored as it comes, a window
 * of publishes in flight, with a bounded queue in front (the caller waits
 * when it is full), so memory does not grow with the job. `commit` makes the
 * job run; `abort` removes every trace of it.
 */
export class StreamIntake implements JobIntake {
  readonly #o: IntakeOptions;
  #rec: JobRecord | undefined;
  readonly #queue: SeedMessage[] = [];
  /** wakes the store loop (a seed came, or the end) */
  #wakeStore: (() => void) | undefined;
  /** wakes a caller waiting for room */
  #wakeAdd: (() => void) | undefined;
  #ended = false;
  #storing: Promise<number> | undefined;
  #failure: unknown;
  #touched = Date.now();
  #seeds = 0;

  constructor(o: IntakeOptions) {
    this.#o = o;
  }

  async add(seed: CheckedSeed): Promise<void> {
    if (this.#ended) throw new Error("the job's seeds are all in already");
    if (this.#failure) throw this.#failure;
    const tooLarge = seedSizeProblem(seed.seed, seed.line, this.#o.maxMessageBytes);
    if (tooLarge) throw new SeedError(tooLarge, seed.line);
    if (!this.#rec) await this.#open(seed);
    const { head } = this.#o;
    for (const m of seedMessages(head.id, head.settings.trials, seed)) this.#queue.push(m);
    this.#seeds++;
    this.#wakeStore?.();
    while (this.#queue.length >= QUEUE_MAX && !this.#failure) await new Promise<void>((r) => (this.#wakeAdd = r));
    if (this.#failure) throw this.#failure;
    if (Date.now() - this.#touched > TOUCH_EVERY_MS) await this.#touch();
  }

  async commit(): Promise<{ id: string; total: number }> {
    const stored = await this.#end();
    const rec = this.#rec;
    if (!rec || stored === 0) throw new SeedError("the job has no seeds", 0);
    const running = await this.#o.store.update(rec.id, (r) =>
      r.state === "submitting" ? { ...r, state: "running", total: stored, updatedAt: Math.max(Date.now(), r.updatedAt + 1) } : undefined,
    );
    if (running) this.#o.onRecord(running);
    if (running?.state !== "running") throw new Error(`job "${rec.id}" ended while its seeds were stored: ${running?.reason ?? "its record is gone"}`);
    this.#o.log.info({ job: rec.id, workflow: rec.workflow, seeds: this.#seeds, tasks: stored }, "job stored");
    return { id: rec.id, total: stored };
  }

  async abort(): Promise<void> {
    await this.#end().catch(() => 0);
    const rec = this.#rec;
    if (!rec) return;
    try {
      await this.#o.store.remove(rec.id);
    } finally {
      this.#o.onRemoved(rec.id);
    }
  }

  /** The record, the seed consumer, and the store loop, at the first seed. */
  async #open(first: CheckedSeed): Promise<void> {
    const { head, store, node } = this.#o;
    const rec = newJobRecord(head, entryRole(head, first.seed), node, { streamed: true, total: 0 });
    await store.openSeeds(rec.id, rec.settings.concurrency);
    await store.create(rec);
    this.#rec = rec;
    this.#o.onRecord(rec);
    this.#storing = store.storeSeeds(inAdmissionOrderAsync(this.#drain(), seedOrder(head, this.#o.log))).catch((err) => {
      this.#failure = err;
      this.#wakeAdd?.();
      throw err;
    });
  }

  async *#drain(): AsyncGenerator<SeedMessage> {
    for (;;) {
      const m = this.#queue.shift();
      if (m) {
        if (this.#queue.length < QUEUE_MAX / 2) this.#wakeAdd?.();
        yield m;
        continue;
      }
      if (this.#ended) return;
      this.#wakeAdd?.();
      await new Promise<void>((r) => (this.#wakeStore = r));
      this.#wakeStore = undefined;
    }
  }

  /** No more seeds: wait until every one is stored; how many task messages were. */
  async #end(): Promise<number> {
    this.#ended = true;
    this.#wakeStore?.();
    return this.#storing ? await this.#storing : 0;
  }

  /** Say the job is still being stored, and how far it got (a coordinator ends a job left half-stored). */
  async #touch(): Promise<void> {
    this.#touched = Date.now();
    const rec = this.#rec;
    if (!rec) return;
    const seen = this.#seeds * rec.settings.trials;
    let updated: JobRecord | undefined;
    try {
      updated = await this.#o.store.update(rec.id, (r) =>
        r.state === "submitting" ? { ...r, total: seen, updatedAt: Math.max(Date.now(), r.updatedAt + 1) } : undefined,
      );
    } catch (err) {
      this.#o.log.warn({ job: rec.id, err: describe(err) }, "cannot update the record of a job being stored");
      return;
    }
    if (updated) this.#o.onRecord(updated);
    if (updated && updated.state !== "submitting") throw new Error(`job "${rec.id}" ended while its seeds were stored: ${updated.reason ?? ""}`);
  }
}
