import { JetStreamApiError } from "@nats-io/jetstream";
import { createInbox, headers as makeHeaders, type Msg, type MsgHdrs, type NatsConnection, type Subscription, TimeoutError } from "@nats-io/transport-node";
import { NatsUnavailableError } from "./errors.ts";

/** What the stream answered a publish with. */
export interface PubAck {
  stream: string;
  seq: number;
  duplicate: boolean;
}

export interface PublishOptions {
  /** de-duplication id (`Nats-Msg-Id`) */
  msgID?: string;
  /** store only when the subject's last message has this sequence (0: the subject has none) */
  expectLastSubjectSequence?: number;
  headers?: MsgHdrs;
  timeoutMs: number;
}

interface Pending {
  resolve: (ack: PubAck) => void;
  reject: (err: Error) => void;
  deadline: number;
}

const decoder = new TextDecoder();

/**
 * JetStream publishes whose acks come back on one inbox subscription, read
 * by a map and timed out by one timer. The client's `js.publish` makes a
 * request per message (its own reply registration, a timer and three error
 * objects for their stack traces), which at tens of thousands of rows and
 * seeds a second is most of a node's NATS cost; the answer is the same
 * JSON either way, and errors keep the client's classes (JetStreamApiError
 * with the server's code, TimeoutError), so callers tell them apart as
 * before.
 */
export class AckedPublisher {
  readonly #nc: NatsConnection;
  readonly #inbox = createInbox();
  readonly #pending = new Map<number, Pending>();
  #sub: Subscription | undefined;
  #timer: ReturnType<typeof setInterval> | undefined;
  #seq = 0;

  constructor(nc: NatsConnection) {
    this.#nc = nc;
  }

  /** Publish `data` to a stream's subject; resolves with the stream's ack, rejects with its error or a timeout. */
  publish(subject: string, data: Uint8Array, opts: PublishOptions): Promise<PubAck> {
    this.#sub ??= this.#nc.subscribe(`${this.#inbox}.*`, { callback: (_err, msg) => this.#onReply(msg) });
    const id = ++this.#seq;
    let h = opts.headers;
    if (opts.msgID !== undefined || opts.expectLastSubjectSequence !== undefined) {
      h ??= makeHeaders();
      if (opts.msgID !== undefined) h.set("Nats-Msg-Id", opts.msgID);
      if (opts.expectLastSubjectSequence !== undefined) h.set("Nats-Expected-Last-Subject-Sequence", String(opts.expectLastSubjectSequence));
    }
    return new Promise<PubAck>((resolve, reject) => {
      try {
        this.#nc.publish(subject, data, { reply: `${this.#inbox}.${id}`, ...(h ? { headers: h } : {}) });
      } catch (err) {
        reject(err instanceof Error ? err : new NatsUnavailableError(String(err)));
        return;
      }
      this.#pending.set(id, { resolve, reject, deadline: Date.now() + opts.timeoutMs });
      this.#timer ??= setInterval(() => this.#expire(), 100);
    });
  }

  /** Publishes waiting for their ack. */
  get pending(): number {
    return this.#pending.size;
  }

  /** Stop: what is still waiting is rejected. */
  close(): void {
    this.#sub?.unsubscribe();
    this.#sub = undefined;
    for (const p of this.#pending.values()) p.reject(new NatsUnavailableError("the publisher was closed"));
    this.#pending.clear();
    this.#stopTimer();
  }

  #onReply(msg: Msg): void {
    const id = Number(msg.subject.slice(this.#inbox.length + 1));
    const p = this.#pending.get(id);
    if (!p) return; // answered after its timeout: the caller has tried again
    this.#pending.delete(id);
    const code = msg.headers?.code ?? 0;
    if (code === 503) {
      p.reject(new NatsUnavailableError("no JetStream stream answered the publish (no responders)"));
      return;
    }
    let ack: { stream?: string; seq?: number; duplicate?: boolean; error?: { code: number; err_code?: number; description?: string } };
    try {
      ack = JSON.parse(decoder.decode(msg.data));
    } catch {
      p.reject(new NatsUnavailableError(`the publish was answered with what is not JSON (status ${code})`));
      return;
    }
    if (ack.error) {
      p.reject(new JetStreamApiError({ code: ack.error.code, err_code: ack.error.err_code ?? 0, description: ack.error.description ?? "" }));
      return;
    }
    if (typeof ack.stream !== "string" || typeof ack.seq !== "number") {
      p.reject(new NatsUnavailableError("the publish was answered with no stream and sequence"));
      return;
    }
    p.resolve({ stream: ack.stream, seq: ack.seq, duplicate: ack.duplicate === true });
  }

  #expire(): void {
    const now = Date.now();
    for (const [id, p] of this.#pending) {
      if (p.deadline > now) continue;
      this.#pending.delete(id);
      p.reject(new TimeoutError());
    }
    if (this.#pending.size === 0) this.#stopTimer();
  }

  #stopTimer(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
  }
}
