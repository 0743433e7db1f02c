/**
 * Fixed-bucket histograms: constant memory, one bucket increment per
 * observation, quantiles by interpolation within a bucket. The buckets
 * are exported to Prometheus as they are (cumulative there).
 */

/** Upper bounds (ms) of the step and LLM-call duration buckets: half a millisecond to five minutes. */
export const DURATION_BUCKETS_MS: readonly number[] = [
  0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10_000, 30_000, 60_000, 120_000, 300_000,
];

/** The q-quantile (0..1) of bucket counts over `bounds` (the last count is above every bound); 0 with none. */
export function quantileOf(bounds: readonly number[], counts: ArrayLike<number>, total: number, q: number): number {
  if (total === 0) return 0;
  const rank = q * total;
  let seen = 0;
  for (let i = 0; i < counts.length; i++) {
    const c = counts[i] as number;
    if (seen + c >= rank && c > 0) {
      const lo = i === 0 ? 0 : (bounds[i - 1] as number);
      const hi = i < bounds.length ? (bounds[i] as number) : lo * 2;
      return lo + ((hi - lo) * (rank - seen)) / c;
    }
    seen += c;
  }
  return bounds[bounds.length - 1] as number;
}

/** A histogram of values (ms, in matrixd) over fixed bucket bounds. */
export class Histogram {
  /** counts per bucket, the last one for values above every bound */
  readonly counts: Float64Array;
  count = 0;
  sum = 0;

  constructor(readonly bounds: readonly number[]) {
    this.counts = new Float64Array(bounds.length + 1);
  }

  /** Count a value; returns its bucket's index. */
  observe(v: number): number {
    const b = this.bounds;
    let i = 0;
    while (i < b.length && v > (b[i] as number)) i++;
    this.counts[i] = (this.counts[i] as number) + 1;
    this.count++;
    this.sum += v;
    return i;
  }

  /** The q-quantile (0..1) of every value seen, interpolated within its bucket; 0 with none. */
  quantile(q: number): number {
    return quantileOf(this.bounds, this.counts, this.count, q);
  }
}

/**
 * A histogram that also knows its recent values: the quantiles of the last
 * one to two windows (a window's counts are dropped once the next one has
 * passed), while the cumulative buckets go on for Prometheus.
 */
export class RecentHistogram extends Histogram {
  #current: Float64Array;
  #previous: Float64Array;
  #currentCount = 0;
  #previousCount = 0;
  #since = 0;

  constructor(
    bounds: readonly number[],
    readonly windowMs = 60_000,
  ) {
    super(bounds);
    this.#current = new Float64Array(bounds.length + 1);
    this.#previous = new Float64Array(bounds.length + 1);
  }

  /** Count a value seen at `now` (ms, any steady clock). */
  observeAt(v: number, now: number): void {
    const i = this.observe(v);
    this.#roll(now);
    this.#current[i] = (this.#current[i] as number) + 1;
    this.#currentCount++;
  }

  /** The q-quantile of the values of the last one to two windows; undefined with none. */
  recentQuantile(q: number, now: number): number | undefined {
    this.#roll(now);
    const n = this.#currentCount + this.#previousCount;
    if (n === 0) return undefined;
    const both = new Float64Array(this.#current.length);
    for (let i = 0; i < both.length; i++) both[i] = (this.#current[i] as number) + (this.#previous[i] as number);
    return quantileOf(this.bounds, both, n, q);
  }

  #roll(now: number): void {
    if (now - this.#since < this.windowMs) return;
    // The arrays swap, so a step never allocates.
    const old = this.#previous;
    old.fill(0);
    if (now - this.#since < 2 * this.windowMs) {
      this.#previous = this.#current;
      this.#previousCount = this.#currentCount;
    } else {
      this.#current.fill(0);
      this.#previous = this.#current;
      this.#previousCount = 0;
    }
    this.#current = old;
    this.#currentCount = 0;
    this.#since = now;
  }
}
