import type { EngineCounters } from "./engine.ts";

/**
 * Prometheus text with vLLM's metric names (and a `model_name` label), so
 * that whatever reads a real vLLM server's load reads this one the same way,
 * plus two `sim:` series from which utilization can be read off the server.
 */

/** Latency buckets, seconds: vLLM's, with finer ones below since the sim runs time-scaled. */
const LATENCY_BUCKETS = [
  0.01, 0.025, 0.05, 0.1, 0.3, 0.5, 0.8, 1, 1.5, 2, 2.5, 5, 10, 15, 20, 30, 40, 50, 60, 120, 240, 480, 960, 1920, 7680,
];

/** Counters the HTTP side keeps (the engine keeps its own). */
export class ServerCounters {
  requests = 0;
  success: Record<string, number> = { stop: 0, length: 0, abort: 0 };
  injected: Record<string, number> = { "429": 0, "500": 0 };
  rejected = 0;
  readonly latencyBuckets = new Float64Array(LATENCY_BUCKETS.length);
  latencySum = 0;
  latencyCount = 0;

  observeLatency(seconds: number): void {
    this.latencySum += seconds;
    this.latencyCount++;
    for (let i = 0; i < LATENCY_BUCKETS.length; i++) {
      if (seconds <= LATENCY_BUCKETS[i]!) {
        this.latencyBuckets[i]!++;
        break;
      }
    }
  }
}

/** Everything /metrics shows. */
export interface MetricsInput {
  model: string;
  slots: number;
  ceilingTps: number;
  engine: EngineCounters;
  server: ServerCounters;
  prefixQueries: number;
  prefixHits: number;
}

function esc(v: string): string {
  return v.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"');
}

function num(v: number): string {
  return Number.isFinite(v) ? String(v) : v > 0 ? "+Inf" : v < 0 ? "-Inf" : "NaN";
}

/** Renders the Prometheus text exposition. */
export function renderMetrics(m: MetricsInput): string {
  const label = `model_name="${esc(m.model)}"`;
  const out: string[] = [];
  const one = (name: string, type: string, help: string, value: number): void => {
    out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`, `${name}{${label}} ${num(value)}`);
  };
  const e = m.engine;
  one("vllm:num_requests_running", "gauge", "Number of requests in model execution batches.", e.running);
  one("vllm:num_requests_waiting", "gauge", "Number of requests waiting to be processed.", e.waiting);
  one("vllm:gpu_cache_usage_perc", "gauge", "GPU KV-cache usage. 1 means 100 percent usage.", e.running / m.slots);
  one("vllm:kv_cache_usage_perc", "gauge", "KV-cache usage. 1 means 100 percent usage.", e.running / m.slots);
  one("vllm:prompt_tokens_total", "counter", "Number of prefill tokens processed.", e.promptTokens);
  one("vllm:generation_tokens_total", "counter", "Number of generation tokens processed.", e.generationTokens);
  one("vllm:prefix_cache_queries_total", "counter", "Prefix cache queries, in terms of number of queried tokens.", m.prefixQueries);
  one("vllm:prefix_cache_hits_total", "counter", "Prefix cache hits, in terms of number of cached tokens.", m.prefixHits);
  out.push(
    "# HELP vllm:request_success_total Count of successfully processed requests.",
    "# TYPE vllm:request_success_total counter",
  );
  for (const [reason, n] of Object.entries(m.server.success)) {
    out.push(`vllm:request_success_total{finished_reason="${esc(reason)}",${label}} ${n}`);
  }
  const h = "vllm:e2e_request_latency_seconds";
  out.push(`# HELP ${h} Histogram of end to end request latency in seconds.`, `# TYPE ${h} histogram`);
  let cum = 0;
  for (let i = 0; i < LATENCY_BUCKETS.length; i++) {
    cum += m.server.latencyBuckets[i]!;
    out.push(`${h}_bucket{le="${LATENCY_BUCKETS[i]}",${label}} ${cum}`);
  }
  out.push(`${h}_bucket{le="+Inf",${label}} ${m.server.latencyCount}`);
  out.push(`${h}_sum{${label}} ${m.server.latencySum}`, `${h}_count{${label}} ${m.server.latencyCount}`);
  one("sim:ceiling_tokens_per_second", "gauge", "Most generated tokens per second of wall time (every slot busy).", m.ceilingTps);
  one("sim:slots", "gauge", "Sequences decoded at once at most.", m.slots);
  one("sim:running_seconds_total", "counter", "Integral over wall time of running/slots, seconds.", e.runningSeconds);
  one("sim:requests_total", "counter", "Chat completion requests received.", m.server.requests);
  one("sim:rejected_requests_total", "counter", "Chat completion requests refused as invalid (400, 404, 413).", m.server.rejected);
  out.push("# HELP sim:injected_errors_total Errors answered on purpose.", "# TYPE sim:injected_errors_total counter");
  for (const [code, n] of Object.entries(m.server.injected)) out.push(`sim:injected_errors_total{code="${code}",${label}} ${n}`);
  out.push("");
  return out.join("\n");
}
