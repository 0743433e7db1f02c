/** The samples of a Prometheus text exposition, summed over labels, by metric name. */
export function parsePrometheus(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (line.length === 0 || line.charCodeAt(0) === 35 /* # */) continue;
    const brace = line.indexOf("{");
    const space = line.lastIndexOf(" ");
    if (space <= 0) continue;
    const name = line.slice(0, brace !== -1 && brace < space ? brace : line.indexOf(" "));
    const value = Number(line.slice(space + 1));
    if (!Number.isFinite(value)) continue;
    out.set(name, (out.get(name) ?? 0) + value);
  }
  return out;
}

/** The load figures read from a vLLM-compatible /metrics. */
export interface ServerLoad {
  running: number;
  waiting: number;
  cacheUsage: number;
  promptTokens: number;
  generationTokens: number;
  /** prompt tokens looked up in, and found in, the prefix cache (vLLM's counters; 0 when absent) */
  prefixQueries: number;
  prefixHits: number;
  /**
   * sequences the server runs at once, when it says so (`sim:slots`; vLLM
   * does not publish its `max_num_seqs`)
   */
  slots?: number;
}

/** Read a server's load off its Prometheus text (vLLM's names). */
export function vllmLoad(text: string): ServerLoad {
  const m = parsePrometheus(text);
  const load: ServerLoad = {
    running: m.get("vllm:num_requests_running") ?? 0,
    waiting: m.get("vllm:num_requests_waiting") ?? 0,
    cacheUsage: m.get("vllm:gpu_cache_usage_perc") ?? m.get("vllm:kv_cache_usage_perc") ?? 0,
    promptTokens: m.get("vllm:prompt_tokens_total") ?? 0,
    generationTokens: m.get("vllm:generation_tokens_total") ?? 0,
    prefixQueries: m.get("vllm:prefix_cache_queries_total") ?? m.get("vllm:gpu_prefix_cache_queries_total") ?? 0,
    prefixHits: m.get("vllm:prefix_cache_hits_total") ?? m.get("vllm:gpu_prefix_cache_hits_total") ?? 0,
  };
  const slots = m.get("sim:slots");
  if (slots !== undefined && slots > 0) load.slots = slots;
  return load;
}
