/**
 * Keeps a bounded number of tasks in flight: `acquire` waits while the bound
 * is reached, `release` frees a place. This bound is what keeps memory flat
 * whatever the size of the seed file.
 */
export class InFlightLimit {
  #inFlight = 0;
  #waiters: (() => void)[] = [];
  #idle: (() => void)[] = [];

  constructor(readonly limit: number) {
    if (!(limit >= 1)) throw new RangeError("in-flight limit must be at least 1");
  }

  get inFlight(): number {
    return this.#inFlight;
  }

  acquire(): Promise<void> | undefined {
    if (this.#inFlight < this.limit) {
      this.#inFlight++;
      return undefined;
    }
    return new Promise<void>((resolve) => this.#waiters.push(resolve)).then(() => {
      this.#inFlight++;
    });
  }

  release(): void {
    this.#inFlight--;
    const next = this.#waiters.shift();
    if (next) next();
    else if (this.#inFlight === 0) for (const f of this.#idle.splice(0)) f();
  }

  /** Resolves once nothing is in flight. */
  drained(): Promise<void> {
    if (this.#inFlight === 0 && this.#waiters.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idle.push(resolve));
  }
}
