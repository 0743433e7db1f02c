/**
 * SGLang's dialect.
 *
 * Metrics (docs/references/production_metrics.md, v0.4; `--enable-metrics`):
 * the gauges `sglang:num_running_reqs`, `sglang:num_queue_reqs`,
 * `sglang:token_usage` (KV pool share in use, 0..1), the counters
 * `sglang:prompt_tokens_total` and `sglang:generation_tokens_total`, and
 * since v0.5 `sglang:cached_tokens_total` (prompt tokens found in the radix
 * cache, per `cache_source`), all counted per finished request. Recent
 * versions label the scheduler's gauges with `tp_rank`, and every rank of a
 * tensor-parallel group publishes the same figures: only rank 0 is read.
 *
 * `/get_server_info` (srt/entrypoints/http_server.py): the server arguments
 * (`max_running_requests`, `context_length`, both null unless set), the
 * scheduler's `max_total_num_tokens` and `max_req_input_len`
 * (= min(context length, KV pool) - 1), `internal_states` with
 * `effective_max_running_requests_per_dp` per data-parallel rank (v0.5),
 * and `version`. `/v1/models` says `owned_by: "sglang"`.
 *
 * Structured output (srt/entrypoints/openai/protocol.py): `response_format`
 * `json_schema` (its `name` required) or `json_object`; a regex as the
 * top-level extra field `regex`.
 *
 * Errors: 400 "The input (N tokens) is longer than the model's context
 * length (M tokens)." and "Requested token count exceeds the model's
 * maximum context length of M tokens...".
 */
import { z } from "zod";
import { readLoad, type LoadMetrics } from "../../services/prom.ts";
import { classifyWith, serverRoot } from "./openai.ts";
import { readFormat } from "./schema.ts";
import type { Dialect, ServerInfo } from "./types.ts";

/** SGLang's metric names (see the file's comment). */
export const SGLANG_METRICS: LoadMetrics = {
  running: ["sglang:num_running_reqs"],
  waiting: ["sglang:num_queue_reqs"],
  cacheUsage: ["sglang:token_usage"],
  promptTokens: ["sglang:prompt_tokens_total"],
  generationTokens: ["sglang:generation_tokens_total"],
  // the prompt tokens of finished requests, and those of them the radix cache had
  prefixQueries: ["sglang:prompt_tokens_total"],
  prefixHits: ["sglang:cached_tokens_total"],
  skip: (s) => s.labels.tp_rank !== undefined && s.labels.tp_rank !== "0",
};

const count = z.number().int().positive();
const ServerInfoAnswer = z.looseObject({
  max_running_requests: count.nullish().catch(undefined),
  context_length: count.nullish().catch(undefined),
  max_req_input_len: count.optional().catch(undefined),
  internal_states: z
    .array(z.looseObject({ effective_max_running_requests_per_dp: count.optional().catch(undefined) }).catch({}))
    .optional()
    .catch(undefined),
  version: z.string().optional().catch(undefined),
});

/** `GET /get_server_info`: slots over all data-parallel ranks, the context a request may fill, the version. */
function readServerInfo(json: unknown): ServerInfo {
  const p = ServerInfoAnswer.safeParse(json);
  if (!p.success) return {};
  const d = p.data;
  const info: ServerInfo = {};
  const perRank = (d.internal_states ?? []).map((s) => s.effective_max_running_requests_per_dp).filter((n): n is number => typeof n === "number");
  if (perRank.length > 0) info.slots = perRank.reduce((a, n) => a + n, 0);
  else if (typeof d.max_running_requests === "number") info.slots = d.max_running_requests;
  if (typeof d.max_req_input_len === "number") info.contextTokens = d.max_req_input_len + 1;
  else if (typeof d.context_length === "number") info.contextTokens = d.context_length;
  if (d.version) info.version = d.version;
  return info;
}

/** The dialect of SGLang's OpenAI-compatible server. */
export const sglang: Dialect = {
  kind: "sglang",
  metricsUrl: (base) => `${serverRoot(base)}/metrics`,
  parseLoad: (text) => readLoad(text, SGLANG_METRICS),
  infoProbes: [{ url: (base) => `${serverRoot(base)}/get_server_info`, read: readServerInfo }],
  applyFormat(body, format) {
    const f = readFormat(format);
    if (f.type === "json_schema") body.response_format = { type: "json_schema", json_schema: { name: f.name, schema: f.schema } };
    else if (f.type === "json_object") body.response_format = { type: "json_object" };
    else if (f.type === "regex") body.regex = f.pattern;
    else if (f.type === "other") body.response_format = f.format;
  },
  // xgrammar (its default backend) takes JSON Schema as it is
  rewriteSchema: (schema) => schema,
  maxTokensField: "max_tokens",
  // --enable-priority-scheduling runs higher values first unless --schedule-low-priority-values-first
  priorityHigherFirst: true,
  toolsNeedDescription: false,
  classifyError: classifyWith({
    context: [/longer than the model's context length/i, /maximum context length/i],
  }),
};
