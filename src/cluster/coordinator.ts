import type { JobRecord, JobStore, NatsCluster, ResultStore } from "../store/index.ts";
import { describe } from "../errors.ts";
import type { Logger } from "../log.ts";
import { fnv1a } from "../util/hash.ts";
import { type EventFeed, jobEvent } from "./events.ts";
import { isLive, type JobTable } from "./jobs.ts";
import { recoverRetrySeeds } from "./retry.ts";
import { sumSpent } from "./status.ts";
import type { NodeWorkflows } from "./workflows.ts";

const CHECK_TIMEOUT_MS = 30_000;
const TALLY_EVERY_MS = 10_000;
/** A retry round whose seeds are not all stored this long after it began has them stored by its coordinator. */
const RESEED_AFTER_MS = 120_000;
/** A retry round with nothing admitted and failed rows of earlier rounds left this long has lost seeds: they are stored again. */
const LOST_SEEDS_MS = 5_000;

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} took over ${ms} ms`)), ms);
  });
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}

export interface CoordinatorOptions {
  node: string;
  table: JobTable;
  store: JobStore;
  results: ResultStore;
  /** for storing again the seeds of a retry round */
  nats: NatsCluster;
  workflows: NodeWorkflows;
  log: Logger;
  /** names of the live members (running, not draining) */
  members: () => readonly string[];
  /** how long a member lives without a heartbeat (the member view's TTL) */
  memberTtlMs: number;
  /** a job still `submitting` this long was left half-stored by a node that died */
  submitTimeoutMs?: number;
  /** where jobs ending and budgets reached are reported */
  feed: EventFeed;
}

/**
 * Ends jobs. Each live job has one coordinating node at a time (the live
 * member with the lowest hash of job and name), so no central process is
 * needed and a dead coordinator is replaced as soon as it leaves the member
 * view. It marks a job done once its seed consumer has nothing pending or
 * un-acked (every seed is acked only after its row is stored) and the rows,
 * counted from the stream, reach the job's total; those exact counts become
 * the job's final figures.
 */
export class Coordinator {
  #timer: ReturnType<typeof setInterval> | undefined;
  #busy = false;
  #warned = new Set<string>();
  /** when each job's rows were last counted while it still had seeds out */
  #tallied = new Map<string, number>();
  /** since when the node storing a job's seeds (at submit, or for a retry round) has been missing from the member view */
  #acceptorMissing = new Map<string, number>();
  /** since when a retry round has had nothing admitted while failed rows of earlier rounds are left */
  #lostSince = new Map<string, number>();

  constructor(private readonly o: CoordinatorOptions) {}

  start(everyMs = 1000): void {
    this.#timer = setInterval(() => void this.tick(), everyMs);
  }

  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
  }

  /** Whether this node coordinates a job now. */
  coordinates(job: string): boolean {
    // This node is alive whatever its view of the members says (a view rebuilt after a
    // NATS restart may miss it for a while): counting itself means some node always coordinates.
    const seen = this.o.members();
    const names = seen.includes(this.o.node) ? seen : [...seen, this.o.node];
    let best = "";
    let bestHash = Number.POSITIVE_INFINITY;
    for (const n of names) {
      const h = fnv1a(`${job}:${n}`);
      if (h < bestHash || (h === bestHash && n < best)) {
        best = n;
        bestHash = h;
      }
    }
    return best === this.o.node;
  }

  async tick(): Promise<void> {
    if (this.#busy) return;
    this.#busy = true;
    try {
      for (const rec of this.o.table.all()) {
        if (!isLive(rec) || !this.coordinates(rec.id)) continue;
        try {
          // Bounded, so one check stuck on a request across a NATS restart cannot stop every later tick.
          await withTimeout(this.#check(rec), CHECK_TIMEOUT_MS, `check of job ${rec.id}`);
        } catch (err) {
          this.o.log.debug({ job: rec.id, err: describe(err) }, "job check failed");
        }
      }
    } finally {
      this.#busy = false;
    }
  }

  async #check(rec: JobRecord): Promise<void> {
    const { store, results } = this.o;
    if (rec.state === "submitting") {
      // A job being streamed in says it is alive now and then (its updatedAt); one left silent was abandoned.
      if (this.#acceptorGone(rec) || Date.now() - rec.updatedAt > (this.o.submitTimeoutMs ?? 600_000)) {
        const why = `the node that accepted the job (${rec.acceptedBy}) stopped before all its seeds were stored`;
        if (await this.#end(rec, "cancelled", why)) void this.o.feed.report(...jobEvent("job.cancelled", rec.id, why));
        this.#acceptorMissing.delete(rec.id);
      }
      return;
    }
    if (rec.retry) return this.#checkRetry(rec, rec.retry);
    const progress = await store.seedProgress(rec.id);
    if (rec.settings.budget) {
      if (rec.budgetReached === undefined) {
        await this.#checkBudget(rec);
      } else if (progress === undefined || progress.inFlight === 0) {
        // Admission stopped at the budget and every task admitted has its row: the job ends here.
        const { tally } = await results.tally(rec.id, this.#metrics(rec));
        if (await this.#end(rec, "done", rec.budgetReached, tally)) {
          void this.o.feed.report(...jobEvent("job.done", rec.id, `${tally.ok} ok, ${tally.failed} failed, at its budget (${rec.budgetReached})`));
        }
        return;
      }
    }
    const seedsLeft = progress !== undefined && (progress.pending > 0 || progress.inFlight > 0);
    if (seedsLeft) {
      // Seeds left mostly mean rows to come. But a seed whose ack was lost (a NATS restart) stays
      // un-acked after its row is stored, so count the rows now and then all the same: rows are
      // stored once per task, so as many rows as tasks is a finished job whatever the seeds say.
      const last = this.#tallied.get(rec.id) ?? 0;
      if (Date.now() - last < TALLY_EVERY_MS) return;
      this.#tallied.set(rec.id, Date.now());
    }
    const { rows, tally } = await results.tally(rec.id, this.#metrics(rec));
    if (rows >= rec.total) {
      const ended = await this.#end(rec, "done", undefined, tally);
      this.#tallied.delete(rec.id);
      if (ended) void this.o.feed.report(...jobEvent("job.done", rec.id, `${tally.ok} ok, ${tally.failed} failed`));
      return;
    }
    if (seedsLeft) return;
    if (!progress) {
      // Its seed consumer is gone (deleted by hand?): make it again; what is left of the seeds comes back.
      await store.openSeeds(rec.id, rec.settings.concurrency);
    } else if (!this.#warned.has(rec.id)) {
      this.#warned.add(rec.id);
      this.o.log.warn({ job: rec.id, rows, total: rec.total }, "every seed of the job is acked but some rows are missing");
    }
  }

  /**
   * A job whose failed tasks run again ends once no failed row of an
   * earlier round is left (each new row replaced one); seeds the node that
   * asked for the round did not store, or that went missing, are stored
   * again from the rows.
   */
  async #checkRetry(rec: JobRecord, retry: NonNullable<JobRecord["retry"]>): Promise<void> {
    const { store, results } = this.o;
    const key = `${rec.id}:retry`;
    if (!retry.seeded) {
      const gone = this.#gone(key, retry.by);
      if (gone || Date.now() - retry.at > RESEED_AFTER_MS) {
        await recoverRetrySeeds({ nats: this.o.nats, log: this.o.log }, rec, gone ? `${retry.by}, which was storing them, is gone` : "they are not all stored yet");
        this.#acceptorMissing.delete(key);
      }
      return;
    }
    const progress = await store.seedProgress(rec.id);
    const seedsLeft = progress !== undefined && (progress.pending > 0 || progress.inFlight > 0);
    if (seedsLeft) {
      this.#lostSince.delete(rec.id);
      const last = this.#tallied.get(rec.id) ?? 0;
      if (Date.now() - last < TALLY_EVERY_MS) return;
      this.#tallied.set(rec.id, Date.now());
    }
    const { rows, tally, stale } = await results.tally(rec.id, this.#metrics(rec), retry.round);
    // every task has its row, and none is a failed row of an earlier round
    if (stale === 0 && rows >= rec.total) {
      const ended = await this.#end(rec, "done", undefined, tally);
      this.#tallied.delete(rec.id);
      this.#lostSince.delete(rec.id);
      if (ended) {
        this.o.log.info({ job: rec.id, rows, round: retry.round }, "job done again");
        const [ev, opts] = jobEvent("job.done", rec.id, `${tally.ok} ok, ${tally.failed} failed, after running ${retry.tasks} failed tasks again (round ${retry.round})`);
        void this.o.feed.report(ev, { ...opts, id: `job.done:${rec.id}:${retry.round}` });
      }
      return;
    }
    if (seedsLeft || stale === 0) return;
    const since = this.#lostSince.get(rec.id) ?? Date.now();
    this.#lostSince.set(rec.id, since);
    if (Date.now() - since < LOST_SEEDS_MS) return;
    this.#lostSince.delete(rec.id);
    await recoverRetrySeeds({ nats: this.o.nats, log: this.o.log }, rec, `${stale} failed rows of earlier rounds are left with no seed admitted`);
  }

  #metrics(rec: JobRecord) {
    return this.o.workflows.metricsOf(rec);
  }

  /**
   * What every node's LLM calls for the job have used, against its budget;
   * once reached, the record says so and every node stops admitting the
   * job's tasks (those in flight finish, and the job then ends).
   */
  async #checkBudget(rec: JobRecord): Promise<void> {
    const budget = rec.settings.budget;
    if (!budget) return;
    const { tokens, cost } = sumSpent(await this.o.store.counters(rec.id));
    const why =
      budget.tokens !== undefined && tokens >= budget.tokens
        ? `budget reached: ${tokens.toLocaleString("en-US")} tokens of ${budget.tokens.toLocaleString("en-US")}`
        : budget.cost !== undefined && cost >= budget.cost
          ? `budget reached: $${cost.toFixed(4)} of $${budget.cost}`
          : undefined;
    if (!why) return;
    let changed = false;
    const updated = await this.o.store.update(rec.id, (r) => {
      changed = false;
      if (!isLive(r) || r.budgetReached !== undefined) return undefined;
      changed = true;
      return { ...r, budgetReached: why, updatedAt: Math.max(Date.now(), r.updatedAt + 1) };
    });
    if (updated) this.o.table.set(updated);
    if (changed) void this.o.feed.report(...jobEvent("budget.reached", rec.id, `${why}; no new tasks are admitted, those in flight finish`));
  }

  /**
   * Whether the node storing a job's seeds has left: it has been missing
   * from a member view that is being read (not empty) for two member
   * lifetimes, so a heartbeat missed now and then does not end a job that
   * is still being stored.
   */
  #acceptorGone(rec: JobRecord): boolean {
    return this.#gone(rec.id, rec.acceptedBy);
  }

  /** Whether `node` has been missing from a member view being read for two member lifetimes (`key` keeps since when). */
  #gone(key: string, node: string): boolean {
    const seen = this.o.members();
    if (seen.length === 0 || seen.includes(node) || node === this.o.node) {
      this.#acceptorMissing.delete(key);
      return false;
    }
    const since = this.#acceptorMissing.get(key) ?? Date.now();
    this.#acceptorMissing.set(key, since);
    return Date.now() - since > 2 * this.o.memberTtlMs;
  }

  async #end(rec: JobRecord, state: "done" | "cancelled", reason?: string, final?: JobRecord["final"]): Promise<boolean> {
    let changed = false;
    const updated = await this.o.store.update(rec.id, (r) => {
      if (!isLive(r)) return undefined;
      changed = true;
      const next: JobRecord = { ...r, state, updatedAt: Math.max(Date.now(), r.updatedAt + 1) };
      if (final) next.final = final;
      if (reason) next.reason = reason;
      return next;
    });
    if (updated) this.o.table.set(updated);
    if (changed) await this.o.store.dropSeeds(rec.id).catch(() => undefined);
    if (changed) await this.o.results.jobEnded(rec.id).catch((err) => this.o.log.warn({ job: rec.id, err: describe(err) }, "cannot remove the objects of an ended job"));
    return changed;
  }
}
