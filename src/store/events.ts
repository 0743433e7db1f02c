import { DeliverPolicy, type JsMsg, type StreamState } from "@nats-io/jetstream";
import { describe } from "../errors.ts";
import type { Logger } from "../log.ts";
import { decodeWith, encode } from "../protocol/codec.ts";
import { type ClusterEvent, EVENTS_DEFAULT_LIMIT, type EventQuery, type StoredEvent, StoredEventSchema } from "../protocol/event.ts";
import type { NatsLink } from "./connection.ts";
import { ApiCodes, isApiError } from "./errors.ts";
import { Streams, Subjects } from "./names.ts";
import { PUBLISH_TIMEOUT_MS } from "./setup.ts";

/** Sequences of garbage already counted, at most this many (a flood is counted once per message all the same, mostly). */
const GARBAGE_SEQS_KEPT = 10_000;

/**
 * The events feed in NATS: one message per event on
 * `mx.event.<kind>.<job or ~>` in the `MX_EVENTS` stream, which keeps them
 * for a day (see EVENTS_KEPT). A happening several nodes see is stored once:
 * they publish it with the same message id, and the stream's duplicate
 * window drops the later copies. Read back oldest first by sequence; a
 * message that is not an event is counted and skipped.
 */
export class EventStore {
  /** messages on the events subjects that are not events (each counted once) */
  garbage = 0;
  readonly #garbageSeqs = new Set<number>();

  constructor(
    private readonly link: NatsLink,
    private readonly log: Logger,
  ) {}

  /**
   * Store an event; with `msgId`, only the first of the copies published
   * within the duplicate window is kept. Resolves with its sequence (the
   * first copy's, for a duplicate).
   */
  async publish(ev: StoredEvent, msgId?: string): Promise<{ seq: number; duplicate: boolean }> {
    const ack = await this.link.unlessDisconnected(
      this.link.js.publish(Subjects.event(ev.kind, ev.job), encode(ev), {
        timeout: PUBLISH_TIMEOUT_MS,
        ...(msgId !== undefined ? { msgID: msgId } : {}),
      }),
    );
    return { seq: ack.seq, duplicate: ack.duplicate };
  }

  /**
   * Events oldest first: those after `q.after` (at most `q.limit`), or, with
   * no `after`, the latest `q.limit`; with `q.job`, only that job's. A poll
   * with `after` at the end of the feed costs one stream info request.
   */
  async read(q: EventQuery): Promise<ClusterEvent[]> {
    const limit = q.limit ?? EVENTS_DEFAULT_LIMIT;
    let st: StreamState;
    try {
      st = (await this.link.jsm.streams.info(Streams.events)).state;
    } catch (err) {
      // made again by the next node that sets up the streams
      if (isApiError(err, ApiCodes.streamNotFound)) return [];
      throw err;
    }
    if (st.messages === 0 || (q.after !== undefined && q.after >= st.last_seq)) return [];
    const first = Math.max(st.first_seq, (q.after ?? 0) + 1);
    if (q.job !== undefined) {
      const all = await this.#scan(Subjects.jobEvents(q.job), first, q.after !== undefined ? limit : Number.POSITIVE_INFINITY);
      const mine = all.filter((e) => e.job === q.job);
      return q.after !== undefined ? mine : mine.slice(-limit);
    }
    const start = q.after !== undefined ? first : Math.max(st.first_seq, st.last_seq - limit + 1);
    return this.#scan(Subjects.events, start, limit);
  }

  /**
   * Read from `start` on, through an ordered consumer, until `max` events
   * (garbage skipped does not count) or the last message there is now.
   */
  async #scan(filter: string, start: number, max: number): Promise<ClusterEvent[]> {
    const consumer = await this.link.js.consumers.get(Streams.events, {
      filter_subjects: filter,
      deliver_policy: DeliverPolicy.StartSequence,
      opt_start_seq: start,
    });
    const out: ClusterEvent[] = [];
    try {
      // asking for exactly what is there, no fetch waits out its expiry
      let left = (await consumer.info()).num_pending;
      while (left > 0 && out.length < max) {
        const batch = await consumer.fetch({ max_messages: Math.min(max - out.length, left, 256), expires: 2000 });
        let n = 0;
        for await (const m of batch) {
          n++;
          left = m.info.pending;
          const ev = this.#decode(m);
          if (ev) out.push(ev);
        }
        if (n === 0) break;
      }
    } finally {
      await consumer.delete().catch(() => undefined);
    }
    return out;
  }

  #decode(m: JsMsg): ClusterEvent | undefined {
    try {
      return { seq: m.seq, ...decodeWith(StoredEventSchema, m.data, `event message on ${m.subject}`) };
    } catch (err) {
      if (!this.#garbageSeqs.has(m.seq)) {
        if (this.#garbageSeqs.size >= GARBAGE_SEQS_KEPT) this.#garbageSeqs.clear();
        this.#garbageSeqs.add(m.seq);
        this.garbage++;
        this.log.warn({ subject: m.subject, seq: m.seq, err: describe(err) }, "skipped a message on the events feed that is not an event");
      }
      return undefined;
    }
  }
}
