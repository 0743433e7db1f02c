import type { Lease } from "../bus.ts";
import type { Logger } from "../../log.ts";
import { describe } from "../../errors.ts";
import { encode } from "../../protocol/codec.ts";
import type { TaskState } from "../../protocol/task.ts";
import type { NatsLink } from "../../store/connection.ts";
import { Subjects } from "../../store/names.ts";
import type { DoneNotice, SeedRef } from "./wire.ts";

const ACK = "+ACK";
const NAK = "-NAK";
const WPI = "+WPI";

/** Where a message came from, read off its ack subject. */
export interface Delivery {
  /** times the server has delivered it (1 the first time) */
  count: number;
  /** its sequence in the stream */
  streamSeq: number;
}

/**
 * Parse a JetStream ack subject: `$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>...`
 * (or the longer form with domain and account hash). Undefined when it is not one.
 */
export function parseAckSubject(reply: string): Delivery | undefined {
  const t = reply.split(".");
  if (t[0] !== "$JS" || t[1] !== "ACK") return undefined;
  const base = t.length === 9 ? 4 : t.length >= 11 ? 6 : -1;
  if (base < 0) return undefined;
  const count = Number(t[base]);
  const streamSeq = Number(t[base + 1]);
  if (!Number.isSafeInteger(count) || !Number.isSafeInteger(streamSeq) || streamSeq < 1) return undefined;
  return { count, streamSeq };
}

/** Hands a task on from this node, with the hold it has here (the NATS bus's send). */
export type HoldSend = (state: TaskState, hold: Hold) => Promise<void>;

/**
 * What a task holds on the bus while it is on this node: the un-acked task
 * message it came with (none while it has not left the node that admitted
 * it) and its admission hold (the seed message). The same Hold goes along
 * with the task from step to step on this node. Keep-alives go out for
 * every hold on the keeper's timer, so a long step need not ask.
 */
export class Hold implements Lease {
  /** ack subject of the task message this task came with */
  task: string | undefined;
  /** hop id of the state that message carried: handing back an unchanged state would be a duplicate */
  mark: string | undefined;
  seed: SeedRef | undefined;
  /** the local run that has the task now (a later run takes it over on a local hop) */
  run = 0;
  /** gives back the slot of the run that has the task now, once (set by the bus for each run) */
  freeSlot: (() => void) | undefined;
  /** "held" until the task is finished, handed on, or given back */
  state: "held" | "done" | "handed" | "returned" = "held";
  /** why the task arrived damaged (a large text of its state could not be fetched back): its step fails it with this */
  broken: string | undefined;

  constructor(
    private readonly keeper: Keeper,
    private readonly hop: HoldSend,
    task?: { ack: string; mark: string },
    seed?: SeedRef,
  ) {
    this.task = task?.ack;
    this.mark = task?.mark;
    this.seed = seed;
    if (this.task) keeper.held.add(this);
  }

  get open(): boolean {
    return this.state === "held";
  }

  /** Hand the task on to its next role; this hold goes with it, or is let go once the task is stored for a peer. */
  send(state: TaskState): Promise<void> {
    return this.hop(state, this);
  }

  /** Give the task back to NATS to be delivered again at once. */
  giveBack(): void {
    this.keeper.giveBack(this);
  }

  /** The task's last step is over and its row is being stored: its slot may go to other work. */
  finishing(): void {
    const free = this.freeSlot;
    this.freeSlot = undefined;
    free?.();
  }

  /** The task's row is stored: let go of the task message and the seed. */
  async done(): Promise<void> {
    if (this.state !== "held") return;
    this.state = "done";
    this.keeper.finished(this);
  }
}

/**
 * Keeps this node's holds alive (`+WPI` on a timer, well within the ack
 * wait), and lets go of them: ack when done, nak when given back. Also keeps
 * the seeds this node admitted until their tasks' rows are stored, wherever
 * those tasks went.
 */
export class Keeper {
  /** holds with a task message, on this node */
  readonly held = new Set<Hold>();
  /** seed messages this node admitted whose rows are not known stored, by stream sequence */
  readonly admitted = new Map<number, { ref: SeedRef; handedAt?: number }>();
  #timer: ReturnType<typeof setInterval> | undefined;
  #checking = false;
  keepalives = 0;

  constructor(
    private readonly link: NatsLink,
    private readonly node: string,
    private readonly log: Logger,
    private readonly ackWaitMs: number,
    /** whether a task's row is stored (for seeds whose done notice went missing) */
    private readonly rowExists: (job: string, id: string) => Promise<boolean>,
  ) {}

