import { createInbox, type Msg, type Subscription } from "@nats-io/transport-node";
import type { Logger } from "../../log.ts";
import type { NatsLink } from "../../store/connection.ts";

/** The slots a puller asks messages for; shared with the local hops of the same role. */
export interface SlotPool {
  /** slots neither running a step nor promised to a pull request */
  free(): number;
  /**
   * promise `n` slots to a pull request; `light` for an idle request's one
   * slot, which holds no slot of a group the pool shares with others (see
   * RoleSlots.reserve)
   */
  reserve(n: number, light?: boolean): void;
  /** take back `n` promised slots (`light` as they were promised) */
  release(n: number, light?: boolean): void;
  /** a request ended and its unused slots were taken back: whatever waits on this node for them may start */
  settled?(): void;
}

export interface PullerOptions {
  link: NatsLink;
  stream: string;
  consumer: string;
  pool: SlotPool;
  /**
   * A message taken off the consumer, with the subject that acks it.
   * `reserved` is true when a slot was promised to it (it was released just
   * before the call and the receiver must take it now); false for a message
   * that came after its request ended, or for an idle request's (whose slot
   * was promised light: the receiver checks for room).
   */
  onMessage(msg: Msg, ack: string, reserved: boolean): void;
  /** requests go unanswered (the consumer may be gone): re-create what is needed */
  onSilence?(): Promise<void>;
  log: Logger;
  /** most messages asked for at once (default 256) */
  maxBatch?: number;
  /** how long an idle request (1 message) waits at the server (default 1000 ms) */
  idleExpiresMs?: number;
  /** how long a request for several messages waits when none are there (default 100 ms) */
  burstExpiresMs?: number;
}

interface Request {
  n: number;
  batch: number;
  /** an idle request's: its slot was promised light */
  light: boolean;
  delivered: number;
  end: (status: RequestEnd) => void;
}

type RequestEnd = "filled" | "expired" | "empty" | "silent" | "unavailable" | "refused" | "reconnected";

/**
 * Pulls messages off one durable consumer, only as many as its slot pool has
 * free, so a node never holds more messages than it has slots.
 *
 * It speaks the pull protocol directly (one inbox, one request at a time) to
 * control exactly what is promised to the server: while idle it keeps a
 * single one-message request waiting (one slot promised); once messages flow
 * it asks for every free slot with `no_wait`, which the server answers at
 * once with what it has, so free slots are never promised for long and local
 * hops can use them.
 */
export class Puller {
  readonly #o: Required<Omit<PullerOptions, "onSilence">> & Pick<PullerOptions, "onSilence">;
  readonly #inbox: string;
  readonly #subject: string;
  #sub: Subscription | undefined;
  #current: Request | undefined;
  #seq = 0;
  #stopped = false;
  #sleeping: { resolve: () => void; wakeable: boolean } | undefined;
  #loop: Promise<void> | undefined;
  #unhook: (() => void) | undefined;
  /** messages that arrived for no open request */
  late = 0;
  requests = 0;
  /** how requests ended, by kind */
  readonly ends: Record<string, number> = {};

  constructor(opts: PullerOptions) {
    this.#o = { maxBatch: 256, idleExpiresMs: 1000, burstExpiresMs: 100, onSilence: undefined, ...opts };
    this.#inbox = createInbox();
    this.#subject = `$JS.API.CONSUMER.MSG.NEXT.${opts.stream}.${opts.consumer}`;
  }

  get consumer(): string {
    return this.#o.consumer;
  }

