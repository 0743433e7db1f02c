import type { ResolvedSimOptions } from "./options.ts";
import { Heap } from "../util/heap.ts";

/**
 * The capacity model of a GPU server doing continuous batching, as vLLM does:
 * at most `slots` sequences decode at once, the rest wait in FIFO order (or,
 * with the "priority" scheduling policy, in order of their priority key, then
 * of arrival); each step gives every running sequence one token and lasts
 * `stepBaseMs + stepPerSeqMs × running` virtual ms, plus the prefill of the
 * prompts admitted in that step at `prefillTps`.
 *
 * Steps are not timed one timer each (timers jitter by a millisecond or so,
 * which would quietly lower the ceiling). The engine keeps a virtual clock
 * that moves step by step, exactly, and catches up with the wall clock
 * whenever it runs: on a timer set for the end of the current step, and on
 * each arrival. A step is only completed once the wall clock has passed its
 * end, so no answer is ever early; a request that arrives at wall time t
 * joins the first step that starts at or after t. Idle, no timer is set.
 */

/** Where a sequence is in its life. */
export const SeqState = {
  WAITING: 0,
  RUNNING: 1,
  DONE: 2,
  CANCELLED: 3,
  DROPPED: 4,
} as const;
export type SeqState = (typeof SeqState)[keyof typeof SeqState];

/** What a caller hands the engine for one request. */
export interface SeqInput {
  promptTokens: number;
  /** prompt tokens that must be computed (not found in the prefix cache) */
  prefillTokens: number;
  /** tokens to generate, at least 1 */
  len: number;
  /**
   * the queue key under the "priority" policy: lower runs first, ties in
   * arrival order (each server kind maps its request field onto it); 0 when
   * absent, ignored under "fcfs"
   */
  priority?: number;
  /** called after each catch-up with the tokens generated so far; for streaming */
  onProgress?: (seq: SimSeq) => void;
  /** called once: finished (state DONE) or the engine stopped (state DROPPED) */
  onEnd: (seq: SimSeq) => void;
}

/** One sequence, as the engine tracks it. */
export interface SimSeq {
  readonly input: SeqInput;
  readonly state: SeqState;
  /** tokens generated so far */
  generated(): number;
  /** wall time (the engine clock, ms) when it arrived */
  readonly arrivedAt: number;
}

class SeqImpl implements SimSeq {
  state: SeqState = SeqState.WAITING;
  /** virtual ms */
  arrival = 0;
  arrivedAt = 0;
  admitStep = -1;
  constructor(
    readonly input: SeqInput,
    protected readonly engine: SimEngine,
  ) {}
  generated(): number {
    if (this.state === SeqState.DONE) return this.input.len;
    if (this.admitStep < 0) return 0;
    return Math.min(this.input.len, this.engine.stepsDone - this.admitStep);
  }
}

/**
 * A sequence under the "priority" policy. Its own class, so that the FIFO
 * path (the benchmarks' hot path) allocates and reads no more than before.
 */
class RankedSeq extends SeqImpl {
  /** queue key (lower first) and arrival number (ties) */
  key = 0;
  order = 0;
  /** tokens generated before it was last preempted */
  prior = 0;
  preempted = false;
  /** the value of stepsDone at which it finishes; the finishAt entry of a run cut short by preemption no longer matches */
  finishStep = -1;
  override generated(): number {
    if (this.state === SeqState.DONE) return this.input.len;
    if (this.admitStep < 0) return this.prior;
    return Math.min(this.input.len, this.prior + this.engine.stepsDone - this.admitStep);
  }
}

/** Whether a runs before b: lower key, then earlier arrival. */
function before(a: RankedSeq, b: RankedSeq): boolean {
  return a.key < b.key || (a.key === b.key && a.order < b.order);
}

