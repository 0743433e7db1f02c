/**
 * vLLM's dialect.
 *
 * Metrics (docs/usage/metrics.md of v0.10 and its V1 loggers): the gauges
 * `vllm:num_requests_running` and `vllm:num_requests_waiting`,
 * `vllm:kv_cache_usage_perc` (0..1; `vllm:gpu_cache_usage_perc` in V0 and
 * before v0.10), the counters `vllm:prompt_tokens_total`,
 * `vllm:generation_tokens_total`, `vllm:prefix_cache_queries_total` and
 * `vllm:prefix_cache_hits_total` (`vllm:gpu_prefix_cache_*` in early V1),
 * one series per `model_name` (and per `engine` with data parallelism).
 * matrixd's simulated server publishes the same names, and `sim:slots`.
 *
 * `/v1/models` (vllm/entrypoints/openai/protocol.py, ModelCard): `owned_by:
 * "vllm"` and `max_model_len`. vLLM publishes no `max_num_seqs`: its slots
 * are not learned from it, only seen from what it runs while it queues.
 *
 * Structured output: `response_format` `{type: "json_schema", json_schema:
 * {name, schema}}` has been honoured since v0.6 (2024, turned into
 * `guided_json` up to v0.11 and into `structured_outputs.json` since), so
 * it is the one spelling for JSON on old and new versions alike. A regex
 * has no `response_format`: up to v0.11 it was `guided_regex`, deprecated
 * in v0.10.2 for `structured_outputs: {regex}` and removed in v0.12.0.
 * vLLM ignores fields it does not know, so both are sent.
 *
 * Errors: 400 "This model's maximum context length is N tokens. However,
 * you requested ..." and, later, "'max_tokens' or 'max_completion_tokens'
 * is too large: N. This model's maximum context length is ..." and "The
 * decoder prompt (length N) is longer than the maximum model length of M";
 * in recent versions, 503 "The request queue is full." past
 * `--max-queued-requests`.
 */
import { z } from "zod";
import { readLoad, type LoadMetrics } from "../../services/prom.ts";
import { apiBase, classifyWith, serverRoot } from "./openai.ts";
import { readFormat } from "./schema.ts";
import type { Dialect, ServerInfo } from "./types.ts";

/** vLLM's metric names, newest first (see the file's comment). */
export const VLLM_METRICS: LoadMetrics = {
  running: ["vllm:num_requests_running"],
  waiting: ["vllm:num_requests_waiting"],
  cacheUsage: ["vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"],
  promptTokens: ["vllm:prompt_tokens_total"],
  generationTokens: ["vllm:generation_tokens_total"],
  prefixQueries: ["vllm:prefix_cache_queries_total", "vllm:gpu_prefix_cache_queries_total"],
  prefixHits: ["vllm:prefix_cache_hits_total", "vllm:gpu_prefix_cache_hits_total"],
  slots: ["sim:slots"],
};

const ModelsAnswer = z.looseObject({
  data: z.array(z.looseObject({ max_model_len: z.number().int().positive().nullish().catch(undefined) })),
});

/** `GET /v1/models`: the context of the first model that says it. */
function readModels(json: unknown): ServerInfo {
  const p = ModelsAnswer.safeParse(json);
  if (!p.success) return {};
  const len = p.data.data.find((m) => typeof m.max_model_len === "number")?.max_model_len;
  return typeof len === "number" ? { contextTokens: len } : {};
}

/** The dialect of vLLM's OpenAI-compatible server. */
export const vllm: Dialect = {
  kind: "vllm",
  metricsUrl: (base) => `${serverRoot(base)}/metrics`,
  parseLoad: (text) => readLoad(text, VLLM_METRICS),
  infoProbes: [{ url: (base) => `${apiBase(base)}/models`, read: readModels }],
  applyFormat(body, format) {
    const f = readFormat(format);
    if (f.type === "json_schema") {
      body.response_format = { type: "json_schema", json_schema: { name: f.name, schema: f.schema, ...(f.strict !== undefined ? { strict: f.strict } : {}) } };
    } else if (f.type === "json_object") body.response_format = { type: "json_object" };
    else if (f.type === "regex") {
      body.structured_outputs = { regex: f.pattern };
      body.guided_regex = f.pattern;
    } else if (f.type === "other") body.response_format = f.format;
  },
  // vLLM's backends (xgrammar, guidance, outlines) take JSON Schema as it is, falling back among themselves
  rewriteSchema: (schema) => schema,
  maxTokensField: "max_tokens",
  toolsNeedDescription: false,
  classifyError: classifyWith({
    context: [/maximum context length/i, /longer than the maximum model length/i],
  }),
};
