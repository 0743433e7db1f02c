import type { NatsBusImpl } from "../bus/nats/index.ts";
import type { Accounting } from "../engine/accounting.ts";
import type { Engine } from "../engine/engine.ts";
import type { StepTimes } from "../engine/step-times.ts";
import type { LlmClient } from "../llm/types.ts";
import { label, PromWriter } from "../metrics/text.ts";
import type { JobRecord, NatsCluster, NodeCounters as NodeCountersRecord, SeedProgress } from "../store/index.ts";
import type { NodeCounters } from "./counters.ts";
import { isLive, type JobTable } from "./jobs.ts";
import { prometheusText } from "./metrics.ts";
import { FigureCache, jobStatus, sumCounters, sumSpent } from "./status.ts";
import type { JobStatus } from "./types.ts";
import type { NodeWorkflows } from "./workflows.ts";

export interface NodeFiguresOptions {
  node: string;
  nats: NatsCluster;
  workflows: NodeWorkflows;
  table: JobTable;
  engine: Engine;
  bus: NatsBusImpl;
  accounting: Accounting;
  counters: NodeCounters;
  stepTimes: StepTimes;
  llm?: LlmClient;
  /** whether the node is leaving the cluster */
  draining: () => boolean;
  /** how long an ended job's series stay on /metrics (default 10 minutes) */
  endedJobsShownMs?: number;
}

/** How long an ended job's series stay on /metrics, by default. */
export const ENDED_JOBS_SHOWN_MS = 10 * 60_000;
/** /metrics does not wait longer than this for the jobs' counts: it shows the last ones read. */
const JOBS_WAIT_MS = 2000;

/** The jobs whose series /metrics shows: the live ones, and those that ended less than `keepMs` ago. */
export function shownJobs(recs: readonly JobRecord[], now: number, keepMs: number): JobRecord[] {
  return recs.filter((r) => isLive(r) || now - r.updatedAt < keepMs);
}

/**
 * What this node reports: each job's status with the whole cluster's
 * counts (read from every node's counters in NATS), and its own figures
 * as Prometheus text.
 */
export class NodeFigures {
  /** live jobs' counters and seed progress, read from NATS at most twice a second */
  readonly #cache = new FigureCache<[NodeCountersRecord[], SeedProgress | undefined]>(500);

  constructor(private readonly o: NodeFiguresOptions) {}

  /** A job's status; undefined for an unknown job. */
  async job(id: string): Promise<JobStatus | undefined> {
    const rec = await this.o.table.fetch(id);
    if (!rec) return undefined;
    const { jobs } = this.o.nats;
    const live = isLive(rec);
    const [counters, progress] = rec.final
      ? [[], undefined]
      : await this.#cache.get(rec.id, () =>
          Promise.all([jobs.counters(rec.id), live ? jobs.seedProgress(rec.id).catch(() => undefined) : Promise.resolve(undefined)]),
        );
    return jobStatus(rec, sumCounters(counters, rec), progress, this.o.workflows.metricsOf(rec), Date.now(), rec.final ? undefined : sumSpent(counters));
  }

  /** Every job this node knows of, with its status. */
  async jobs(): Promise<JobStatus[]> {
    const out: JobStatus[] = [];
    for (const rec of this.o.table.all()) {
      const st = await this.job(rec.id);
      if (st) out.push(st);
    }
    return out;
  }

  /** the jobs /metrics showed last, for when their counts are slow to come */
  #shown: JobStatus[] = [];

  /**
   * This node's figures as Prometheus text: its own counters, its roles'
   * and LLM endpoints' load, the step and LLM-call durations, its LLM
   * spending, and the live and lately ended jobs.
   */
  async metrics(): Promise<string> {
    const { bus, nats, llm } = this.o;
    const recs = shownJobs(this.o.table.all(), Date.now(), this.o.endedJobsShownMs ?? ENDED_JOBS_SHOWN_MS);
    const read = Promise.all(recs.map((r) => this.job(r.id).catch(() => undefined))).then((all) => all.filter((j) => j !== undefined));
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<JobStatus[]>((resolve) => {
      timer = setTimeout(() => resolve(this.#shown), JOBS_WAIT_MS);
    });
    const jobs = await Promise.race([read, late]).finally(() => clearTimeout(timer));
    this.#shown = jobs;
    const ids = new Set(jobs.map((j) => j.id));
    const w = prometheusText({
      node: this.o.node,
      engine: this.o.engine.stats,
      bus: bus.stats,
      results: nats.results.stats,
      parts: nats.parts.stats,
      link: nats.link.stats,
      roles: bus.load(),
      groups: bus.groups(),
      kvGarbage: nats.jobs.garbage + nats.membership.garbage,
      eventGarbage: nats.events.garbage,
      admitted: bus.keeper.admitted.size,
      keepalives: bus.keeper.keepalives,
      draining: this.o.draining(),
      steps: this.o.stepTimes.roles(),
      endpoints: llm?.endpoints() ?? [],
      calls: llm?.callDurations?.() ?? [],
      jobs,
      stored: (job) => this.o.counters.tally(job),
    }, new PromWriter(label("node", this.o.node)));
    return this.o.accounting.prometheus(w, (job) => ids.has(job)).text();
  }
}
