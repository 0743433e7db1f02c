import type { NatsBusImpl } from "../bus/nats/index.ts";
import type { Accounting } from "../engine/accounting.ts";
import type { Engine } from "../engine/engine.ts";
import type { NatsCluster, NodeCounters as NodeCountersRecord, SeedProgress } from "../store/index.ts";
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
  /** whether the node is leaving the cluster */
  draining: () => boolean;
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
    return jobStatus(rec, sumCounters(counters), progress, this.o.workflows.metricsOf(rec), Date.now(), rec.final ? undefined : sumSpent(counters));
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

  /** This node's counters as Prometheus text, its LLM spending included. */
  metrics(): string {
    const { bus, nats } = this.o;
    return (
      prometheusText({
        node: this.o.node,
        engine: this.o.engine.stats,
        bus: bus.stats,
        results: nats.results.stats,
        link: nats.link.stats,
        roles: bus.load(),
        groups: bus.groups(),
        kvGarbage: nats.jobs.garbage + nats.membership.garbage,
        eventGarbage: nats.events.garbage,
        admitted: bus.keeper.admitted.size,
        keepalives: bus.keeper.keepalives,
        draining: this.o.draining(),
      }) + this.o.accounting.prometheus()
    );
  }
}
