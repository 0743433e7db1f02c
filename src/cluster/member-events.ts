import type { EventFeed } from "./events.ts";
import type { Member } from "./types.ts";

/** Member views in a row a member must be missing from before it counts as lost. */
const MISSING_VIEWS = 2;
/** Members gone this long are forgotten. */
const FORGET_MS = 3600_000;

/** The identity of a node's run joining, and of its leaving or loss (one of the two, whoever reports first). */
const joinId = (node: string, startedAt: number) => `member.joined:${node}:${startedAt}`;
const goneId = (node: string, startedAt: number) => `member.gone:${node}:${startedAt}`;

const secs = (ms: number) => `${(Math.max(0, ms) / 1000).toFixed(1)} s`;

interface Seen {
  startedAt: number;
  /** its last heartbeat, by its own clock */
  seenAt: number;
  /** when this node last saw it in the view, by this node's clock */
  presentAt: number;
  /** views in a row it was missing from */
  missing: number;
  gone: boolean;
  /** the feed's sequence of its loss */
  lostSeq?: number;
}

export interface MemberEventsOptions {
  node: string;
  /** when this node started: its run's identity */
  startedAt: number;
  feed: EventFeed;
  /** told of each member lost, to count the tasks this node takes over from it */
  takeovers: Takeovers;
}

/**
 * Membership events: this node reports its own joining and leaving, and
 * every node reports the members it sees vanish without leaving (lost: the
 * heartbeat stopped and the record aged out). Every node sees a loss; they
 * all report it under one id (the member's name and start time), which a
 * clean leave shares, so the feed has one entry per happening, whoever saw
 * it first.
 */
export class MemberEvents {
  readonly #seen = new Map<string, Seen>();
  #first = true;
  /** no member is concluded lost before then (views just after a NATS outage are partial) */
  #settledAt = 0;

  constructor(private readonly o: MemberEventsOptions) {}

  /** This node is in the member view (the node logs that itself). */
  joined(roles: number): Promise<number | undefined> {
    const { node, startedAt } = this.o;
    return this.o.feed.report({ kind: "member.joined", subject: node, message: `${node} joined the cluster, hosting ${roles} roles` }, { id: joinId(node, startedAt), log: false });
  }

  /** This node is leaving cleanly (the node logs that itself): said before its record goes, so no peer takes it for lost. */
  left(handedBack: number): Promise<number | undefined> {
    const { node, startedAt } = this.o;
    return this.o.feed.report(
      { kind: "member.left", subject: node, message: `${node} left the cluster, handing back ${handedBack} tasks` },
      { id: goneId(node, startedAt), log: false },
    );
  }

  /**
   * This node's NATS connection came back: for a while, members missing
   * from the view are not concluded lost. The members bucket lives in
   * memory, so after a server restart each node's record comes back only
   * as the node reconnects, some seconds apart.
   */
  reconnected(graceMs: number): void {
    this.#settledAt = Date.now() + graceMs;
  }

  /** A member view was read. */
  update(all: readonly Member[]): void {
    // A view without this node is not whole (the bucket is being made again after a NATS restart).
    if (!all.some((m) => m.node === this.o.node)) return;
    const now = Date.now();
    const present = new Set<string>();
    for (const m of all) {
      if (m.node === this.o.node) continue;
      present.add(m.node);
      const s = this.#seen.get(m.node);
      if (s && s.startedAt === m.startedAt) {
        s.seenAt = m.seenAt;
        s.presentAt = now;
        s.missing = 0;
        if (s.gone) this.#back(m.node, s, now);
        continue;
      }
      // an earlier run of it, never seen going, stopped without leaving (it started again at once)
      if (s && !s.gone) this.#lost(m.node, s, now);
      this.#seen.set(m.node, { startedAt: m.startedAt, seenAt: m.seenAt, presentAt: now, missing: 0, gone: false });
      // the members there when this node came are not news
      if (!this.#first) {
        void this.o.feed.report({ kind: "member.joined", subject: m.node, message: `${m.node} joined the cluster` }, { id: joinId(m.node, m.startedAt) });
      }
    }
    this.#first = false;
    for (const [name, s] of this.#seen) {
      if (present.has(name)) continue;
      if (s.gone) {
        if (now - s.presentAt > FORGET_MS) this.#seen.delete(name);
        continue;
      }
      if (++s.missing >= MISSING_VIEWS && now >= this.#settledAt) this.#lost(name, s, now);
    }
  }

  #lost(name: string, s: Seen, now: number): void {
    s.gone = true;
    const last = Math.min(s.seenAt, s.presentAt);
    this.o.takeovers.lost(name, last);
    void this.o.feed
      .report(
        { kind: "member.lost", subject: name, message: `${name} lost: its heartbeat stopped ${secs(now - last)} ago` },
        { id: goneId(name, s.startedAt), level: "warn" },
      )
      .then((seq) => {
        if (seq !== undefined) s.lostSeq = seq;
      });
  }

