import type { EnvService } from "../env/types.ts";
import type { Bus } from "../bus/bus.ts";
import { roleKey } from "../bus/bus.ts";
import { NatsBusImpl } from "../bus/nats/index.ts";
import { type ClusterTimings, JobStoreError, type MemberRecord, type NatsCluster, type NodeCounters as NodeCountersRecord, type SeedProgress, openNatsCluster, safeName } from "../store/index.ts";
import { Engine } from "../engine/engine.ts";
import { describe } from "../errors.ts";
import { llmCapacity } from "../llm/capacity.ts";
import type { LlmClient } from "../llm/types.ts";
import { Accounting, type Prices } from "../engine/accounting.ts";
import type { Logger } from "../log.ts";
import type { AnyWorkflow } from "../plugin/api.ts";
import { Registry } from "../plugin/registry.ts";
import type { OutputRow } from "../protocol/task.ts";
import { VERSION } from "../version.ts";
import { JobStarter } from "./starter.ts";
import type { RoleSelection } from "./config.ts";
import { Coordinator } from "./coordinator.ts";
import { NodeCounters } from "./counters.ts";
import { isLive, JobTable } from "./jobs.ts";
import { prometheusText } from "./metrics.ts";
import { isManaged, PeerEndpoints } from "./peers.ts";
import { FigureCache, jobStatus, sumCounters, sumSpent } from "./status.ts";
import { StreamIntake } from "./intake.ts";
import { prepareHead, prepareJob } from "./submit.ts";
import type { ClusterNode, JobIntake, JobStatus, JobSubmission, Member } from "./types.ts";

/** How often the member view is read again. */
const MEMBERS_REFRESH_MS = 2000;

/** The admission gate of the node's environments. */
const ENV_GATE = "env";

export interface ClusterNodeOptions {
  /** node name; made safe for subjects and keys */
  name: string;
  nats: { servers: string[]; user?: string; pass?: string; token?: string; tls?: { ca?: string; cert?: string; key?: string } };
  timings?: Partial<ClusterTimings>;
  /** copies NATS keeps of each stream and bucket this node creates (default 1; more needs a NATS cluster) */
  replicas?: number;
  /** the workflows this node knows (their roles are hosted as `roles` says) */
  workflows: Registry | readonly AnyWorkflow[];
  /** which roles to host and their slots (default: every role, `auto`) */
  roles?: RoleSelection;
  /** slots of `auto` roles that do not wait on an LLM, or when there is no LLM (default 256) */
  defaultSlots?: number;
  llm?: LlmClient;
  services?: Record<string, unknown>;
  /** base URL of this node's HTTP API, advertised to the cluster */
  http?: string;
  log: Logger;
  /** run hops on this node when it has a free slot (default true) */
  localFirst?: boolean;
  /** ms between membership heartbeats (default 1000) */
  heartbeatMs?: number;
  /** prices by model, for the cost figures of /metrics */
  prices?: Prices;
  /** use the LLM servers other members advertise, besides this node's own (default true; loopback ones never) */
  shareLlm?: boolean;
  /** aborting stops the first-connect retries */
  signal?: AbortSignal;
}

const DEFAULT_TIMINGS: ClusterTimings = { ackWaitMs: 30_000, memberTtlMs: 5_000 };

/** A cluster node as `startClusterNode` returns it: the contract plus what tests and the CLI look at. */
export interface RunningClusterNode extends ClusterNode {
  readonly bus: NatsBusImpl;
  readonly engine: Engine;
  /** set the advertised HTTP URL once the server listens */
  setHttp(url: string): void;
  /** Prometheus-free figures for tests and benchmarks */
  figures(): ReturnType<RunningClusterNode["bus"]["load"]>;
}

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
  const nats: NatsCluster = await openNatsCluster({ ...opts.nats, name, log, timings, replicas: opts.replicas, signal: opts.signal });
  return new ClusterNodeImpl(name, opts, nats, registry, timings, log).start();
}

