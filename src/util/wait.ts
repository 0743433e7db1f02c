import { KeyedHeap } from "./heap.ts";

/**
 * Waiting, one way for the whole program: an interruptible sleep and a
 * counting semaphore whose limit can move, granting in arrival order or by
 * priority. A wait can be given a
 * `Cancellable`; its `cancel` hook then wakes the wait early, rejecting it,
 * so an abort or `close()` reaches a request wherever it waits.
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

/**
 * A counting semaphore. Waiters given a priority are granted first, the
 * lowest priority first and equal ones in arrival order; the others after
 * them, in arrival order.
 */
export class Semaphore {
  inFlight = 0;
  /** live waiters (cancelled ones may still sit in the queue until skipped) */
  waiting = 0;
  private queue: Waiter[] = [];
  private head = 0;
  /** waiters with a priority; made on the first one */
  private ranked: KeyedHeap<Waiter> | undefined;
  private idlers: (() => void)[] = [];

  constructor(public limit: number) {}

  /**
   * Take a slot. Returns `undefined` when one was free (no promise on the
   * fast path), else a promise resolved when the slot is granted. With `c`,
   * `c.cancel` is set so the wait can be abandoned. With `priority`, the
   * wait goes ahead of waiters with a higher one or none.
   */
  acquire(c?: Cancellable, priority?: number): Promise<void> | undefined {
    if (this.waiting === 0 && this.inFlight < this.limit) {
      this.inFlight++;
      return undefined;
    }
    return new Promise<void>((resolve, reject) => {
      const w: Waiter = { resolve, reject, live: true };
      if (priority === undefined) this.queue.push(w);
      else (this.ranked ??= new KeyedHeap()).push(priority, w);
      this.waiting++;
      if (c) {
        c.cancel = (why) => {
          if (!w.live) return;
          w.live = false;
          this.waiting--;
          reject(why);
          this.wakeIdlers();
        };
      }
    });
  }

  release(): void {
    this.inFlight--;
    this.pump();
    this.wakeIdlers();
  }

  /** Resolves once no slot is taken and no one waits. */
  idle(): Promise<void> {
    if (this.inFlight === 0 && this.waiting === 0) return Promise.resolve();
    return new Promise((resolve) => this.idlers.push(resolve));
  }

  /** A lower limit lets in-flight requests finish; a higher one admits waiters now. */
  setLimit(limit: number): void {
    this.limit = limit;
    this.pump();
  }

  /** Reject every waiter with `why` (their endpoint went down, or the client closed). */
  rejectAll(why: unknown): void {
    const queue = this.queue;
    const waiters = this.ranked ? [...this.ranked.drain(), ...queue.slice(this.head)] : queue.slice(this.head);
    for (const w of waiters) {
      if (w.live) {
        w.live = false;
        w.reject(why);
      }
    }
    this.queue = [];
    this.head = 0;
    this.waiting = 0;
    this.wakeIdlers();
  }

  private wakeIdlers(): void {
    if (this.inFlight === 0 && this.waiting === 0 && this.idlers.length > 0) for (const f of this.idlers.splice(0)) f();
  }

  private pump(): void {
    const ranked = this.ranked;
    while (ranked !== undefined && this.inFlight < this.limit && ranked.size > 0) {
      const w = ranked.pop() as Waiter;
      if (!w.live) continue;
      w.live = false;
      this.waiting--;
      this.inFlight++;
      w.resolve();
    }
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
 * Wait `ms`. With `c`, `c.cancel(why)` ends the wait early and the promise
 * rejects with `why`.
 */
export function sleep(ms: number, c?: Cancellable): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      if (c) c.cancel = null;
      resolve();
    }, ms);
    if (c) {
      c.cancel = (why) => {
        clearTimeout(timer);
        reject(why);
      };
    }
  });
}
