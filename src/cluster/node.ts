import { NatsBusImpl } from "../bus/nats/index.ts";
import { Accounting } from "../engine/accounting.ts";
import { Engine } from "../engine/engine.ts";
import { StepTimes } from "../engine/step-times.ts";
import type { Logger } from "../log.ts";
import { Registry } from "../plugin/registry.ts";
import { type ClusterTimings, type NatsCluster, openNatsCluster, safeName } from "../store/index.ts";
import { VERSION } from "../version.ts";
import { JobControl } from "./control.ts";
import { Coordinator } from "./coordinator.ts";
import { NodeCounters } from "./counters.ts";
import { EventFeed, watchAdmission, watchServices } from "./events.ts";
import { MemberEvents, Takeovers } from "./member-events.ts";
import { NodeFigures } from "./figures.ts";
import { envPool, gateEnv, RoleHosting, selectiveBus } from "./hosting.ts";
import { JobTable, retryRound } from "./jobs.ts";
import { isManaged, PeerEndpoints } from "./peers.ts";
import { Presence } from "./presence.ts";
import { RowWriter } from "./row-writer.ts";
import { JobStarter } from "./starter.ts";
import type { ClusterNodeOptions, RunningClusterNode } from "./node-options.ts";
import type { ClusterEvent, EventQuery, JobIntake, JobStatus, JobSubmission, Member, RetryOutcome } from "./types.ts";
import { NodeWorkflows } from "./workflows.ts";

export type { ClusterNodeOptions, RunningClusterNode } from "./node-options.ts";

const DEFAULT_TIMINGS: ClusterTimings = { ackWaitMs: 30_000, memberTtlMs: 5_000 };

/**
 * Start a cluster node: connect to NATS, host the selected roles on the
 * NATS bus, take seeds of live jobs for free slots, store rows once, keep
 * counters, announce itself, and end the jobs it coordinates.
 */
export async function startClusterNode(opts: ClusterNodeOptions): Promise<RunningClusterNode> {
  const name = safeName(opts.name);
  const log = opts.log.child({ node: name });
  const timings: ClusterTimings = { ...DEFAULT_TIMINGS, ...opts.timings };
  const registry = opts.workflows instanceof Registry ? opts.workflows : new Registry(opts.workflows);
  const nats: NatsCluster = await openNatsCluster({ ...opts.nats, name, log, timings, replicas: opts.replicas, offloadBytes: opts.offloadBytes, signal: opts.signal });
  return new ClusterNodeImpl(name, opts, nats, registry, timings, log).start();
}

/**
 * A cluster node, put together from its parts: the NATS bus and the engine
 * on it, the roles it hosts ({@link RoleHosting}), the rows it stores
 * ({@link RowWriter}), the jobs it starts tasks of ({@link JobStarter}) and
 * ends ({@link Coordinator}), what clients do to jobs through it
 * ({@link JobControl}), what it reports ({@link NodeFigures}) and its place
 * in the member view ({@link Presence}). It owns the order they start and
 * stop in.
 */
class ClusterNodeImpl implements RunningClusterNode {
  readonly bus: NatsBusImpl;
  readonly engine: Engine;
  readonly accounting: Accounting;
  readonly #nats: NatsCluster;
  readonly #log: Logger;
  readonly #table: JobTable;
  readonly #starter: JobStarter;
  readonly #counters: NodeCounters;
  readonly #coordinator: Coordinator;
  readonly #hosting: RoleHosting;
  readonly #rows: RowWriter;
  readonly #control: JobControl;
  readonly #figures: NodeFigures;
  readonly #presence: Presence;
  readonly #feed: EventFeed;
  readonly #members: MemberEvents;
  readonly #takeovers: Takeovers;
  readonly #unhooks: (() => void)[] = [];
  readonly #unhookEnv: (() => void) | undefined;
  #state: "running" | "draining" = "running";
  #closing: Promise<void> | undefined;

