import { describe } from "../errors.ts";
import type { Logger } from "../log.ts";
import { type JobRecord, JobStoreError, type NatsCluster, type SeedMessage, taskToken } from "../store/index.ts";
import { type EventFeed, jobEvent } from "./events.ts";
import { SeedMessageSchema } from "../store/records.ts";
import { isLive, type JobTable, retryRound } from "./jobs.ts";
import type { NodeWorkflows } from "./workflows.ts";

/** A seed as a row keeps it: an object (an oversized row may have kept none). */
const SeedSchema = SeedMessageSchema.shape.seed;

/** What asking a job to run its failed tasks again did. */
export interface RetryOutcome {
  id: string;
  /** the retry round now under way (the last one when nothing runs again) */
  round: number;
  /** the failed tasks that run again: 0 when the job had no failed row */
  tasks: number;
}

export interface RetryOptions {
  node: string;
  nats: NatsCluster;
  table: JobTable;
  workflows: NodeWorkflows;
  feed: EventFeed;
  log: Logger;
}

/**
 * Run again the tasks of an ended job whose rows are failed. The job's
 * record goes back to running with a new retry round (the figures of its
 * other rows kept in it); the seeds of those tasks, taken from their rows,
 * go back through admission; each new row replaces its task's failed row
 * (see ResultStore.store), so the dataset keeps one row per task; the job
 * ends again once no failed row of an earlier round is left. A node that
 * dies while storing the seeds leaves the record saying so, and the job's
 * coordinator stores them (see {@link storeRetrySeeds}).
 *
 * Resolves undefined for an unknown (or purged) job; throws JobStoreError
 * for one still running, cancelled, or stopped at its budget.
 */
export async function retryFailed(o: RetryOptions, id: string): Promise<RetryOutcome | undefined> {
  const { jobs, results } = o.nats;
  const rec = await jobs.get(id);
  if (!rec) return undefined;
  if (isLive(rec)) throw new JobStoreError(`job "${id}" is still running: its failed tasks can run again once it has ended`);
  if (rec.state === "cancelled") throw new JobStoreError(`job "${id}" was cancelled${rec.reason ? ` (${rec.reason})` : ""}: only a job that is done runs its failed tasks again`);
  if (rec.settings.purgeRows === "followed") {
    throw new JobStoreError(`job "${id}" hands its rows to a follower (purgeRows: "followed"): the failed rows left NATS with their seeds, so they cannot run again here`);
  }
  if (rec.budgetReached !== undefined) throw new JobStoreError(`job "${id}" ended at its budget (${rec.budgetReached}): running its failed tasks again would spend past it`);
  const round = retryRound(rec) + 1;
  // as many rows as tasks: a read that came short (the stream changing under it) is made again
  let read = await results.tally(id, o.workflows.metricsOf(rec), round);
  for (let tries = 1; read.rows < rec.total && tries < 3; tries++) read = await results.tally(id, o.workflows.metricsOf(rec), round);
  if (read.rows < rec.total) throw new JobStoreError(`job "${id}" has ${read.rows} rows for its ${rec.total} tasks: it cannot run its failed tasks again`);
  const { stale, settled } = read;
  if (stale === 0) return { id, round: round - 1, tasks: 0 };
  // the seed consumer first: nodes start pulling as soon as they see the record running
  await jobs.openSeeds(id, rec.settings.concurrency);
  let changed = false;
  const running = await jobs.update(id, (r) => {
    changed = false;
    if (r.state !== "done" || retryRound(r) !== round - 1) return undefined;
    changed = true;
    const { final: _final, reason: _reason, ...rest } = r;
    const retry = { round, by: o.node, at: Date.now(), tasks: stale, seeded: false, base: settled };
    return { ...rest, state: "running", retry, updatedAt: Math.max(Date.now(), r.updatedAt + 1) };
  });
  if (!running) return undefined;
  if (!changed) throw new JobStoreError(`job "${id}" changed meanwhile (it is ${running.state} now); try again`);
  o.table.set(running);
  const [ev, opts] = jobEvent("job.retried", id, `its ${stale} failed task${stale === 1 ? "" : "s"} run again (round ${round}), on ${o.node}`);
  void o.feed.report(ev, { ...opts, id: `job.retried:${id}:${round}` });
  await storeRetrySeeds(o, running);
  return { id, round, tasks: stale };
}

/**
 * Store the seeds of a retry round's tasks, from their failed rows, then
 * say so in the record. Safe to do twice: each seed has a message id of
 * its round and task, and a task run twice in one round keeps its first
 * new row. A failed row that did not keep its seed cannot run again: it is
 * marked as of this round as it is.
 */
export async function storeRetrySeeds(o: Pick<RetryOptions, "nats" | "log">, rec: JobRecord): Promise<number> {
  const { jobs, results } = o.nats;
  const round = retryRound(rec);
  let kept = 0;
  async function* seeds(): AsyncGenerator<SeedMessage> {
    for await (const row of results.staleRows(rec.id, round)) {
      const seed = SeedSchema.safeParse(row.seed);
      if (seed.success) yield { v: 1, job: rec.id, id: row.id, trial: row.trial, seed: seed.data };
      else if (await results.restamp(rec.id, row.id, round)) kept++;
    }
  }
  const stored = await jobs.storeSeeds(seeds(), 256, (s) => `${s.job}:r${round}:${taskToken(s.id)}`);
  if (kept > 0) o.log.warn({ job: rec.id, round, rows: kept }, `${kept} failed rows of job ${rec.id} kept no seed: they stay as they are`);
  const seeded = await jobs.update(rec.id, (r) =>
    r.retry?.round === round && !r.retry.seeded ? { ...r, retry: { ...r.retry, seeded: true }, updatedAt: Math.max(Date.now(), r.updatedAt + 1) } : undefined,
  );
  if (!seeded) o.log.warn({ job: rec.id, round }, "the job's record is gone while the seeds of its failed tasks were stored");
  o.log.info({ job: rec.id, round, tasks: stored }, "seeds of the job's failed tasks stored");
  return stored;
}

/** A retry round whose seeds a coordinator stores again (the node storing them is gone, or took too long). */
export async function recoverRetrySeeds(o: Pick<RetryOptions, "nats" | "log">, rec: JobRecord, why: string): Promise<void> {
  o.log.warn({ job: rec.id, round: retryRound(rec), why }, "storing the seeds of the job's failed tasks again");
  try {
    await o.nats.jobs.openSeeds(rec.id, rec.settings.concurrency);
    await storeRetrySeeds(o, rec);
  } catch (err) {
    o.log.warn({ job: rec.id, err: describe(err) }, "cannot store the seeds of the job's failed tasks; the next check tries again");
  }
}