  #back(name: string, s: Seen, now: number): void {
    s.gone = false;
    void this.o.feed.report(
      { kind: "member.joined", subject: name, message: `${name} is back: its heartbeat came again after ${secs(now - s.seenAt)}` },
      { id: `member.back:${name}:${s.startedAt}:${s.lostSeq ?? "?"}` },
    );
  }
}

export interface TakeoversOptions {
  node: string;
  feed: EventFeed;
  /** a message un-acked this long is delivered again */
  ackWaitMs: number;
  /** how often members put their heartbeat */
  heartbeatMs: number;
}

interface Window {
  member: string;
  /** when redeliveries of its messages may come, by this node's clock */
  from: number;
  /** by then every message it held has come back */
  due: number;
  to: number;
  count: number;
  lastAt: number;
}

/**
 * Counts the tasks this node takes over from lost members. A message a node
 * held when it died is delivered again once its ack wait runs out after
 * the node's last keep-alive (sent every third of the ack wait), so the
 * redelivered tasks and seeds this node starts within that span after a
 * member's last heartbeat are that member's. They often come before the
 * member is seen lost (its record lives a while), so recent ones are kept
 * and counted when it is. Once they stop coming, one event says how many.
 */
export class Takeovers {
  /** when redelivered tasks were started here lately */
  #recent: number[] = [];
  readonly #windows: Window[] = [];
  #timer: ReturnType<typeof setInterval> | undefined;

  constructor(private readonly o: TakeoversOptions) {}

  /** A redelivered task (or seed) started here. */
  taken(now = Date.now()): void {
    const w = this.#windows.find((x) => now >= x.from && now <= x.to);
    if (w) {
      w.count++;
      w.lastAt = now;
      return;
    }
    this.#recent.push(now);
    // nothing older than a window can still be counted
    const horizon = now - this.#span();
    if (this.#recent.length > 10_000 || (this.#recent[0] ?? now) < horizon) this.#recent = this.#recent.filter((t) => t >= horizon);
  }

  /** A member was lost; `lastSeen` is its last heartbeat. */
  lost(member: string, lastSeen: number): void {
    const { ackWaitMs, heartbeatMs } = this.o;
    const from = lastSeen + ackWaitMs / 2;
    const w: Window = { member, from, due: lastSeen + heartbeatMs + ackWaitMs, to: lastSeen + this.#span(), count: 0, lastAt: 0 };
    this.#recent = this.#recent.filter((t) => {
      if (t < w.from || t > w.to) return true;
      w.count++;
      w.lastAt = Math.max(w.lastAt, t);
      return false;
    });
    this.#windows.push(w);
    this.#timer ??= setInterval(() => this.#tick(), 500);
  }

  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** From a member's last heartbeat, how long its messages may take to come back and be taken. */
  #span(): number {
    return this.o.heartbeatMs + 2 * this.o.ackWaitMs + 10_000;
  }

  #tick(now = Date.now()): void {
    const quiet = Math.max(2000, this.o.ackWaitMs / 3);
    for (let i = this.#windows.length - 1; i >= 0; i--) {
      const w = this.#windows[i] as Window;
      const settled = w.count > 0 && now > w.due + quiet && now - w.lastAt > quiet;
      if (!settled && now <= w.to) continue;
      this.#windows.splice(i, 1);
      if (w.count === 0) continue;
      const what = w.count === 1 ? "1 task" : `${w.count} tasks`;
      void this.o.feed.report(
        { kind: "tasks.taken_over", subject: w.member, count: w.count, message: `${this.o.node} took over ${what} of lost member ${w.member}` },
        { id: `tasks.taken_over:${w.member}:${w.from}:${this.o.node}` },
      );
    }
    if (this.#windows.length === 0) this.stop();
  }
}
