import type { KV } from "@nats-io/kv";
import { describe } from "../errors.ts";
import type { Logger } from "../log.ts";
import { decodeWith, encode } from "../protocol/codec.ts";
import { type Member, MemberSchema } from "../protocol/member.ts";

/**
 * Who is in the cluster: each node puts its record in a KV bucket whose max
 * age is the member TTL, about every second. A node that stops putting (it
 * died) ages out of the bucket within the TTL; one that leaves deletes its key.
 */
export class Membership {
  garbage = 0;
  #timer: ReturnType<typeof setInterval> | undefined;
  #failing = false;
  #restoring: Promise<void> | undefined;

  constructor(
    private readonly kv: KV,
    private readonly node: string,
    private readonly log: Logger,
    /**
     * Create the bucket again when it is gone. It is kept in memory, so a
     * nats-server that restarts loses it; without this every heartbeat
     * after a restart would fail and the view would stay as it was.
     */
    private readonly restore?: () => Promise<unknown>,
    /** the bucket's keys (default: the KV client's listing) */
    private readonly keys: () => Promise<Iterable<string> | AsyncIterable<string>> = () => kv.keys(),
  ) {}

  /** Put the record now and then every `everyMs`, as `record()` reads at the time. */
  #beat: (() => Promise<void>) | undefined;

  start(record: () => Member, everyMs: number): Promise<void> {
    const beat = async () => {
      try {
        await this.kv.put(this.node, encode(record()));
        if (this.#failing) this.log.info("membership heartbeat works again");
        this.#failing = false;
      } catch (err) {
        if (!this.#failing) this.log.warn({ err: describe(err) }, "cannot put membership heartbeat");
        this.#failing = true;
        this.#restoreBucket();
      }
    };
    this.#beat = beat;
    this.#timer = setInterval(() => void beat(), everyMs);
    return beat();
  }

  /** Put the record now, between heartbeats (it changed: e.g. the HTTP API listens). */
  announce(): Promise<void> {
    return this.#beat?.() ?? Promise.resolve();
  }

  /** Create the bucket again, one attempt at a time (creating one that exists changes nothing). */
  #restoreBucket(): void {
    if (!this.restore || this.#restoring) return;
    this.#restoring = this.restore()
      .then(
        () => this.log.debug("members bucket checked"),
        (err) => this.log.debug({ err: describe(err) }, "cannot create the members bucket again yet"),
      )
      .finally(() => {
        this.#restoring = undefined;
      });
  }

  /** Stop the heartbeat and take this node out of the view. */
  async leave(final?: Member): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
    try {
      if (final) await this.kv.put(this.node, encode(final));
      await this.kv.delete(this.node);
    } catch (err) {
      this.log.warn({ err: describe(err) }, "cannot remove this node from the members");
    }
  }

  /** The members whose heartbeat has not aged out. */
  async list(): Promise<Member[]> {
    const out: Member[] = [];
    // A key put again while the listing runs comes twice: list each once.
    const keys = new Set<string>();
    for await (const key of await this.keys()) keys.add(key);
    for (const key of keys) {
      const e = await this.kv.get(key);
      if (!e || e.operation !== "PUT") continue;
      try {
        out.push(decodeWith(MemberSchema, e.value, `member record "${key}"`));
      } catch (err) {
        this.garbage++;
        this.log.warn({ key, err: describe(err) }, "dropped a member record that is not one");
      }
    }
    return out.sort((a, b) => a.node.localeCompare(b.node));
  }
}