/** Engine counters, cumulative since start. */
export interface EngineCounters {
  running: number;
  waiting: number;
  promptTokens: number;
  generationTokens: number;
  /** steps completed */
  steps: number;
  /** virtual ms */
  virtualMs: number;
  /** integral of running/slots over wall time, seconds */
  runningSeconds: number;
}

/** How the engine reads time and sets timers; tests drive it by hand with `manual`. */
export interface EngineClock {
  now(): number;
  /** when true no timer is set: the owner calls tick() */
  manual?: boolean;
}

/** Wall ms between two progress reports to streams. */
const PROGRESS_EVERY_MS = 16;

const realClock: EngineClock = { now: () => performance.now() };

/** The step model of one simulated server. */
export class SimEngine {
  /** steps completed since start; a sequence admitted at step a has stepsDone - a tokens */
  stepsDone = 0;
  private readonly slots: number;
  private readonly baseMs: number;
  private readonly perSeqMs: number;
  private readonly prefillMsPerToken: number;
  private readonly timeScale: number;
  private readonly wall0: number;
  private waitingQ: SeqImpl[] = [];
  private head = 0;
  /** the waiting queue under the "priority" policy (waitingQ stays empty then) */
  /** the waiting queue of the "priority" policy; cancelled sequences stay in it until they reach the top, where the engine drops them, as the FIFO does */
  private readonly heap: Heap<RankedSeq> | undefined;
  /** preemption (SGLang's): a waiting key this far below a running one's takes its slot */
  private readonly preemptGap: number | undefined;
  /** running sequences, kept only when preemption is on */
  private readonly runningSet: Set<RankedSeq> | undefined;
  private arrivals = 0;
  private waitingCount = 0;
  private running = 0;
  /** sequences by the value of stepsDone at which they finish */
  private readonly finishAt = new Map<number, SeqImpl[]>();
  private readonly streaming = new Set<SeqImpl>();
  private readonly live = new Set<SeqImpl>();
  /** virtual start of the current step, or of the next one when idle */
  private vNow = 0;
  private active = false;
  private stepEnd = 0;
  private stepMs = 0;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private stopped = false;
  private promptTokens = 0;
  private generationTokens = 0;
  private busyVirtualMs = 0;
  private lastProgress = -Infinity;

  constructor(
    o: Pick<ResolvedSimOptions, "slots" | "stepBaseMs" | "stepPerSeqMs" | "prefillTps" | "timeScale"> & {
      schedulingPolicy?: ResolvedSimOptions["schedulingPolicy"];
      /**
       * priority policy only: a running sequence whose key is more than this
       * above the best waiting one's is preempted when every slot is busy
       * (back to the queue, keeping its tokens, its context computed again);
       * absent = no preemption
       */
      preemptGap?: number;
    },
    private readonly clock: EngineClock = realClock,
  ) {
    this.slots = o.slots;
    if (o.schedulingPolicy === "priority") {
      this.heap = new Heap(before);
      if (o.preemptGap !== undefined) {
        this.preemptGap = o.preemptGap;
        this.runningSet = new Set();
      }
    }
    this.baseMs = o.stepBaseMs;
    this.perSeqMs = o.stepPerSeqMs;
    this.prefillMsPerToken = 1000 / o.prefillTps;
    this.timeScale = o.timeScale;
    this.wall0 = clock.now();
  }

  /** Queues a sequence; it joins the first step that starts at or after now. */
  submit(input: SeqInput): SimSeq {
    const seq = this.heap ? new RankedSeq(input, this) : new SeqImpl(input, this);
    if (this.stopped) {
      seq.state = SeqState.DROPPED;
      queueMicrotask(() => input.onEnd(seq));
      return seq;
    }
    const wall = this.clock.now();
    const v = (wall - this.wall0) / this.timeScale;
    this.advance(v);
    seq.arrival = v;
    seq.arrivedAt = wall;
    if (seq instanceof RankedSeq) {
      seq.key = input.priority ?? 0;
      seq.order = this.arrivals++;
      this.heap!.push(seq);
    } else this.waitingQ.push(seq);
    this.waitingCount++;
    this.live.add(seq);
    if (input.onProgress) this.streaming.add(seq);
    if (!this.active) {
      if (this.vNow < v) this.vNow = v;
      this.beginStep();
      this.schedule();
    }
    return seq;
  }

