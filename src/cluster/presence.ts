import type { NatsBusImpl } from "../bus/nats/index.ts";
import type { EnvService } from "../env/types.ts";
import { describe } from "../errors.ts";
import type { LlmClient } from "../llm/types.ts";
import type { Logger } from "../log.ts";
import type { NatsCluster } from "../store/index.ts";
import { VERSION } from "../version.ts";
import type { Member } from "./types.ts";

/** How often the member view is read again. */
const MEMBERS_REFRESH_MS = 2000;

export interface PresenceOptions {
  node: string;
  nats: NatsCluster;
  /** its roles' load goes into every heartbeat */
  bus: NatsBusImpl;
  llm?: LlmClient;
  env?: EnvService;
  /** base URL of this node's HTTP API, when known at start */
  http?: string;
  startedAt: number;
  /** ms between heartbeats */
  heartbeatMs: number;
  /** whether the node is leaving */
  draining: () => boolean;
  /** called with every member view read */
  onMembers?: (members: Member[]) => void;
  log: Logger;
}

/**
 * This node in the member view: its heartbeat (roles and their load, the
 * slot groups they share, LLM services, environments, HTTP URL, state), and the view of the others,
 * read again every few seconds.
 */
export class Presence {
  #http: string | undefined;
  #members: string[] = [];
  /** when the member view was last read */
  #membersAt = 0;
  #timer: ReturnType<typeof setInterval> | undefined;

  constructor(private readonly o: PresenceOptions) {
    this.#http = o.http;
  }

  /** Announce this node and read the member view. */
  async start(): Promise<void> {
    await this.o.nats.membership.start(() => this.#record(), this.o.heartbeatMs);
    await this.#refresh();
    this.#timer = setInterval(() => void this.#refresh(), MEMBERS_REFRESH_MS);
  }

  /** Stop reading the member view (heartbeats go on until {@link leave}). */
  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** Leave the member view, saying so in a last record. */
  async leave(): Promise<void> {
    this.stop();
    await this.o.nats.membership.leave(this.#record());
  }

  /** Set the advertised HTTP URL (once the server listens). */
  setHttp(url: string): void {
    this.#http = url;
    // Peers find the API at once, not at the next heartbeat.
    void this.o.nats.membership.announce();
  }

  /** Every member as the cluster sees it now. */
  list(): Promise<Member[]> {
    return this.o.nats.membership.list();
  }

  /**
   * The names of the running members. A view that could not be read again
   * for longer than a member lives is not trusted (it may name nodes that
   * have died since): then this node knows only itself, and coordinates
   * every job until the view is back, which is safe since ending a job is
   * a compare-and-set.
   */
  live(): string[] {
    const ttl = this.o.nats.timings.memberTtlMs;
    return Date.now() - this.#membersAt > Math.max(ttl, 3 * MEMBERS_REFRESH_MS) ? [] : this.#members;
  }

  async #refresh(): Promise<void> {
    try {
      const all = await this.o.nats.membership.list();
      this.#members = all.filter((m) => m.state === "running").map((m) => m.node);
      this.#membersAt = Date.now();
      this.o.onMembers?.(all);
    } catch (err) {
      this.o.log.debug({ err: describe(err) }, "cannot read the members");
    }
  }

  #record(): Member {
    const env = this.o.env;
    const rec: Member = {
      node: this.o.node,
      version: VERSION,
      roles: this.o.bus.load(),
      groups: this.o.bus.groups(),
      services: {
        llm: (this.o.llm?.endpoints() ?? []).map((e) => ({ ...e })),
        ...(env ? { env: { driver: env.driver, capacity: env.capacity, inUse: env.inUse() } } : {}),
      },
      startedAt: this.o.startedAt,
      seenAt: Date.now(),
      state: this.o.draining() ? "draining" : "running",
    };
    if (this.#http) rec.http = this.#http;
    return rec;
  }
}
