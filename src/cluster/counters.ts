import { addRow, emptyTally } from "../engine/metrics.ts";
import type { JobTally } from "../protocol/job.ts";
import type { JobStore } from "../store/index.ts";
import { describe } from "../errors.ts";
import type { Logger } from "../log.ts";
import type { Metric } from "../plugin/api.ts";
import type { OutputRow } from "../protocol/task.ts";

/** What this node's LLM calls for a job have used so far. */
export type Spending = (job: string) => { tokens: number; cost: number } | undefined;

/**
 * What this node has stored of each job (rows it was first to store), and
 * what its LLM calls for each job have used (for cluster-wide budgets), kept
 * in memory and written to this node's own key of the stats bucket about
 * every second. Readers add up every node's key: no key is shared, so there
 * is no hot spot and no write conflict. A node killed between two writes
 * loses its last second of counts; a job's final figures are therefore
 * counted again from the stored rows when it ends. While a job's failed
 * tasks run again, the counts are of the rows stored in that round only
 * (the record keeps what the other rows add up to), so no row is counted
 * twice.
 */
export class NodeCounters {
  readonly #tallies = new Map<string, { round: number; tally: JobTally }>();
  readonly #dirty = new Set<string>();
  #timer: ReturnType<typeof setInterval> | undefined;
  #flushing: Promise<void> | undefined;
  /** the spending last written per job, as "tokens/cost" */
  readonly #written = new Map<string, string>();

  constructor(
    private readonly store: JobStore,
    private readonly node: string,
    private readonly log: Logger,
    private readonly spending?: { of: Spending; jobs: () => readonly string[] },
  ) {}

  start(everyMs = 1000): void {
    this.#timer = setInterval(() => void this.flush(), everyMs);
  }

  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
  }

  /** A row this node stored, in the job's retry round `round` (0 for its first run). */
  add(row: OutputRow, metrics: readonly Metric[], round = 0): void {
    let e = this.#tallies.get(row.job);
    if (!e || e.round < round) {
      e = { round, tally: emptyTally() };
      this.#tallies.set(row.job, e);
    }
    addRow(e.tally, row, metrics);
    this.#dirty.add(row.job);
  }

  /** What this node stored of a job so far, in its latest round (none before its first row here). */
  tally(job: string): JobTally | undefined {
    return this.#tallies.get(job)?.tally;
  }

  /** Write the changed counters now. */
  flush(): Promise<void> {
    this.#flushing ??= this.#flush().finally(() => {
      this.#flushing = undefined;
    });
    return this.#flushing;
  }

  async #flush(): Promise<void> {
    for (const job of this.spending?.jobs() ?? []) {
      const s = this.spending?.of(job);
      if (s && this.#written.get(job) !== `${s.tokens}/${s.cost}`) this.#dirty.add(job);
    }
    for (const job of [...this.#dirty]) {
      const e = this.#tallies.get(job);
      const t = e?.tally ?? emptyTally();
      const round = e && e.round > 0 ? { round: e.round } : {};
      const spent = this.spending?.of(job);
      this.#dirty.delete(job);
      try {
        await this.store.putCounters({ v: 1, job, node: this.node, at: Date.now(), ...t, ...round, ...(spent ? { spent } : {}) });
        if (spent) this.#written.set(job, `${spent.tokens}/${spent.cost}`);
      } catch (err) {
        this.#dirty.add(job);
        this.log.debug({ job, err: describe(err) }, "cannot write counters");
        return;
      }
    }
  }
}
