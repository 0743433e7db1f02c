/**
 * A token bucket for the LLM client's rate limits: it hands out
 * reservations, so requests leave at the configured rate without polling.
 */

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
