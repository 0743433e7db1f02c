/**
 * The dialect of Hugging Face's text-generation-inference (TGI), from its
 * router's source (router/src/lib.rs, server.rs, validation.rs, v3.3).
 *
 * Metrics: the gauges `tgi_queue_size` (waiting) and
 * `tgi_batch_current_size` (running); no counters of tokens, but the
 * histograms `tgi_request_input_length` and `tgi_request_generated_tokens`,
 * whose `_sum` series count the same; no KV-cache figure.
 *
 * `/info`: `model_id`, `max_concurrent_requests` (the router's admission
 * cap), `max_input_tokens` (`max_input_length` before v2.1),
 * `max_total_tokens` (prompt plus completion), `router:
 * "text-generation-router"`, `version`. Its `/v1/models` says the model id
 * for `owned_by`.
 *
 * Structured output: `response_format` is its own grammar type, `{type,
 * value}`: `{type: "json_object", value: SCHEMA}` (`json_object` an alias
 * of `json`, since v2.1.0), `{type: "regex", value: PATTERN}`;
 * `{type: "json_schema", value: {name, schema}}` only since v3.3.0, so the
 * first is the one sent. It refuses a grammar beside tools (422 "Grammar
 * and tools are mutually exclusive"): with tools the constraint is left
 * out.
 *
 * Errors (`{error, error_type}`): 422 "Input validation error: `inputs`
 * tokens + `max_new_tokens` must be <= N. Given: ...", "`inputs` must have
 * less than N tokens" and "`max_new_tokens` must be <= N" for what does not
 * fit; 429 "Model is overloaded" past `max_concurrent_requests`; 424 for a
 * generation that failed in the model server.
 */
import { z } from "zod";
import { readLoad, type LoadMetrics } from "../../services/prom.ts";
import { classifyWith, serverRoot } from "./openai.ts";
import { hasTools, readFormat } from "./schema.ts";
import type { Dialect, ServerInfo } from "./types.ts";

/** TGI's metric names (see the file's comment). */
export const TGI_METRICS: LoadMetrics = {
  running: ["tgi_batch_current_size"],
  waiting: ["tgi_queue_size"],
  promptTokens: ["tgi_request_input_length_sum"],
  generationTokens: ["tgi_request_generated_tokens_sum"],
};

const count = z.number().int().positive();
const InfoAnswer = z.looseObject({
  max_concurrent_requests: count.optional().catch(undefined),
  max_total_tokens: count.optional().catch(undefined),
  version: z.string().min(1).optional().catch(undefined),
});

/** `GET /info`: its admission cap, the tokens a request may take in all, its version. */
function readInfo(json: unknown): ServerInfo {
  const p = InfoAnswer.safeParse(json);
  if (!p.success) return {};
  const info: ServerInfo = {};
  // an admission cap (429 past it), far above the batch it runs: its slots are seen from its queue instead
  if (p.data.max_concurrent_requests !== undefined) info.maxRequests = p.data.max_concurrent_requests;
  if (p.data.max_total_tokens !== undefined) info.contextTokens = p.data.max_total_tokens;
  if (p.data.version !== undefined) info.version = p.data.version;
  return info;
}

/** The dialect of text-generation-inference's Messages API. */
export const tgi: Dialect = {
  kind: "tgi",
  metricsUrl: (base) => `${serverRoot(base)}/metrics`,
  parseLoad: (text) => readLoad(text, TGI_METRICS),
  infoProbes: [{ url: (base) => `${serverRoot(base)}/info`, read: readInfo }],
  applyFormat(body, format) {
    if (hasTools(body)) return;
    const f = readFormat(format);
    if (f.type === "json_schema") body.response_format = { type: "json_object", value: f.schema };
    else if (f.type === "json_object") body.response_format = { type: "json_object", value: { type: "object" } };
    else if (f.type === "regex") body.response_format = { type: "regex", value: f.pattern };
    else if (f.type === "other") body.response_format = f.format;
    // `{type: "text"}` is no grammar type of TGI's (422): nothing is sent for it
  },
  // its grammar compiler (outlines) takes JSON Schema as it is
  rewriteSchema: (schema) => schema,
  maxTokensField: "max_tokens",
  toolsNeedDescription: false,
  classifyError: classifyWith({
    context: [/`inputs` tokens \+ `max_new_tokens` must be <=/, /`inputs` must have less than \d+ tokens/, /`max_new_tokens` must be <= \d+/],
    transient4xx: [424],
  }),
};
