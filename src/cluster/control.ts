import { ConfigError, describe } from "../errors.ts";
import type { Logger } from "../log.ts";
import { BrokenRecordError, JobStoreError, type NatsCluster } from "../store/index.ts";
import { type EventFeed, jobEvent } from "./events.ts";
import { StreamIntake } from "./intake.ts";
import { type RetryOutcome, retryFailed } from "./retry.ts";
import { isLive, type JobTable } from "./jobs.ts";
import { type JobHead, prepareHead, prepareJob, recordSizeProblem, seedOrder } from "./submit.ts";
import { inAdmissionOrder } from "../engine/admission.ts";
import type { JobIntake, JobSubmission } from "./types.ts";
import type { NodeWorkflows } from "./workflows.ts";
import { RowHandoff } from "./handoff.ts";

/** Room kept in a NATS message for everything but the seeds it carries. */
const MESSAGE_HEADROOM = 4096;

export interface JobControlOptions {
  /** this node's name: it accepts the jobs submitted here and names itself in reasons */
  node: string;
  nats: NatsCluster;
  workflows: NodeWorkflows;
  /** this node's view of the job records; kept up to date with what it changes */
  table: JobTable;
  log: Logger;
  /** whether the node is leaving: then it takes no new jobs */
  leaving: () => boolean;
  /** where the jobs' changes of state are reported */
  feed: EventFeed;
}

/**
 * What a client does to jobs through this node: submit one (whole, or with
 * its seeds streamed in), cancel it, purge it, read its rows. Each change
 * is a compare-and-set on the job's record, which every node follows.
 */
export class JobControl {
  readonly #handoff: RowHandoff;

  constructor(private readonly o: JobControlOptions) {
    this.#handoff = new RowHandoff(o.nats.results, o.table, o.log);
  }

  /** Open a job whose seeds are streamed in. */
  async intake(job: Omit<JobSubmission, "seeds">): Promise<JobIntake> {
    this.#refuseWhenLeaving();
    const { nats, table, node } = this.o;
    const head = prepareHead(job, this.o.workflows.registry);
    const maxMessageBytes = nats.link.maxPayload() - MESSAGE_HEADROOM;
    const tooLarge = recordSizeProblem(head, node, maxMessageBytes);
    if (tooLarge) throw new ConfigError(tooLarge);
    this.#carry(head);
    const intake = new StreamIntake({
      head,
      store: nats.jobs,
      node,
      maxMessageBytes,
      log: this.o.log,
      onRecord: (rec) => table.set(rec),
      onRemoved: (id) => table.forget(id),
    });
    return {
      add: (seed) => intake.add(seed),
      abort: () => intake.abort(),
      commit: async () => {
        const done = await intake.commit();
        this.#submitted(done.id, head.workflow.name, done.total);
        return done;
      },
    };
  }