  /** Drops a sequence (its client went away), freeing its slot. */
  cancel(s: SimSeq): void {
    const seq = s as SeqImpl;
    if (seq.state === SeqState.WAITING) this.waitingCount--;
    else if (seq.state === SeqState.RUNNING) this.running--;
    else return;
    seq.state = SeqState.CANCELLED;
    this.live.delete(seq);
    this.streaming.delete(seq);
    if (seq instanceof RankedSeq) this.runningSet?.delete(seq);
    // cancelled sequences deep in the heap may never reach its top: sweep them once they are most of it
    const h = this.heap;
    if (h && h.size - this.waitingCount > 1024 && (h.size - this.waitingCount) * 2 > h.size) {
      h.filter((s) => s.state === SeqState.WAITING);
    }
  }

  /**
   * Catches up with the wall clock: completes every step that has ended,
   * then reports progress to streams, at most every PROGRESS_EVERY_MS: one
   * chunk per token per stream would cost a write each, and clients gain
   * nothing from deltas closer together than that.
   */
  tick(): void {
    if (this.stopped) return;
    const now = this.clock.now();
    this.advance((now - this.wall0) / this.timeScale);
    if (this.streaming.size > 0 && (this.clock.manual || now - this.lastProgress >= PROGRESS_EVERY_MS)) {
      this.lastProgress = now;
      for (const s of this.streaming) s.input.onProgress?.(s);
    }
  }

