import { LATENCY_BUCKETS_MS } from "../src/bus/nats/latency.ts";
import { metric } from "../test/support/join-process.ts";

/** Merge the nodes' hop latency histograms and read a quantile, ms. */
export function latencyQuantile(texts: string[], q: number): number {
  const bounds = [...LATENCY_BUCKETS_MS.map((b) => b / 1000), Number.POSITIVE_INFINITY];
  const cum = bounds.map((le) =>
    texts.reduce((s, t) => s + metric(t, "matrixd_hop_latency_seconds_bucket", `le="${Number.isFinite(le) ? le : "+Inf"}"`), 0),
  );
  const total = cum[cum.length - 1] ?? 0;
  if (total === 0) return 0;
  const rank = q * total;
  for (let i = 0; i < cum.length; i++) {
    if ((cum[i] as number) >= rank) {
      const lo = i === 0 ? 0 : (bounds[i - 1] as number);
      const hi = Number.isFinite(bounds[i] as number) ? (bounds[i] as number) : lo * 2;
      const below = i === 0 ? 0 : (cum[i - 1] as number);
      const inBucket = (cum[i] as number) - below;
      return 1000 * (lo + ((hi - lo) * (rank - below)) / Math.max(inBucket, 1));
    }
  }
  return 0;
}