  constructor(
    readonly name: string,
    opts: ClusterNodeOptions,
    nats: NatsCluster,
    registry: Registry,
    timings: ClusterTimings,
    log: Logger,
  ) {
    this.#nats = nats;
    this.#log = log;
    const startedAt = Date.now();
    const { results, jobs } = nats;
    const leaving = () => this.#closing !== undefined;
    const draining = () => this.#state === "draining";
    const heartbeatMs = opts.heartbeatMs ?? 1000;
    this.#feed = new EventFeed(name, nats.events, log);
    this.#unhooks.push(...watchServices(this.#feed, name, opts));
    const admission = watchAdmission(this.#feed, name, opts.llm);
    this.#unhooks.push(admission.stop);
    this.#takeovers = new Takeovers({ node: name, feed: this.#feed, ackWaitMs: timings.ackWaitMs, heartbeatMs });
    this.#members = new MemberEvents({ node: name, startedAt, feed: this.#feed, takeovers: this.#takeovers });
    // reconnecting nodes take a few seconds to be back in the view: not lost meanwhile
    this.#unhooks.push(nats.link.onReconnect(() => this.#members.reconnected(2 * timings.memberTtlMs + 5000)));
    const takenOver = () => this.#takeovers.taken();
    // the retry round of a job, as this node's view of its record says: rows of earlier rounds may be run again
    const round = (job: string) => retryRound(this.#table.get(job));
    const stepTimes = new StepTimes();
    this.bus = new NatsBusImpl({
      link: nats.link,
      node: name,
      log,
      timings,
      replicas: nats.replicas,
      localFirst: opts.localFirst,
      rowExists: (job, id) => results.exists(job, id, round(job)),
      onTakeover: takenOver,
      stepLatency: stepTimes,
      parts: nats.parts,
      admissionPaused: admission.paused,
    });
    this.accounting = new Accounting(opts.prices);
    const spending = {
      of: (job: string) => {
        const t = this.accounting.total(job);
        return t.requests > 0 ? { tokens: t.promptTokens + t.completionTokens, cost: t.cost } : undefined;
      },
      jobs: () => this.accounting.jobs(),
    };
    this.#counters = new NodeCounters(jobs, `${name}_${startedAt.toString(36)}`, log, spending);
    // The workflows jobs carry are compiled as their jobs are seen, and their roles hosted then.
    const workflows = new NodeWorkflows(registry, log);
    workflows.onHost((wf) => this.#hosting.host(wf));
    this.#rows = new RowWriter({ results, counters: this.#counters, workflows, log, leaving, round });
    this.#table = new JobTable(jobs, workflows, log, (rec) => this.#starter.sync(rec));
    const select = opts.roles ?? (() => "auto" as const);
    this.engine = new Engine({
      accounting: this.accounting,
      bus: selectiveBus(this.bus, select),
      jobs: this.#table.resolve,
      node: name,
      log,
      llm: opts.llm,
      services: opts.services,
      stepTimes,
      finish: (row) => this.#rows.store(row),
    });
    this.#hosting = new RoleHosting({ engine: this.engine, bus: this.bus, registry, select, fallback: opts.defaultSlots ?? 256, llm: opts.llm });
    const env = envPool(opts.services);
    const envGate = gateEnv(this.bus, env);
    this.#unhookEnv = envGate?.unhook;
    this.#starter = new JobStarter({
      bus: this.bus,
      envGate: envGate?.gate,
      engine: this.engine,
      table: this.#table,
      results,
      finish: (row) => this.#rows.store(row),
      log,
      onTakeover: takenOver,
    });
    const peers = (opts.shareLlm ?? true) && isManaged(opts.llm) ? new PeerEndpoints(opts.llm, name, log) : undefined;
    this.#presence = new Presence({
      node: name,
      nats,
      bus: this.bus,
      llm: opts.llm,
      env,
      http: opts.http,
      startedAt,
      heartbeatMs,
      draining,
      onMembers: (all) => {
        peers?.update(all);
        this.#members.update(all);
      },
      log,
    });
    this.#coordinator = new Coordinator({
      node: name,
      table: this.#table,
      store: jobs,
      results,
      nats,
      workflows,
      log,
      members: () => this.#presence.live(),
      memberTtlMs: timings.memberTtlMs,
      feed: this.#feed,
    });
    this.#control = new JobControl({ node: name, nats, workflows, table: this.#table, log, leaving, feed: this.#feed });
    this.#figures = new NodeFigures({
      node: name,
      nats,
      workflows,
      table: this.#table,
      engine: this.engine,
      bus: this.bus,
      accounting: this.accounting,
      counters: this.#counters,
      stepTimes,
      llm: opts.llm,
      draining,
      endedJobsShownMs: opts.endedJobsShownMs,
    });
  }

  async start(): Promise<this> {
    this.#hosting.start();
    await this.#table.start();
    for (const rec of this.#table.all()) this.#starter.sync(rec);
    await this.#presence.start();
    this.#counters.start();
    this.#coordinator.start();
    const roles = Object.keys(this.bus.load()).length;
    this.#log.info({ event: "member.joined", roles, version: VERSION }, "node joined the cluster");
    void this.#members.joined(roles);
    return this;
  }

  setHttp(url: string): void {
    this.#presence.setHttp(url);
  }

  figures() {
    return this.bus.load();
  }

  intake(job: Omit<JobSubmission, "seeds">): Promise<JobIntake> {
    return this.#control.intake(job);
  }

  submit(job: JobSubmission): Promise<{ id: string; total: number }> {
    return this.#control.submit(job);
  }

  cancel(id: string): Promise<boolean> {
    return this.#control.cancel(id);
  }

  purge(id: string): Promise<boolean> {
    return this.#control.purge(id);
  }

  retryFailed(id: string): Promise<RetryOutcome | undefined> {
    return this.#control.retryFailed(id);
  }

  results(id: string): AsyncIterable<string> {
    return this.#control.results(id);
  }

  tail(id: string, n: number): Promise<string[]> {
    return this.#control.tail(id, n);
  }

  rowsAfter(id: string, after: number): AsyncIterable<{ seq: number; text: string }> {
    return this.#control.rowsAfter(id, after);
  }

  followed(id: string, seq: number): Promise<{ handedUpTo: number }> {
    return this.#control.followed(id, seq);
  }

  task(job: string, id: string): Promise<string | undefined> {
    return this.#control.task(job, id);
  }

  jobs(): Promise<JobStatus[]> {
    return this.#figures.jobs();
  }

  job(id: string): Promise<JobStatus | undefined> {
    return this.#figures.job(id);
  }

  members(): Promise<Member[]> {
    return this.#presence.list();
  }

  events(q: EventQuery): Promise<ClusterEvent[]> {
    return this.#feed.read(q);
  }

  metrics(): Promise<string> {
    return this.#figures.metrics();
  }

  /** Leave: stop taking work, give back tasks in flight, flush counters, leave the member view. */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    this.#state = "draining";
    this.#log.info("leaving the cluster: giving back tasks in flight");
    this.#presence.stop();
    this.#hosting.stop();
    this.#coordinator.stop();
    this.#table.stop();
    this.#unhookEnv?.();
    const drained = this.bus.drain();
    this.engine.abort();
    await this.#starter.close();
    await drained;
    await this.bus.close();
    this.#counters.stop();
    await this.#counters.flush();
    this.#takeovers.stop();
    for (const unhook of this.#unhooks) unhook();
    // said before the record goes, so no peer reports this node lost; a NATS away holds the leave up 3 s at most
    void this.#members.left(this.bus.stats.handedBack);
    await this.#feed.close(3000);
    await this.#presence.leave();
    await this.#nats.close();
    this.#log.info({ event: "member.left", handedBack: this.bus.stats.handedBack }, "left the cluster");
  }
}