  /** Stops the clock; sequences still queued or running end as DROPPED. */
  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.active = false;
    const left = [...this.live];
    this.live.clear();
    this.streaming.clear();
    this.finishAt.clear();
    this.waitingQ = [];
    this.head = 0;
    this.heap?.filter(() => false);
    this.runningSet?.clear();
    this.running = 0;
    this.waitingCount = 0;
    for (const s of left) {
      s.state = SeqState.DROPPED;
      s.input.onEnd(s);
    }
  }

  counters(): EngineCounters {
    return {
      running: this.running,
      waiting: this.waitingCount,
      promptTokens: this.promptTokens,
      generationTokens: this.generationTokens,
      steps: this.stepsDone,
      virtualMs: this.vNow,
      runningSeconds: (this.busyVirtualMs * this.timeScale) / 1000,
    };
  }

  private readonly onTimer = (): void => {
    this.timer = undefined;
    this.tick();
    this.schedule();
  };

  private schedule(): void {
    if (this.clock.manual || this.stopped || !this.active || this.timer) return;
    const delay = this.wall0 + this.stepEnd * this.timeScale - this.clock.now();
    this.timer = setTimeout(this.onTimer, delay > 1 ? Math.ceil(delay) : 1);
  }

  private advance(vTarget: number): void {
    while (this.active && this.stepEnd <= vTarget) {
      this.completeStep();
      this.beginStep();
    }
  }

  private completeStep(): void {
    this.stepsDone++;
    this.generationTokens += this.running;
    this.busyVirtualMs += (this.running / this.slots) * this.stepMs;
    this.vNow = this.stepEnd;
    const ending = this.finishAt.get(this.stepsDone);
    if (!ending) return;
    this.finishAt.delete(this.stepsDone);
    for (const s of ending) {
      if (s.state !== SeqState.RUNNING) continue;
      if (this.runningSet) {
        // with preemption, a sequence may have been cut short and admitted again since it was listed here
        const r = s as RankedSeq;
        if (r.finishStep !== this.stepsDone) continue;
        this.runningSet.delete(r);
      }
      s.state = SeqState.DONE;
      this.running--;
      this.live.delete(s);
      this.streaming.delete(s);
      s.input.onEnd(s);
    }
  }

  private beginStep(): void {
    const prefill = this.heap ? this.admitByPriority(this.heap) : this.admitFifo();
    if (this.running === 0) {
      this.active = false;
      return;
    }
    this.stepMs = this.baseMs + this.perSeqMs * this.running + prefill * this.prefillMsPerToken;
    this.stepEnd = this.vNow + this.stepMs;
    this.active = true;
  }

  /** Admits waiting sequences in arrival order into free slots; returns the prompt tokens to prefill. */
  private admitFifo(): number {
    let prefill = 0;
    const q = this.waitingQ;
    while (this.running < this.slots && this.head < q.length) {
      const s = q[this.head]!;
      if (s.state !== SeqState.WAITING) {
        this.head++;
        continue;
      }
      if (s.arrival > this.vNow) {
        if (this.running > 0) break;
        this.vNow = s.arrival;
      }
      this.head++;
      this.waitingCount--;
      this.running++;
      s.state = SeqState.RUNNING;
      s.admitStep = this.stepsDone;
      prefill += s.input.prefillTokens;
      this.promptTokens += s.input.promptTokens;
      const at = this.stepsDone + Math.max(1, s.input.len);
      const list = this.finishAt.get(at);
      if (list) list.push(s);
      else this.finishAt.set(at, [s]);
    }
    if (this.head > 1024 && this.head * 2 > q.length) {
      this.waitingQ = q.slice(this.head);
      this.head = 0;
    }
    return prefill;
  }

  /**
   * Admits waiting sequences best key first; with preemption on, a full
   * batch gives up its worst running sequence (highest key, latest arrival)
   * to a waiting one whose key is more than preemptGap lower.
   */
  private admitByPriority(h: Heap<RankedSeq>): number {
    let prefill = 0;
    for (;;) {
      const s = h.peek();
      if (!s) break;
      if (s.state !== SeqState.WAITING) {
        h.pop();
        continue;
      }
      if (this.running >= this.slots && !this.preemptFor(s)) break;
      if (s.arrival > this.vNow) {
        if (this.running > 0) break;
        this.vNow = s.arrival;
      }
      h.pop();
      prefill += this.admit(s);
    }
    return prefill;
  }

  /** Preempts the running sequence `s` outranks by more than preemptGap, if there is one; true when a slot was freed. */
  private preemptFor(s: RankedSeq): boolean {
    const set = this.runningSet;
    if (!set || this.preemptGap === undefined) return false;
    let victim: RankedSeq | undefined;
    for (const r of set) if (!victim || before(victim, r)) victim = r;
    if (!victim || victim.key - s.key <= this.preemptGap) return false;
    set.delete(victim);
    this.running--;
    this.waitingCount++;
    victim.prior = victim.generated();
    victim.preempted = true;
    victim.admitStep = -1;
    victim.finishStep = -1;
    victim.state = SeqState.WAITING;
    // it queues again as a new arrival, as SGLang stamps a retracted request's queue entry anew
    victim.order = this.arrivals++;
    this.heap!.push(victim);
    return true;
  }

  /** Moves one waiting sequence into a slot; returns its tokens to prefill. */
  private admit(s: RankedSeq): number {
    this.waitingCount--;
    this.running++;
    s.state = SeqState.RUNNING;
    s.admitStep = this.stepsDone;
    this.runningSet?.add(s);
    const at = this.stepsDone + Math.max(1, s.input.len - s.prior);
    s.finishStep = at;
    const list = this.finishAt.get(at);
    if (list) list.push(s);
    else this.finishAt.set(at, [s]);
    if (s.preempted) {
      // a preempted sequence lost its KV cache: its prompt and the tokens it had are computed again
      return s.input.promptTokens + s.prior;
    }
    this.promptTokens += s.input.promptTokens;
    return s.input.prefillTokens;
  }
}
