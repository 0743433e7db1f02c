import type { Metric } from "../plugin/api.ts";
import type { JobTally } from "../protocol/job.ts";
import { addFailedTask, mergeFailures } from "./failures.ts";
import { addToTimeline, sumTimelines } from "./timeline.ts";

/** A row as a tally counts it. */
export interface TalliedRow {
  status: "ok" | "failed";
  /** the task's id and, for a failed row, its error: counted by reason */
  id?: string;
  error?: string;
  usage?: { prompt: number; completion: number };
  metrics?: Readonly<Record<string, unknown>>;
  /** when the row was stored (epoch ms): it goes into the tally's timeline */
  timings?: { finished: number };
}

/** An empty tally. */
export function emptyTally(): JobTally {
  return { ok: 0, failed: 0, promptTokens: 0, completionTokens: 0, sums: {} };
}

/** Add one row to a tally: its status, its tokens, and each of the workflow's metrics it has. */
export function addRow(t: JobTally, row: TalliedRow, defs: readonly Metric[]): void {
  if (row.status === "ok") t.ok++;
  else {
    t.failed++;
    addFailedTask((t.failures ??= {}), row.id ?? "?", row.error);
  }
  t.promptTokens += row.usage?.prompt ?? 0;
  t.completionTokens += row.usage?.completion ?? 0;
  if (row.timings) {
    t.timeline = addToTimeline(t.timeline, row.timings.finished, row.status === "ok", (row.usage?.prompt ?? 0) + (row.usage?.completion ?? 0));
  }
  for (const m of defs) {
    const v = m.of(row.metrics ?? {}, row.status);
    if (v === undefined || !Number.isFinite(v)) continue;
    const s = t.sums[m.name] ?? [0, 0];
    s[0] += v;
    s[1] += 1;
    t.sums[m.name] = s;
  }
}

/** Add a tally (another node's, say) into `t`. */
export function addTally(t: JobTally, other: JobTally): void {
  t.ok += other.ok;
  t.failed += other.failed;
  t.promptTokens += other.promptTokens;
  t.completionTokens += other.completionTokens;
  if (other.failures) mergeFailures((t.failures ??= {}), other.failures);
  const timeline = sumTimelines(t.timeline, other.timeline);
  if (timeline) t.timeline = timeline;
  for (const [name, [sum, n]] of Object.entries(other.sums)) {
    const s = t.sums[name] ?? [0, 0];
    s[0] += sum;
    s[1] += n;
    t.sums[name] = s;
  }
}

/** The means of the workflow's metrics (null for a metric no row had yet). */
export function metricMeans(t: JobTally, defs: readonly Metric[]): Record<string, number | null> {
  const out: Record<string, number | null> = {};
  for (const m of defs) {
    const s = t.sums[m.name];
    out[m.name] = s && s[1] > 0 ? s[0] / s[1] : null;
  }
  return out;
}

/** Reads a boolean or number field of a row's metrics as a number (true = 1). */
export function numeric(metrics: Readonly<Record<string, unknown>>, key: string): number | undefined {
  const v = metrics[key];
  if (typeof v === "boolean") return v ? 1 : 0;
  if (typeof v === "number") return v;
  return undefined;
}
