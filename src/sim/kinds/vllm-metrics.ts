import { LATENCY_BUCKETS, PromText, esc } from "../metrics.ts";
import type { SimLive } from "./types.ts";

/**
 * vLLM's /metrics series (names, HELP texts and the `model_name` label of
 * vLLM v0.11's V1 engine), so that whatever reads a real vLLM server's load
 * reads this one the same way.
 */
export function vllmSeries(p: PromText, live: SimLive): void {
  const label = `model_name="${esc(live.o.model)}"`;
  const e = live.engine();
  const s = live.server;
  const usage = e.running / live.o.slots;
  p.one("vllm:num_requests_running", "gauge", "Number of requests in model execution batches.", e.running, label);
  p.one("vllm:num_requests_waiting", "gauge", "Number of requests waiting to be processed.", e.waiting, label);
  p.one("vllm:gpu_cache_usage_perc", "gauge", "GPU KV-cache usage. 1 means 100 percent usage.", usage, label);
  p.one("vllm:kv_cache_usage_perc", "gauge", "KV-cache usage. 1 means 100 percent usage.", usage, label);
  p.one("vllm:prompt_tokens_total", "counter", "Number of prefill tokens processed.", e.promptTokens, label);
  p.one("vllm:generation_tokens_total", "counter", "Number of generation tokens processed.", e.generationTokens, label);
  p.one("vllm:prefix_cache_queries_total", "counter", "Prefix cache queries, in terms of number of queried tokens.", live.prefix.queries, label);
  p.one("vllm:prefix_cache_hits_total", "counter", "Prefix cache hits, in terms of number of cached tokens.", live.prefix.hits, label);
  p.head("vllm:request_success_total", "counter", "Count of successfully processed requests.");
  for (const [reason, n] of Object.entries(s.success)) p.line(`vllm:request_success_total{finished_reason="${esc(reason)}",${label}} ${n}`);
  const h = "vllm:e2e_request_latency_seconds";
  p.head(h, "histogram", "Histogram of end to end request latency in seconds.");
  let cum = 0;
  for (let i = 0; i < LATENCY_BUCKETS.length; i++) {
    cum += s.latencyBuckets[i]!;
    p.line(`${h}_bucket{le="${LATENCY_BUCKETS[i]}",${label}} ${cum}`);
  }
  p.line(`${h}_bucket{le="+Inf",${label}} ${s.latencyCount}`);
  p.line(`${h}_sum{${label}} ${s.latencySum}`).line(`${h}_count{${label}} ${s.latencyCount}`);
}
