import { describe } from "../errors.ts";
import type { LlmClient } from "../llm/types.ts";
import type { Logger } from "../log.ts";
import type { Supervisor } from "../services/supervisor.ts";
import type { ClusterEvent, EventKind, EventQuery, EventReport } from "../protocol/event.ts";
import { type EventStore, isNatsUnavailable } from "../store/index.ts";
import { sleep } from "../util/wait.ts";
import { isManaged } from "./peers.ts";

/** Tries at storing one event while NATS cannot be reached, and the first pause between them. */
const PUBLISH_TRIES = 5;
const RETRY_MS = 500;
/** Events waiting to be stored past this are dropped (logged): a feed must never hold a node up. */
const MAX_PENDING = 500;

/** How an event is reported, besides what it says. */
export interface ReportOptions {
  /**
   * The happening's identity, for events several nodes see (a member lost,
   * a job ended): every copy published with the same id within the
   * stream's duplicate window is stored once.
   */
  id?: string;
  /**
   * A chain of events about one thing that goes down and up (an endpoint):
   * each is identified by its kind, the chain and the sequence of the
   * chain's last event this node knows, so nodes that see the same
   * change store it once, while the next change is a new entry.
   */
  chain?: string;
  /** log level of its line (default info) */
  level?: "info" | "warn";
  /** false when the code that saw it logs it already */
  log?: boolean;
}

/**
 * A node's side of the events feed: each event it reports becomes a log
 * line here and an entry in the feed in NATS, stored in the background
 * (tried again for a while when NATS is away; never thrown at the caller).
 * Events are rare, so nothing here is on a hot path.
 */
export class EventFeed {
  /** events that could not be stored */
  dropped = 0;
  #pending = 0;
  /** the last sequence known of each chain */
  readonly #chains = new Map<string, number>();
  readonly #inFlight = new Set<Promise<unknown>>();
  #closed = false;

  constructor(
    private readonly node: string,
    private readonly store: EventStore,
    private readonly log: Logger,
  ) {}

