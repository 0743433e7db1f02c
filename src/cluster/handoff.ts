import { describe } from "../errors.ts";
import type { Logger } from "../log.ts";
import type { ResultStore } from "../store/index.ts";
import type { JobTable } from "./jobs.ts";

/** Where the handing over of one job's rows stands on this node. */
interface Handover {
  /** every row up to this sequence is handed over (as far as this node knows) */
  done: number;
  /** the highest sequence a follower has reported written */
  target: number;
  running: Promise<void> | undefined;
}

/** Why a report of rows written is refused. */
export class NotHandedError extends Error {
  override readonly name = "NotHandedError";
}

/**
 * The rows of jobs with `purgeRows: "followed"` that followers have
 * written: a follower reports the stream sequence up to which every row
 * of the job is durably in its file, and the rows up to there are replaced
 * by their markers (ResultStore.handOver), in the background, one round at
 * a time per job. Any node may take the reports of any job: a node that
 * has not handed over rows of the job before reads the job's subjects from
 * the start once (rows handed over already are skipped), so a follower that
 * fails over to another member goes on the same.
 */
export class RowHandoff {
  readonly #jobs = new Map<string, Handover>();

  constructor(
    private readonly results: ResultStore,
    private readonly table: JobTable,
    private readonly log: Logger,
  ) {}

  /** A follower has written every row of `job` up to `seq`; throws NotHandedError when the job keeps its rows. */
  async report(job: string, seq: number): Promise<{ handedUpTo: number }> {
    const rec = await this.table.fetch(job);
    if (!rec) throw new NotHandedError(`no job "${job}"`);
    if (rec.settings.purgeRows !== "followed") throw new NotHandedError(`job "${job}" keeps its rows in NATS (it was not submitted with purgeRows "followed")`);
    let h = this.#jobs.get(job);
    if (!h) {
      h = { done: 0, target: 0, running: undefined };
      this.#jobs.set(job, h);
    }
    if (seq > h.target) h.target = seq;
    if (!h.running) h.running = this.#run(job, h);
    return { handedUpTo: h.done };
  }

  /** Rounds until every reported row is handed over; a failed round is tried again at the next report. */
  async #run(job: string, h: Handover): Promise<void> {
    try {
      while (h.done < h.target) {
        const upto = h.target;
        const handed = await this.results.handOver(job, upto, h.done + 1);
        this.log.debug({ job, upto, handed }, "rows handed to the follower left NATS");
        h.done = upto;
      }
    } catch (err) {
      this.log.warn({ job, upto: h.target, err: describe(err) }, "cannot hand rows over to the follower yet");
    } finally {
      h.running = undefined;
    }
  }

  /** The job is gone (purged): nothing more to hand over. */
  forget(job: string): void {
    this.#jobs.delete(job);
  }
}
