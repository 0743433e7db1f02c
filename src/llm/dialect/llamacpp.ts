/**
 * llama.cpp's dialect (llama-server), checked against the answers of build
 * b4748 captured in test/fixtures/llama.cpp-b4748.
 *
 * Metrics (`--metrics`; examples/server/server.cpp, metrics.txt): the
 * gauges `llamacpp:requests_processing` and `llamacpp:requests_deferred`,
 * `llamacpp:kv_cache_usage_ratio` (0..1), the counters
 * `llamacpp:prompt_tokens_total` and `llamacpp:tokens_predicted_total`.
 *
 * `/props` (props.json): `total_slots` (`--parallel`),
 * `default_generation_settings.n_ctx` (the context of one slot: `-c`
 * divided among the slots) and `build_info`. `/v1/models` says `owned_by:
 * "llamacpp"`.
 *
 * Structured output (examples/server/utils.hpp): b4748 ignores
 * `response_format` `{type: "json_schema"}` (json-schema-openai-shape.json)
 * and knows no `guided_json`; it honours a top-level `json_schema`
 * (json-schema-toplevel.json) and `response_format: {type: "json_object"}`.
 * It has no regex field: a regex is turned into a GBNF `grammar` when it is
 * in the subset schema.ts spells (else the reply goes unconstrained), and
 * not with tools, which it refuses beside a grammar ("Cannot use custom
 * grammar constraints with tools").
 *
 * Errors: request checks are thrown and answered 500 in b4748 ("tools
 * param requires --jinja flag", "Failed to parse tools: ... key
 * 'description' not found" for a tool without one (tools-backslash-d.json),
 * "Unsupported param: ..."); a prompt over a slot's context is 500 "Input
 * prompt is too big compared to KV size", and 400 "the request exceeds the
 * available context size, try increasing it" in later builds; 503
 * "Loading model" while it starts.
 */
import { z } from "zod";
import { readLoad, type LoadMetrics } from "../../services/prom.ts";
import { classifyWith, serverRoot } from "./openai.ts";
import { hasTools, readFormat, regexToGbnf, rewriteForLlamaCpp } from "./schema.ts";
import type { Dialect, ServerInfo } from "./types.ts";

/** llama.cpp's metric names (see the file's comment). */
export const LLAMACPP_METRICS: LoadMetrics = {
  running: ["llamacpp:requests_processing"],
  waiting: ["llamacpp:requests_deferred"],
  cacheUsage: ["llamacpp:kv_cache_usage_ratio"],
  promptTokens: ["llamacpp:prompt_tokens_total"],
  generationTokens: ["llamacpp:tokens_predicted_total"],
};

const count = z.number().int().positive();
const PropsAnswer = z.looseObject({
  total_slots: count.optional().catch(undefined),
  default_generation_settings: z.looseObject({ n_ctx: count.optional().catch(undefined) }).optional().catch(undefined),
  build_info: z.string().min(1).optional().catch(undefined),
});

/** `GET /props`: its slots, the context of one slot, its build. */
function readProps(json: unknown): ServerInfo {
  const p = PropsAnswer.safeParse(json);
  if (!p.success) return {};
  const info: ServerInfo = {};
  if (p.data.total_slots !== undefined) info.slots = p.data.total_slots;
  const ctx = p.data.default_generation_settings?.n_ctx;
  if (ctx !== undefined) info.contextTokens = ctx;
  if (p.data.build_info !== undefined) info.version = p.data.build_info;
  return info;
}

/** The dialect of llama.cpp's llama-server. */
export const llamacpp: Dialect = {
  kind: "llamacpp",
  metricsUrl: (base) => `${serverRoot(base)}/metrics`,
  parseLoad: (text) => readLoad(text, LLAMACPP_METRICS),
  infoProbes: [{ url: (base) => `${serverRoot(base)}/props`, read: readProps }],
  applyFormat(body, format) {
    const f = readFormat(format);
    if (f.type === "json_schema") body.json_schema = f.schema;
    else if (f.type === "json_object") body.response_format = { type: "json_object" };
    else if (f.type === "regex") {
      const grammar = hasTools(body) ? undefined : regexToGbnf(f.pattern);
      if (grammar !== undefined) body.grammar = grammar;
    } else if (f.type === "other") body.response_format = f.format;
  },
  rewriteSchema: rewriteForLlamaCpp,
  maxTokensField: "max_tokens",
  // b4748 answers 500 "key 'description' not found" for a tool without one
  toolsNeedDescription: true,
  classifyError: classifyWith({
    context: [/too big compared to KV size/i, /exceeds the available context size/i, /exceed_context_size/i, /input is (too large|larger than the max context size)/i],
    config500: [
      /--jinja/,
      /Failed to parse tools/i,
      /Unsupported param/i,
      /Cannot use (tools with stream|both json_schema and grammar|custom grammar constraints with tools)/i,
      /response_format type must be/i,
      /JSON schema conversion failed/i,
      /Failed to parse grammar/i,
      /Only one completion choice is allowed/i,
      /top_logprobs requires logprobs/i,
      // nlohmann's exceptions: a field of the request missing or of the wrong type
      /\[json\.exception\./,
    ],
  }),
};
