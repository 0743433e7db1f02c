import type { Metric } from "../plugin/api.ts";

/** Running means of a workflow's metrics over the rows seen. */
export class MetricMeans {
  #sum: number[];
  #n: number[];
  constructor(readonly metrics: readonly Metric[]) {
    this.#sum = metrics.map(() => 0);
    this.#n = metrics.map(() => 0);
  }

  add(metrics: Readonly<Record<string, unknown>> | undefined, status: "ok" | "failed"): void {
    for (let i = 0; i < this.metrics.length; i++) {
      const v = (this.metrics[i] as Metric).of(metrics ?? {}, status);
      if (v === undefined || !Number.isFinite(v)) continue;
      this.#sum[i] = (this.#sum[i] as number) + v;
      this.#n[i] = (this.#n[i] as number) + 1;
    }
  }

  values(): Record<string, number | null> {
    const out: Record<string, number | null> = {};
    this.metrics.forEach((m, i) => {
      const n = this.#n[i] as number;
      out[m.name] = n ? (this.#sum[i] as number) / n : null;
    });
    return out;
  }
}

/** Reads a boolean or number field of a row's metrics as a number (true = 1). */
export function numeric(metrics: Readonly<Record<string, unknown>>, key: string): number | undefined {
  const v = metrics[key];
  if (typeof v === "boolean") return v ? 1 : 0;
  if (typeof v === "number") return v;
  return undefined;
}
