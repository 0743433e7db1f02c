/**
 * How many requests one endpoint is given at once. A server runs a fixed
 * number of sequences (its slots); requests past them wait in its queue,
 * where they only add latency (and, on llama.cpp, take one of a handful of
 * HTTP threads that /health and /metrics need too). So the limit is the
 * server's slots plus a short queue, less what other clients have there,
 * within the configured cap:
 * - slots known (the config, /props, /get_server_info, /info, `sim:slots`):
 *   that, at once;
 * - slots unknown but load reported (vLLM, which does not publish
 *   `--max-num-seqs`): start low, grow while the server queues nothing and
 *   the limit is used, and once it queues, take what it runs then as its
 *   slots;
 * - nothing reported (a hosted API): start at 64 and let its rate-limit
 *   headers and 429s lead.
 * 429s and timeouts cut the limit further (AIMD, in Endpoint).
 */
import type { ServerKind } from "./dialect/types.ts";

/** The queue allowed past the slots, as a share of them (at least MIN_QUEUE). */
export const QUEUE_SHARE = 0.25;
const MIN_QUEUE = 2;
/** Where a hosted API's limit starts: it tells nothing of its capacity. */
const START_UNSEEN = 64;
const GROW = 1.25;

/** The requests beyond `slots` a server of this kind is given, waiting in its queue. */
export function queueAllowance(kind: ServerKind | undefined, slots: number): number {
  // llama.cpp's HTTP pool defaults to --parallel + 2 threads: one queued request leaves one for probes
  if (kind === "llamacpp") return 1;
  return Math.max(MIN_QUEUE, Math.ceil(slots * QUEUE_SHARE));
}

export class Pacer {
  /** slots the config gives (wins over everything the server says) */
  private readonly configured: number | undefined;
  /** slots the server said on an info route or in its metrics */
  private said: number | undefined;
  private paced: number;
  private reported = false;
  private startedLow = false;
  kind: ServerKind | undefined;

  constructor(
    public cap: number,
    slots: number | undefined,
  ) {
    this.configured = slots;
    this.paced = cap;
    this.refit(0);
  }

  /** The slots the server runs, when configured or said. */
  get slots(): number | undefined {
    return this.configured ?? this.said;
  }

  /** The limit now (before AIMD cuts). */
  get limit(): number {
    return this.paced;
  }

  /** The kind is known (auto detection finished). */
  setKind(kind: ServerKind): void {
    this.kind = kind;
    this.refit(0);
  }

  /** The server said how many sequences it runs. */
  setSlots(slots: number | undefined): void {
    if (slots === undefined || slots <= 0 || slots === this.said) return;
    this.said = slots;
    this.refit(0);
  }

  /**
   * A fresh load report: `others` are requests at the server that are not
   * this client's, `own` this client's in flight.
   */
  onLoad(load: { running: number; waiting: number }, own: number, others: number): void {
    this.reported = true;
    if (this.slots !== undefined) return this.refit(others);
    if (load.waiting > 0) {
      // it queues: what it runs now is what it can run (its seqs or its KV cache)
      const fits = Math.max(1, load.running + queueAllowance(this.kind, load.running) - others);
      if (fits < this.paced) this.paced = fits;
    } else if (own >= this.paced - 1) {
      // the limit is used and nothing queues: there may be more room
      this.paced = Math.ceil(this.paced * GROW) + 1;
    }
    this.paced = Math.max(1, Math.min(this.cap, this.paced));
  }

  /** Nothing will tell the server's load (a hosted API): start at 64 and let its rate limits lead. */
  private unseen(): void {
    if (this.startedLow || this.slots !== undefined || this.reported) return;
    this.startedLow = true;
    this.paced = Math.max(1, Math.min(this.cap, START_UNSEEN));
  }

  private refit(others: number): void {
    const slots = this.slots;
    if (slots !== undefined) {
      this.paced = slots + queueAllowance(this.kind, slots) - others;
    } else if (this.kind === "openai" && !this.startedLow) {
      // a hosted API says nothing of its capacity: its rate limits lead
      this.unseen();
      return;
    }
    this.paced = Math.max(1, Math.min(this.cap, this.paced));
  }
}