class ClusterNodeImpl implements RunningClusterNode {
  readonly bus: NatsBusImpl;
  readonly engine: Engine;
  readonly accounting: Accounting;
  readonly #nats: NatsCluster;
  readonly #registry: Registry;
  readonly #log: Logger;
  readonly #opts: ClusterNodeOptions;
  readonly #table: JobTable;
  readonly #admission: JobStarter;
  readonly #counters: NodeCounters;
  readonly #coordinator: Coordinator;
  readonly #startedAt = Date.now();
  readonly #autoLlmRoles: string[] = [];
  #http: string | undefined;
  #members: string[] = [];
  /** when the member view was last read */
  #membersAt = 0;
  /** live jobs' counters and seed progress, read from NATS at most twice a second */
  readonly #figures = new FigureCache<[NodeCountersRecord[], SeedProgress | undefined]>(500);
  #peers: PeerEndpoints | undefined;
  #timers: ReturnType<typeof setInterval>[] = [];
  #unhookEnv: (() => void) | undefined;
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
    this.#opts = opts;
    this.#nats = nats;
    this.#registry = registry;
    this.#log = log;
    this.#http = opts.http;
    const { results, jobs } = nats;
    this.bus = new NatsBusImpl({
      link: nats.link,
      node: name,
      log,
      timings,
      replicas: nats.replicas,
      localFirst: opts.localFirst,
      rowExists: (job, id) => results.exists(job, id),
    });
    this.accounting = new Accounting(opts.prices);
    const spending = {
      of: (job: string) => {
        const t = this.accounting.total(job);
        return t.requests > 0 ? { tokens: t.promptTokens + t.completionTokens, cost: t.cost } : undefined;
      },
      jobs: () => this.accounting.jobs(),
    };
    this.#counters = new NodeCounters(jobs, `${name}_${this.#startedAt.toString(36)}`, log, spending);
    this.#table = new JobTable(jobs, registry, log, (rec) => this.#admission.sync(rec));
    if ((opts.shareLlm ?? true) && isManaged(opts.llm)) this.#peers = new PeerEndpoints(opts.llm, name, log);
    this.engine = new Engine({
      accounting: this.accounting,
      bus: this.#selectiveBus(),
      jobs: this.#table.resolve,
      node: name,
      log,
      llm: opts.llm,
      services: opts.services,
      finish: (row) => this.#store(row),
    });
    const env = this.#opts.services?.env as EnvService | undefined;
    const hasEnv = env !== undefined && typeof env.inUse === "function" && typeof env.capacity === "number";
    if (hasEnv) {
      // A task whose first step takes an environment is admitted only while one is free here.
      this.bus.defineGate(ENV_GATE, () => env.capacity - env.inUse());
      this.#unhookEnv = env.onRelease?.(() => this.bus.wakeGate(ENV_GATE));
    }
    this.#admission = new JobStarter({
      bus: this.bus,
      envGate: hasEnv ? ENV_GATE : undefined,
      engine: this.engine,
      table: this.#table,
      results,
      finish: (row) => this.#store(row),
      log,
    });
    this.#coordinator = new Coordinator({
      node: name,
      table: this.#table,
      store: jobs,
      results,
      registry,
      log,
      members: () => this.#liveMembers(),
      memberTtlMs: timings.memberTtlMs,
    });
  }

  /** The engine hosts whole workflows; this lets only the selected roles through to the NATS bus. */
  #selectiveBus(): Bus {
    const bus = this.bus;
    const select = this.#opts.roles ?? (() => "auto" as const);
    return {
      host: (key, slots, handler) => {
        const dot = key.indexOf(".");
        if (select(key.slice(0, dot), key.slice(dot + 1)) !== undefined) bus.host(key, slots, handler);
      },
      send: (state) => bus.send(state),
      load: () => bus.load(),
      close: () => bus.close(),
    };
  }

  async start(): Promise<this> {
    const select = this.#opts.roles ?? (() => "auto" as const);
    const fallback = this.#opts.defaultSlots ?? 256;
    for (const wf of this.#registry.all()) {
      this.engine.hostWorkflow(wf, (role) => {
        const slots = select(wf.name, role);
        if (typeof slots === "number") return slots;
        if (wf.roles[role]?.kind === "llm" && this.#opts.llm) {
          this.#autoLlmRoles.push(roleKey(wf.name, role));
          return this.#llmCapacity() ?? fallback;
        }
        return fallback;
      });
    }
    if (this.#autoLlmRoles.length > 0) this.bus.shareSlots("llm", this.#llmCapacity() ?? fallback, this.#autoLlmRoles);
    await this.#table.start();
    for (const rec of this.#table.all()) this.#admission.sync(rec);
    await this.#nats.membership.start(() => this.#memberRecord(), this.#opts.heartbeatMs ?? 1000);
    await this.#refreshMembers();
    this.#counters.start();
    this.#coordinator.start();
    this.#timers.push(setInterval(() => void this.#refreshMembers(), MEMBERS_REFRESH_MS));
    this.#timers.push(setInterval(() => this.#followLlmCapacity(), 1000));
    this.#log.info({ roles: Object.keys(this.bus.load()).length, version: VERSION }, "node joined the cluster");
    return this;
  }

  /** What this node's LLM services run at once plus a small queue (see `llmCapacity`); undefined with no LLM. */
  #llmCapacity(): number | undefined {
    const llm = this.#opts.llm;
    return llm && llm.endpoints().length > 0 ? llmCapacity(llm) : undefined;
  }

  /** The LLM-bound roles share one group of slots that follows the LLM services' capacity. */
  #followLlmCapacity(): void {
    const cap = this.#llmCapacity();
    if (cap === undefined || this.#autoLlmRoles.length === 0) return;
    for (const key of this.#autoLlmRoles) this.bus.resize(key, cap);
    this.bus.shareSlots("llm", cap, this.#autoLlmRoles);
  }

  /**
   * The names of the running members. A view that could not be read again
   * for longer than a member lives is not trusted (it may name nodes that
   * have died since): then this node knows only itself, and coordinates
   * every job until the view is back, which is safe since ending a job is
   * a compare-and-set.
   */
  #liveMembers(): string[] {
    const ttl = this.#nats.timings.memberTtlMs;
    return Date.now() - this.#membersAt > Math.max(ttl, 3 * MEMBERS_REFRESH_MS) ? [] : this.#members;
  }

  async #refreshMembers(): Promise<void> {
    try {
      const all = await this.#nats.membership.list();
      this.#members = all.filter((m) => m.state === "running").map((m) => m.node);
      this.#membersAt = Date.now();
      this.#peers?.update(all);
    } catch (err) {
      this.#log.debug({ err: describe(err) }, "cannot read the members");
    }
  }

  #memberRecord(): MemberRecord {
    const rec: MemberRecord = {
      node: this.name,
      version: VERSION,
      roles: this.bus.load(),
      services: { llm: (this.#opts.llm?.endpoints() ?? []).map((e) => ({ ...e })), ...this.#envService() },
      startedAt: this.#startedAt,
      seenAt: Date.now(),
      state: this.#state,
    };
    if (this.#http) rec.http = this.#http;
    return rec;
  }

  /** The environment pool this node offers, as members see it. */
  #envService(): { env?: { driver: string; capacity: number; inUse: number } } {
    const env = this.#opts.services?.env as EnvService | undefined;
    if (!env || typeof env.inUse !== "function") return {};
    return { env: { driver: env.driver, capacity: env.capacity, inUse: env.inUse() } };
  }

  setHttp(url: string): void {
    this.#http = url;
  }

  figures() {
    return this.bus.load();
  }

  /** Store a row once, trying again while NATS is away; counts it when this node stored it first. */
  async #store(row: OutputRow): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      try {
        const { outcome, row: stored } = await this.#nats.results.store(row);
        if (outcome === "stored") {
          const wf = this.#registry.names().includes(row.workflow) ? this.#registry.get(row.workflow) : undefined;
          this.#counters.add(stored, wf?.metrics ?? []);
        }
        return;
      } catch (err) {
        if (this.#closing) throw err;
        if (attempt % 10 === 0) this.#log.warn({ task: row.id, attempt, err: describe(err) }, "cannot store a row, trying again");
        await new Promise((r) => setTimeout(r, Math.min(2000, 100 * 2 ** Math.min(attempt, 5))));
      }
    }
  }

  async intake(job: Omit<JobSubmission, "seeds">): Promise<JobIntake> {
    if (this.#closing) throw new Error("this node is leaving the cluster");
    return new StreamIntake({
      head: prepareHead(job, this.#registry),
      store: this.#nats.jobs,
      node: this.name,
      maxMessageBytes: this.#nats.link.maxPayload() - 4096,
      log: this.#log,
      onRecord: (rec) => this.#table.set(rec),
      onRemoved: (id) => this.#table.forget(id),
    });
  }

  async submit(job: JobSubmission): Promise<{ id: string; total: number }> {
    if (this.#closing) throw new Error("this node is leaving the cluster");
    const { jobs } = this.#nats;
    const prepared = prepareJob(job, this.#registry, this.name, this.#nats.link.maxPayload() - 4096);
    const rec = prepared.record;
    // The seed consumer first: nodes start pulling as soon as they see the record.
    await jobs.openSeeds(rec.id, rec.settings.concurrency);
    await jobs.create(rec);
    this.#table.set(rec);
    let stored: number;
    try {
      stored = await jobs.storeSeeds(prepared.tasks());
    } catch (err) {
      // Part of a job must not run as if it were the whole: end it, saying why, and tell the caller.
      const reason = `its seeds could not all be stored on ${this.name}: ${describe(err)}`;
      await this.cancel(rec.id, reason).catch((e) => this.#log.warn({ job: rec.id, err: describe(e) }, "cannot cancel a half-stored job"));
      throw err;
    }
    const running = await jobs.update(rec.id, (r) =>
      r.state === "submitting" ? { ...r, state: "running", updatedAt: Math.max(Date.now(), r.updatedAt + 1) } : undefined,
    );
    if (running) this.#table.set(running);
    if (running?.state !== "running") {
      throw new JobStoreError(`job "${rec.id}" ended while its seeds were stored: ${running?.reason ?? "its record is gone"}`);
    }
    this.#log.info({ job: rec.id, workflow: rec.workflow, tasks: stored }, "job stored");
    return { id: rec.id, total: rec.total };
  }

  async #status(id: string): Promise<JobStatus | undefined> {
    const rec = await this.#table.fetch(id);
    if (!rec) return undefined;
    const { jobs } = this.#nats;
    const live = isLive(rec);
    const [counters, progress] = rec.final
      ? [[], undefined]
      : await this.#figures.get(rec.id, () =>
          Promise.all([jobs.counters(rec.id), live ? jobs.seedProgress(rec.id).catch(() => undefined) : Promise.resolve(undefined)]),
        );
    const wf = this.#registry.names().includes(rec.workflow) ? this.#registry.get(rec.workflow) : undefined;
    return jobStatus(rec, sumCounters(counters), progress, wf?.metrics ?? [], Date.now(), rec.final ? undefined : sumSpent(counters));
  }

  async jobs(): Promise<JobStatus[]> {
    const out: JobStatus[] = [];
    for (const rec of this.#table.all()) {
      const st = await this.#status(rec.id);
      if (st) out.push(st);
    }
    return out;
  }

  job(id: string): Promise<JobStatus | undefined> {
    return this.#status(id);
  }

  async cancel(id: string, reason = `cancelled on ${this.name}`): Promise<boolean> {
    let changed = false;
    const rec = await this.#nats.jobs.update(id, (r) => {
      if (!isLive(r)) return undefined;
      changed = true;
      return { ...r, state: "cancelled", updatedAt: Math.max(Date.now(), r.updatedAt + 1), reason };
    });
    if (!rec || !changed) return false;
    this.#table.set(rec);
    await this.#nats.jobs.dropSeeds(id).catch((err) => this.#log.warn({ job: id, err: describe(err) }, "cannot drop the seeds of a cancelled job"));
    return true;
  }

  async purge(id: string): Promise<boolean> {
    const rec = await this.#table.fetch(id);
    if (!rec) return false;
    if (isLive(rec)) await this.cancel(id, `purged on ${this.name}`);
    const rows = await this.#nats.results.purge(id);
    await this.#nats.jobs.dropCounters(id);
    await this.#nats.jobs.remove(id);
    this.#table.forget(id);
    this.#log.info({ job: id, rows }, "job purged");
    return true;
  }

  results(id: string): AsyncIterable<string> {
    return this.#nats.results.rows(id, async () => isLive(await this.#table.fetch(id)));
  }

  async members(): Promise<Member[]> {
    return this.#nats.membership.list();
  }

  metrics(): string {
    return (
      prometheusText({
      node: this.name,
      engine: this.engine.stats,
      bus: this.bus.stats,
      results: this.#nats.results.stats,
      link: this.#nats.link.stats,
      roles: this.bus.load(),
      groups: this.bus.groups(),
      kvGarbage: this.#nats.jobs.garbage + this.#nats.membership.garbage,
      admitted: this.bus.keeper.admitted.size,
      keepalives: this.bus.keeper.keepalives,
      draining: this.#state === "draining",
      }) + this.accounting.prometheus()
    );
  }

  /** Leave: stop taking work, give back tasks in flight, flush counters, leave the member view. */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    this.#state = "draining";
    this.#log.info("leaving the cluster: giving back tasks in flight");
    for (const t of this.#timers) clearInterval(t);
    this.#coordinator.stop();
    this.#table.stop();
    this.#unhookEnv?.();
    const drained = this.bus.drain();
    this.engine.abort();
    await this.#admission.close();
    await drained;
    await this.bus.close();
    this.#counters.stop();
    await this.#counters.flush();
    await this.#nats.membership.leave(this.#memberRecord());
    await this.#nats.close();
    this.#log.info({ handedBack: this.bus.stats.handedBack }, "left the cluster");
  }
}