  #submitted(id: string, workflow: string, total: number): void {
    void this.o.feed.report(...jobEvent("job.submitted", id, `${total} tasks of ${workflow}, on ${this.o.node}`));
  }

  /** Store a job's seeds and start it; a job whose seeds cannot all be stored is cancelled, saying why. */
  async submit(job: JobSubmission): Promise<{ id: string; total: number }> {
    this.#refuseWhenLeaving();
    const { nats, table, node } = this.o;
    const { jobs } = nats;
    const prepared = prepareJob(job, this.o.workflows.registry, node, nats.link.maxPayload() - MESSAGE_HEADROOM);
    const rec = prepared.record;
    this.#carry(prepared.head);
    // The seed consumer first: nodes start pulling as soon as they see the record.
    await jobs.openSeeds(rec.id, rec.settings.concurrency);
    await jobs.create(rec);
    table.set(rec);
    let stored: number;
    try {
      stored = await jobs.storeSeeds(inAdmissionOrder(prepared.tasks(), seedOrder(prepared.head, this.o.log)));
    } catch (err) {
      // Part of a job must not run as if it were the whole: end it, saying why, and tell the caller.
      const reason = `its seeds could not all be stored on ${node}: ${describe(err)}`;
      await this.cancel(rec.id, reason).catch((e) => this.o.log.warn({ job: rec.id, err: describe(e) }, "cannot cancel a half-stored job"));
      throw err;
    }
    const running = await jobs.update(rec.id, (r) =>
      r.state === "submitting" ? { ...r, state: "running", updatedAt: Math.max(Date.now(), r.updatedAt + 1) } : undefined,
    );
    if (running) table.set(running);
    if (running?.state !== "running") {
      throw new JobStoreError(`job "${rec.id}" ended while its seeds were stored: ${running?.reason ?? "its record is gone"}`);
    }
    this.o.log.info({ job: rec.id, workflow: rec.workflow, tasks: stored }, "job stored");
    this.#submitted(rec.id, rec.workflow, rec.total);
    return { id: rec.id, total: rec.total };
  }

  /** Cancel a live job and drop its seeds; false when it is unknown or already over. */
  async cancel(id: string, reason = `cancelled on ${this.o.node}`): Promise<boolean> {
    const { jobs } = this.o.nats;
    let changed = false;
    const rec = await jobs.update(id, (r) => {
      if (!isLive(r)) return undefined;
      changed = true;
      return { ...r, state: "cancelled", updatedAt: Math.max(Date.now(), r.updatedAt + 1), reason };
    });
    if (!rec || !changed) return false;
    this.o.table.set(rec);
    void this.o.feed.report(...jobEvent("job.cancelled", id, reason));
    await jobs.dropSeeds(id).catch((err) => this.o.log.warn({ job: id, err: describe(err) }, "cannot drop the seeds of a cancelled job"));
    await this.o.nats.results.jobEnded(id).catch((err) => this.o.log.warn({ job: id, err: describe(err) }, "cannot remove the objects of a cancelled job"));
    return true;
  }

  /** Remove a job with its rows and counters, cancelling it first if it runs; false for an unknown job. */
  async purge(id: string): Promise<boolean> {
    const { table, nats } = this.o;
    // A job whose record is garbage is purged all the same: that is how it goes away.
    const rec = await table.fetch(id).catch((err: unknown) => {
      if (err instanceof BrokenRecordError) return "broken" as const;
      throw err;
    });
    if (!rec) return false;
    if (rec === "broken") await nats.jobs.dropSeeds(id).catch(() => undefined);
    else if (isLive(rec)) await this.cancel(id, `purged on ${this.o.node}`);
    const rows = await nats.results.purge(id);
    await nats.jobs.dropCounters(id);
    await nats.jobs.remove(id);
    table.forget(id);
    this.#handoff.forget(id);
    void this.o.feed.report(...jobEvent("job.purged", id, `${rows} rows removed, on ${this.o.node}`));
    return true;
  }

  /** Run again the tasks of an ended job whose rows are failed (see retryFailed). */
  retryFailed(id: string): Promise<RetryOutcome | undefined> {
    this.#refuseWhenLeaving();
    const { node, nats, table, workflows, feed, log } = this.o;
    return retryFailed({ node, nats, table, workflows, feed, log }, id);
  }

  /** The job's rows, one JSON line each, following the job while it is live. */
  results(id: string): AsyncIterable<string> {
    const { table } = this.o;
    return this.o.nats.results.rows(id, async () => isLive(await table.fetch(id)), table.get(id)?.retry !== undefined);
  }

  /** The job's rows stored after stream sequence `after`, with their sequences, following the job while it is live. */
  rowsAfter(id: string, after: number): AsyncIterable<{ seq: number; text: string }> {
    const { table } = this.o;
    return this.o.nats.results.rowsAfter(id, after, async () => isLive(await table.fetch(id)));
  }

  /** A follower has durably written the job's rows up to `seq`: those leave NATS (a job with purgeRows "followed"). */
  followed(id: string, seq: number): Promise<{ handedUpTo: number }> {
    return this.#handoff.report(id, seq);
  }

  /** The job's last `n` rows, oldest first. */
  tail(id: string, n: number): Promise<string[]> {
    return this.o.nats.results.tail(id, n);
  }

  /** A task's row, or undefined while it has none. */
  task(job: string, id: string): Promise<string | undefined> {
    return this.o.nats.results.row(job, id);
  }

  /**
   * A job carrying a definition: refused when another definition already
   * goes by its carried name (the same name and hash prefix) in the
   * cluster's jobs; else kept compiled here, for the job's record.
   */
  #carry(head: JobHead): void {
    const carried = head.carried;
    if (!carried) return;
    const name = head.workflow.name;
    const other = this.o.table.all().find((r) => r.workflow === name && r.definitionHash !== carried.hash);
    if (other) throw new ConfigError(`workflow "${name}": job "${other.id}" carries another definition with this name and hash prefix`);
    this.o.workflows.learn(carried);
  }

  #refuseWhenLeaving(): void {
    if (this.o.leaving()) throw new Error("this node is leaving the cluster");
  }
}
