/** Upper bounds of the latency buckets, ms (Prometheus-style, cumulative when exported). */
export const LATENCY_BUCKETS_MS = [0.25, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000] as const;

/** A fixed-bucket latency histogram: constant memory, cheap to observe, quantiles by interpolation. */
export class LatencyHistogram {
  /** counts per bucket, the last one for values above every bound */
  readonly counts: number[] = new Array(LATENCY_BUCKETS_MS.length + 1).fill(0);
  count = 0;
  sumMs = 0;

  observe(ms: number): void {
    let i = 0;
    while (i < LATENCY_BUCKETS_MS.length && ms > (LATENCY_BUCKETS_MS[i] as number)) i++;
    this.counts[i] = (this.counts[i] as number) + 1;
    this.count++;
    this.sumMs += ms;
  }

  /** The q-quantile (0..1), ms, interpolated within its bucket; 0 with no observations. */
  quantile(q: number): number {
    if (this.count === 0) return 0;
    const rank = q * this.count;
    let seen = 0;
    for (let i = 0; i < this.counts.length; i++) {
      const c = this.counts[i] as number;
      if (seen + c >= rank && c > 0) {
        const lo = i === 0 ? 0 : (LATENCY_BUCKETS_MS[i - 1] as number);
        const hi = i < LATENCY_BUCKETS_MS.length ? (LATENCY_BUCKETS_MS[i] as number) : lo * 2;
        return lo + ((hi - lo) * (rank - seen)) / c;
      }
      seen += c;
    }
    return LATENCY_BUCKETS_MS[LATENCY_BUCKETS_MS.length - 1] as number;
  }
}