  start(): void {
    const every = Math.max(200, Math.floor(this.ackWaitMs / 3));
    this.#timer = setInterval(() => this.#tick(), every);
  }

  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
  }

  #send(subject: string, what: string | Uint8Array): void {
    try {
      this.link.nc.publish(subject, what);
    } catch (err) {
      this.log.debug({ err: describe(err) }, "cannot send ack");
    }
  }

  ack(subject: string): void {
    this.#send(subject, ACK);
  }

  nak(subject: string): void {
    this.#send(subject, NAK);
  }

  /** Drop a message for good (garbage). */
  term(subject: string): void {
    this.#send(subject, "+TERM");
  }

  /** A seed message this node took: keep it until its task's row is stored. */
  admit(ref: SeedRef): void {
    this.admitted.set(ref.seq, { ref });
  }

  /** The task's row is stored. */
  finished(hold: Hold): void {
    if (hold.task) {
      this.ack(hold.task);
      this.held.delete(hold);
    }
    const seed = hold.seed;
    if (!seed) return;
    this.ack(seed.ack);
    if (seed.node === this.node) {
      this.admitted.delete(seed.seq);
    } else {
      const notice: DoneNotice = { v: 1, job: seed.job, seq: seed.seq };
      this.#send(Subjects.done(seed.node), encode(notice));
    }
  }

  /** The task was stored for its next role elsewhere: this node no longer holds its message. */
  handedOn(hold: Hold): void {
    hold.state = "handed";
    if (hold.task) {
      this.ack(hold.task);
      this.held.delete(hold);
    }
    const entry = hold.seed && hold.seed.node === this.node ? this.admitted.get(hold.seed.seq) : undefined;
    if (entry) entry.handedAt = Date.now();
  }

  /** Give a task back to NATS to be delivered again at once (shutdown, or a step that lost its task). */
  giveBack(hold: Hold): void {
    hold.state = "returned";
    if (hold.task) {
      this.nak(hold.task);
      this.held.delete(hold);
    } else if (hold.seed && hold.seed.node === this.node) {
      this.nak(hold.seed.ack);
      this.admitted.delete(hold.seed.seq);
    }
  }

  /**
   * This node is leaving: the seeds it admitted whose tasks went on
   * elsewhere are nak'ed with a long delay instead of left to expire. The
   * delay is a lease the server keeps for us: the task's row acks the seed
   * when it is stored (an earlier delivery's ack subject still acks it), and
   * only a task lost for that long brings its seed back for a new start.
   */
  deferHanded(delayMs: number): number {
    let n = 0;
    for (const [seq, entry] of this.admitted) {
      if (entry.handedAt === undefined) continue;
      this.#send(entry.ref.ack, `-NAK {"delay":${Math.round(delayMs * 1_000_000)}}`);
      this.admitted.delete(seq);
      n++;
    }
    return n;
  }

  /** The row of a seed this node admitted was stored by another node. */
  noticeDone(seq: number): void {
    const entry = this.admitted.get(seq);
    if (!entry) return;
    this.admitted.delete(seq);
    this.ack(entry.ref.ack);
  }

  #tick(): void {
    if (!this.link.stats.connected) return;
    for (const h of this.held) if (h.task) this.#send(h.task, WPI);
    for (const { ref } of this.admitted.values()) this.#send(ref.ack, WPI);
    this.keepalives += this.held.size + this.admitted.size;
    void this.#checkHanded();
  }

  /**
   * Seeds whose tasks left this node long ago and whose done notice never
   * came (a lost core message, a duplicate task dropped on the way): look for
   * their rows and let go of those that have one.
   */
  async #checkHanded(): Promise<void> {
    if (this.#checking) return;
    this.#checking = true;
    try {
      const old = Date.now() - Math.max(30_000, this.ackWaitMs * 2);
      let checked = 0;
      for (const [seq, entry] of this.admitted) {
        if (entry.handedAt === undefined || entry.handedAt > old) continue;
        if (++checked > 200) break;
        if (await this.rowExists(entry.ref.job, entry.ref.id)) {
          if (this.admitted.delete(seq)) this.ack(entry.ref.ack);
        } else entry.handedAt = Date.now();
      }
    } catch (err) {
      this.log.debug({ err: describe(err) }, "checking handed-on seeds failed");
    } finally {
      this.#checking = false;
    }
  }
}
