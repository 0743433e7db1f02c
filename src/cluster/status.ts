import { topFailures } from "../engine/failures.ts";
import { addTally, emptyTally, metricMeans } from "../engine/metrics.ts";
import type { JobTally } from "../protocol/job.ts";
import type { JobRecord, NodeCounters, SeedProgress } from "../store/index.ts";
import type { Metric } from "../plugin/api.ts";
import type { JobStatus } from "./types.ts";

/** What every node's LLM calls for a job used, added up. */
export function sumSpent(all: readonly NodeCounters[]): { tokens: number; cost: number } {
  let tokens = 0;
  let cost = 0;
  for (const c of all) {
    tokens += c.spent?.tokens ?? 0;
    cost += c.spent?.cost ?? 0;
  }
  return { tokens, cost };
}

/**
 * Every node's counters of a job, added up: for a job whose failed tasks
 * run again, what its other rows add up to (kept in its record) and the
 * counters of the rows stored in this round.
 */
export function sumCounters(all: readonly NodeCounters[], rec?: Pick<JobRecord, "retry">): JobTally {
  const t = emptyTally();
  const round = rec?.retry?.round ?? 0;
  if (rec?.retry) addTally(t, rec.retry.base);
  for (const c of all) if ((c.round ?? 0) === round) addTally(t, c);
  return t;
}

/**
 * A job's status: the record's state, exact counts once it has ended (or
 * the nodes' counters while it runs), and the admission figures of its seed
 * consumer (queued: not taken yet; running: the rest).
 */
export function jobStatus(
  rec: JobRecord,
  counters: JobTally,
  progress: SeedProgress | undefined,
  defs: readonly Metric[],
  now = Date.now(),
  spent?: { tokens: number; cost: number },
): JobStatus {
  const t = rec.final ?? counters;
  const done = t.ok + t.failed;
  const live = rec.state === "running" || rec.state === "submitting";
  const queued = live ? Math.min(progress?.pending ?? rec.total - done, Math.max(0, rec.total - done)) : 0;
  const running = live ? Math.max(0, rec.total - done - queued) : 0;
  const end = live ? now : rec.updatedAt;
  const secs = Math.max((end - rec.createdAt) / 1000, 1e-3);
  return {
    id: rec.id,
    workflow: rec.workflow,
    state: live ? "running" : rec.state === "done" ? "done" : "cancelled",
    total: rec.total,
    queued,
    running,
    ok: t.ok,
    failed: t.failed,
    promptTokens: t.promptTokens,
    completionTokens: t.completionTokens,
    rate: done / secs,
    createdAt: rec.createdAt,
    updatedAt: live ? now : rec.updatedAt,
    acceptedBy: rec.acceptedBy,
    ...(rec.reason !== undefined && !live ? { reason: rec.reason } : {}),
    ...(rec.settings.budget ? { budget: rec.settings.budget } : {}),
    ...(spent && rec.settings.budget ? { spent } : {}),
    ...(rec.budgetReached !== undefined ? { budgetReached: rec.budgetReached } : {}),
    ...(rec.settings.purgeRows ? { purgeRows: rec.settings.purgeRows } : {}),
    ...(rec.retry ? { retry: { round: rec.retry.round, tasks: rec.retry.tasks } } : {}),
    metrics: metricMeans(t, defs),
    ...(t.failures ? { failures: topFailures(t.failures) } : {}),
    ...(t.timeline ? { timeline: t.timeline } : {}),
  };
}

/**
 * A job's figures read from NATS at most once per `ttlMs`, however many
 * clients poll its status; asks that come while a read is under way share
 * it. A failed read is not kept.
 */
export class FigureCache<T> {
  readonly #entries = new Map<string, { at: number; value: Promise<T> }>();

  constructor(
    private readonly ttlMs: number,
    private readonly maxEntries = 1024,
  ) {}

  get(key: string, read: () => Promise<T>, now = Date.now()): Promise<T> {
    const hit = this.#entries.get(key);
    if (hit && now - hit.at < this.ttlMs) return hit.value;
    const entry = { at: now, value: read() };
    this.#entries.set(key, entry);
    entry.value.catch(() => {
      if (this.#entries.get(key) === entry) this.#entries.delete(key);
    });
    if (this.#entries.size > this.maxEntries) {
      for (const [k, e] of this.#entries) if (now - e.at >= this.ttlMs) this.#entries.delete(k);
    }
    return entry.value;
  }
}
