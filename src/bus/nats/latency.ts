import { Histogram } from "../../metrics/histogram.ts";

/** Upper bounds of the latency buckets, ms (Prometheus-style, cumulative when exported). */
export const LATENCY_BUCKETS_MS = [0.25, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000] as const;

/** The hop latency histogram (ms): constant memory, cheap to observe, quantiles by interpolation. */
export class LatencyHistogram extends Histogram {
  constructor() {
    super(LATENCY_BUCKETS_MS);
  }

  /** the sum of the latencies seen, ms */
  get sumMs(): number {
    return this.sum;
  }
}