  start(): void {
    if (this.#loop) return;
    this.#sub = this.#o.link.nc.subscribe(`${this.#inbox}.*`, { callback: (_err, msg) => this.#onMsg(msg) });
    // A server that restarted forgot the open request: ask again at once.
    this.#unhook = this.#o.link.onReconnect(() => this.#current?.end("reconnected"));
    this.#loop = this.#run();
  }

  /** Slots were freed: ask for messages now rather than at the next tick. */
  wake(): void {
    if (this.#sleeping?.wakeable) this.#sleeping.resolve();
  }

  /** Stop asking; resolves once the open request has ended (messages it still brings are delivered). */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.#sleeping?.resolve();
    await this.#loop;
    this.#unhook?.();
    this.#sub?.unsubscribe();
  }

  /** Wait `ms`; a wakeable wait ends early when slots are freed. Stopping ends any wait. */
  #sleep(ms: number, wakeable = true): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(t);
        this.#sleeping = undefined;
        resolve();
      };
      const t = setTimeout(done, ms);
      this.#sleeping = { resolve: done, wakeable };
    });
  }

  async #run(): Promise<void> {
    const o = this.#o;
    let idle = true;
    let silent = 0;
    let backoff = 250;
    while (!this.#stopped) {
      const free = o.pool.free();
      if (free <= 0) {
        await this.#sleep(1000);
        continue;
      }
      const batch = idle ? 1 : Math.min(free, o.maxBatch);
      const expires = idle ? o.idleExpiresMs : o.burstExpiresMs;
      // An idle request's slot is promised light: idle pullers of roles sharing a group must not hold all of it.
      const light = idle;
      o.pool.reserve(batch, light);
      let req: Request | undefined;
      const end = await new Promise<RequestEnd>((resolve) => {
        const timer = setTimeout(() => finish("silent"), expires + 2000);
        const finish = (status: RequestEnd) => {
          clearTimeout(timer);
          if (this.#current === req) this.#current = undefined;
          resolve(status);
        };
        req = { n: ++this.#seq, batch, light, delivered: 0, end: finish };
        this.#current = req;
        this.requests++;
        try {
          o.link.nc.publish(this.#subject, `{"batch":${batch},"no_wait":true,"expires":${expires * 1_000_000}}`, {
            reply: `${this.#inbox}.${req.n}`,
          });
        } catch (err) {
          o.log.debug({ consumer: o.consumer, err: String(err) }, "cannot send pull request");
          finish("unavailable");
        }
      });
      const got = (req as Request | undefined)?.delivered ?? 0;
      this.ends[end] = (this.ends[end] ?? 0) + 1;
      o.pool.release(batch - got, light);
      if (batch > got) o.pool.settled?.();
      idle = got === 0;
      if (end === "silent" || end === "unavailable" || end === "refused") {
        if (end === "silent") silent++;
        if (silent >= 2 && o.onSilence) {
          silent = 0;
          try {
            await o.onSilence();
          } catch (err) {
            o.log.debug({ consumer: o.consumer, err: String(err) }, "consumer check failed");
          }
        }
        if (!this.#stopped) await this.#sleep(backoff, false);
        backoff = Math.min(backoff * 2, 4000);
      } else {
        silent = 0;
        backoff = 250;
      }
    }
  }

  #onMsg(msg: Msg): void {
    const req = this.#current;
    const ack = msg.reply;
    if (ack) {
      // A JetStream message: it answers the open request, if any.
      if (req) {
        req.delivered++;
        this.#o.pool.release(1, req.light);
        if (req.delivered >= req.batch) req.end("filled");
        this.#o.onMessage(msg, ack, !req.light);
      } else {
        this.late++;
        this.#o.onMessage(msg, ack, false);
      }
      return;
    }
    // A status: it ends the request named by its subject.
    const n = Number(msg.subject.slice(this.#inbox.length + 1));
    if (!req || req.n !== n) return;
    const code = msg.headers?.code ?? 0;
    if (code === 100) return; // heartbeat
    if (code === 408) req.end("expired");
    else if (code === 404) req.end("empty");
    else if (code === 503) req.end("unavailable");
    else {
      this.#o.log.debug({ consumer: this.#o.consumer, code, description: msg.headers?.description }, "pull request refused");
      req.end("refused");
    }
  }
}