  /**
   * Log the event and store it in the feed. Resolves with its sequence in
   * the feed (the first copy's, for one several nodes reported), or
   * undefined when it could not be stored; never rejects.
   */
  report(ev: EventReport, opts: ReportOptions = {}): Promise<number | undefined> {
    const stored = { ...ev, node: this.node, at: Date.now() };
    if (opts.log !== false) {
      const fields = { event: ev.kind, ...(ev.subject !== undefined ? { subject: ev.subject } : {}), ...(ev.job !== undefined ? { job: ev.job } : {}), ...(ev.count !== undefined ? { count: ev.count } : {}) };
      this.log[opts.level ?? "info"](fields, ev.message);
    }
    if (this.#closed || this.#pending >= MAX_PENDING) {
      this.dropped++;
      return Promise.resolve(undefined);
    }
    this.#pending++;
    const p = this.#store(stored, opts).finally(() => {
      this.#pending--;
      this.#inFlight.delete(p);
    });
    this.#inFlight.add(p);
    return p;
  }

  async #store(ev: Omit<ClusterEvent, "seq">, opts: ReportOptions): Promise<number | undefined> {
    const id = opts.chain !== undefined ? `${ev.kind}:${opts.chain}:${this.#chains.get(opts.chain) ?? 0}` : opts.id;
    for (let attempt = 1; ; attempt++) {
      try {
        const { seq } = await this.store.publish(ev, id);
        if (opts.chain !== undefined) this.#chains.set(opts.chain, seq);
        return seq;
      } catch (err) {
        if (this.#closed || attempt >= PUBLISH_TRIES || !isNatsUnavailable(err)) {
          this.dropped++;
          this.log.warn({ event: ev.kind, err: describe(err) }, "cannot store an event in the events feed");
          return undefined;
        }
        await sleep(RETRY_MS * 2 ** (attempt - 1));
      }
    }
  }

  /** Events of the feed, oldest first (see EventStore.read). */
  read(q: EventQuery): Promise<ClusterEvent[]> {
    return this.store.read(q);
  }

  /** Messages on the feed that were not events. */
  get garbage(): number {
    return this.store.garbage;
  }

  /** Wait (at most `ms`) for the events being stored, then store no more. */
  async close(ms = 3000): Promise<void> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, ms);
    });
    await Promise.race([Promise.all(this.#inFlight), late]);
    clearTimeout(timer);
    this.#closed = true;
  }
}

/** The sentence and identity of a job's change of state. */
export function jobEvent(kind: Extract<EventKind, `job.${string}` | "budget.reached">, job: string, detail: string): [EventReport, ReportOptions] {
  const says: Record<typeof kind, string> = {
    "job.submitted": `job ${job} submitted`,
    "job.done": `job ${job} done`,
    "job.cancelled": `job ${job} cancelled`,
    "job.purged": `job ${job} purged`,
    "job.retried": `job ${job} runs its failed tasks again`,
    "budget.reached": `job ${job} reached its budget`,
  };
  return [{ kind, job, message: detail ? `${says[kind]}: ${detail}` : says[kind] }, { id: `${kind}:${job}` }];
}

/**
 * Report the node's LLM services into the feed: its supervised servers'
 * restarts, and its LLM client's endpoints going down and coming back
 * (which every node using an endpoint may see: the same change is stored
 * once). Their own code logs them. Returns the ways to stop.
 */
export function watchServices(feed: EventFeed, node: string, o: { llm?: LlmClient; supervisors?: readonly Supervisor[] }): (() => void)[] {
  const stops: (() => void)[] = [];
  for (const sup of o.supervisors ?? []) {
    stops.push(
      sup.onRestart((r) => {
        const message = `LLM server ${sup.name} on ${node} is restarted (restart ${r.restarts}, in ${r.inMs} ms): ${r.reason}`;
        void feed.report({ kind: "llm.restarted", subject: sup.name, count: r.restarts, message }, { log: false });
      }),
    );
  }
  if (isManaged(o.llm)) {
    stops.push(
      o.llm.onStanding(({ url, up, reason }) => {
        const message = up ? `LLM endpoint ${url} is up again` : `LLM endpoint ${url} is down${reason ? `: ${reason}` : ""}`;
        void feed.report({ kind: up ? "endpoint.up" : "endpoint.down", subject: url, message }, { chain: `endpoint:${url}`, log: false });
      }),
    );
  }
  return stops;
}

/** How often a node looks whether its LLM requests wait for an endpoint (for the feed; admission looks at each pull). */
const ADMISSION_CHECK_MS = 1000;

/**
 * A node's admission while no LLM endpoint answers it: `paused()` is true
 * while any of its LLM requests waits for an endpoint to come back (its
 * seed pullers then take no new seeds, so the job's seeds wait in NATS for
 * a node that has an endpoint, or for this one's to return, instead of
 * being burnt into failed rows), and each change is an event. The tasks in
 * flight hold their place meanwhile (up to llm.waitOnlineMs, after which
 * they fail as any request does). Returns the predicate and the way to stop.
 */
export function watchAdmission(feed: EventFeed, node: string, llm: LlmClient | undefined): { paused: () => boolean; stop: () => void } {
  const waiting = llm?.waitingForEndpoint?.bind(llm);
  if (!waiting) return { paused: () => false, stop: () => {} };
  const paused = () => waiting() > 0;
  let was = false;
  let since = 0;
  const timer = setInterval(() => {
    const now = paused();
    if (now === was) return;
    was = now;
    if (now) {
      since = Date.now();
      const message = `no LLM endpoint answers ${node}: it takes no new tasks, and its ${waiting()} waiting LLM request(s) hold their tasks' place (up to llm.waitOnlineMs)`;
      void feed.report({ kind: "admission.paused", subject: node, count: waiting(), message }, { chain: `admission:${node}`, level: "warn" });
    } else {
      const message = `an LLM endpoint answers ${node} again: it takes new tasks (paused ${Math.round((Date.now() - since) / 1000)} s)`;
      void feed.report({ kind: "admission.resumed", subject: node, message }, { chain: `admission:${node}` });
    }
  }, ADMISSION_CHECK_MS);
  timer.unref?.();
  return { paused, stop: () => clearInterval(timer) };
}
