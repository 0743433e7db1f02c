/**
 * Reading the Prometheus text exposition LLM servers publish at /metrics,
 * and a server's load from the names its kind uses there.
 */
import { VLLM_METRICS } from "../llm/dialect/vllm.ts";
import type { ServerLoad } from "../llm/dialect/types.ts";

export type { ServerLoad } from "../llm/dialect/types.ts";

/** One sample line: `name{label="value",...} value [timestamp]`. */
export interface PromSample {
  name: string;
  labels: Readonly<Record<string, string>>;
  value: number;
}

/**
 * The samples of a Prometheus text exposition, in order. Comments, blank
 * lines, malformed lines and values that are not finite (`NaN`, `+Inf`)
 * are left out; a trailing timestamp is not taken for the value.
 */
export function parsePrometheusSamples(text: string): PromSample[] {
  const out: PromSample[] = [];
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    let i = 0;
    while (i < line.length && line[i] !== "{" && line[i] !== " " && line[i] !== "\t") i++;
    const name = line.slice(0, i);
    if (name === "") continue;
    const labels: Record<string, string> = {};
    if (line[i] === "{") {
      const end = readLabels(line, i + 1, labels);
      if (end < 0) continue;
      i = end;
    }
    const value = Number(line.slice(i).trim().split(/\s+/)[0]);
    if (!Number.isFinite(value)) continue;
    out.push({ name, labels, value });
  }
  return out;
}

/** Labels from just after `{`; the index after `}`, or -1 for a malformed set. */
function readLabels(line: string, from: number, into: Record<string, string>): number {
  let i = from;
  for (;;) {
    while (line[i] === " " || line[i] === ",") i++;
    if (i >= line.length) return -1;
    if (line[i] === "}") return i + 1;
    const eq = line.indexOf("=", i);
    if (eq < 0 || line[eq + 1] !== '"') return -1;
    const key = line.slice(i, eq).trim();
    let value = "";
    let j = eq + 2;
    for (; j < line.length && line[j] !== '"'; j++) {
      if (line[j] === "\\" && j + 1 < line.length) {
        j++;
        value += line[j] === "n" ? "\n" : line[j];
      } else value += line[j];
    }
    if (j >= line.length) return -1;
    into[key] = value;
    i = j + 1;
  }
}

/** The samples of a Prometheus text exposition, summed over labels, by metric name. */
export function parsePrometheus(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const s of parsePrometheusSamples(text)) out.set(s.name, (out.get(s.name) ?? 0) + s.value);
  return out;
}

/**
 * The metric names a server kind publishes its load under. Each list holds
 * alternatives, the current name first (servers rename their metrics).
 */
export interface LoadMetrics {
  /** gauge of requests being generated */
  running: readonly string[];
  /** gauge of requests queued */
  waiting: readonly string[];
  /** gauge of the KV-cache share in use, 0..1 (averaged over series: it is a ratio) */
  cacheUsage?: readonly string[];
  /** cumulative counters (summed over series) */
  promptTokens?: readonly string[];
  generationTokens?: readonly string[];
  prefixQueries?: readonly string[];
  prefixHits?: readonly string[];
  /** gauge of the sequences the server runs at once */
  slots?: readonly string[];
  /** series to leave out: copies of the same figure another process of the server publishes too */
  skip?: (s: PromSample) => boolean;
}

/**
 * A server's load off its Prometheus text, by the names of `metrics`:
 * counts summed over labels (one series per model, engine or DP rank),
 * ratios averaged. `missing` names the running and waiting gauges the text
 * lacked, so that a server of another kind (or one with its metrics
 * renamed) is not taken for an idle one.
 */
export function readLoad(text: string, metrics: LoadMetrics): ServerLoad {
  const sums = new Map<string, { sum: number; n: number }>();
  for (const s of parsePrometheusSamples(text)) {
    if (metrics.skip?.(s)) continue;
    const acc = sums.get(s.name);
    if (acc) {
      acc.sum += s.value;
      acc.n++;
    } else sums.set(s.name, { sum: s.value, n: 1 });
  }
  const first = (names: readonly string[] | undefined) => {
    for (const name of names ?? []) {
      const acc = sums.get(name);
      if (acc) return acc;
    }
    return undefined;
  };
  const missing: string[] = [];
  const running = first(metrics.running);
  const waiting = first(metrics.waiting);
  if (!running && metrics.running[0] !== undefined) missing.push(metrics.running[0]);
  if (!waiting && metrics.waiting[0] !== undefined) missing.push(metrics.waiting[0]);
  const load: ServerLoad = {
    running: running?.sum ?? 0,
    waiting: waiting?.sum ?? 0,
    promptTokens: first(metrics.promptTokens)?.sum ?? 0,
    generationTokens: first(metrics.generationTokens)?.sum ?? 0,
    prefixQueries: first(metrics.prefixQueries)?.sum ?? 0,
    prefixHits: first(metrics.prefixHits)?.sum ?? 0,
    missing,
  };
  const cache = first(metrics.cacheUsage);
  if (cache) load.cacheUsage = cache.sum / cache.n;
  const slots = first(metrics.slots)?.sum;
  if (slots !== undefined && slots > 0) load.slots = slots;
  return load;
}

/** Read a server's load off its Prometheus text with vLLM's names (see the vLLM dialect). */
export function vllmLoad(text: string): ServerLoad {
  return readLoad(text, VLLM_METRICS);
}
