/**
 * The waiting primitives of the LLM client: a FIFO semaphore whose limit can
 * move (adaptive concurrency), a token bucket that hands out reservations
 * (rate limits), and an interruptible sleep. Everything a request waits on
 * registers a `cancel` hook on the request, so an abort or `close()` wakes it
 * wherever it is.
 */

/** Something waiting that can be woken early; `cancel` rejects the wait with `why`. */
export interface Cancellable {
  cancel: ((why: unknown) => void) | null;
}

interface Waiter {
  resolve: () => void;
  reject: (why: unknown) => void;
  live: boolean;
}

/** A counting semaphore granting slots in arrival order. */
export class Semaphore {
  inFlight = 0;
  /** live waiters (cancelled ones may still sit in the queue until skipped) */
  waiting = 0;
  private queue: Waiter[] = [];
  private head = 0;

  constructor(public limit: number) {}

  /**
   * Take a slot. Returns `undefined` when one was free (no promise on the
   * fast path), else a promise resolved when the slot is granted. `c.cancel`
   * is set so the wait can be abandoned.
   */
  acquire(c: Cancellable): Promise<void> | undefined {
    if (this.waiting === 0 && this.inFlight < this.limit) {
      this.inFlight++;
      return undefined;
    }
    return new Promise<void>((resolve, reject) => {
      const w: Waiter = { resolve, reject, live: true };
      this.queue.push(w);
      this.waiting++;
      c.cancel = (why) => {
        if (!w.live) return;
        w.live = false;
        this.waiting--;
        reject(why);
      };
    });
  }

  release(): void {
    this.inFlight--;
    this.pump();
  }

  /** A lower limit lets in-flight requests finish; a higher one admits waiters now. */
  setLimit(limit: number): void {
    this.limit = limit;
    this.pump();
  }

  /** Reject every waiter with `why` (their endpoint went down, or the client closed). */
  rejectAll(why: unknown): void {
    const queue = this.queue;
    for (let i = this.head; i < queue.length; i++) {
      const w = queue[i];
      if (w?.live) {
        w.live = false;
        w.reject(why);
      }
    }
    this.queue = [];
    this.head = 0;
    this.waiting = 0;
  }

  private pump(): void {
    const queue = this.queue;
    while (this.inFlight < this.limit && this.head < queue.length) {
      const w = queue[this.head++];
      if (!w?.live) continue;
      w.live = false;
      this.waiting--;
      this.inFlight++;
      w.resolve();
    }
    if (this.head === queue.length) {
      queue.length = 0;
      this.head = 0;
    } else if (this.head > 1024 && this.head * 2 > queue.length) {
      this.queue = queue.slice(this.head);
      this.head = 0;
    }
  }
}

/**
 * A token bucket that never refuses: `take` goes into debt and says how long
 * to wait before the tokens would have been there. Requests therefore leave
 * at the configured rate in the order they asked, without polling.
 */
export class TokenBucket {
  private tokens: number;
  private last: number;
  /** tokens per ms */
  private readonly rate: number;

  /**
   * @param perMinute sustained rate
   * @param burst most tokens saved up while idle (default: one second's worth)
   */
  constructor(
    perMinute: number,
    readonly burst = Math.max(1, perMinute / 60),
    now = performance.now(),
  ) {
    this.rate = perMinute / 60_000;
    this.tokens = this.burst;
    this.last = now;
  }

  /** Take `n` tokens; returns the ms to wait before using them (0 when they were there). */
  take(n: number, now: number): number {
    this.refill(now);
    this.tokens -= n;
    return this.tokens >= 0 ? 0 : -this.tokens / this.rate;
  }

  /** Give back `n` tokens (negative to charge more, e.g. when usage beat the estimate). */
  give(n: number): void {
    this.tokens = Math.min(this.burst, this.tokens + n);
  }

  private refill(now: number): void {
    const dt = now - this.last;
    if (dt > 0) {
      this.tokens = Math.min(this.burst, this.tokens + dt * this.rate);
      this.last = now;
    }
  }
}

/** Wait `ms`, unless `c.cancel` is called first (the promise then rejects with its reason). */
export function sleep(ms: number, c: Cancellable): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      c.cancel = null;
      resolve();
    }, ms);
    c.cancel = (why) => {
      clearTimeout(timer);
      reject(why);
    };
  });
}
