import { PROM_HEADERS, PromText, simSeries } from "../metrics.ts";

import { allText, jsonAnswer, maxTokens, openaiResponseFormat } from "./common.ts";
import { alnumId } from "./ids.ts";

import { RateLimits } from "./openai-limits.ts";

import { type OpenAIVariant, openaiCompletion, openaiStream } from "./openai-shape.ts";

import type { Admission, Handler, KindSurface, SimLive } from "./types.ts";
import { isRecord } from "../../util/record.ts";


/**
 * A hosted API in OpenAI's image (platform.openai.com chat completions, as
 * its API reference and error guide describe it in 2025):
 * - errors `{"error": {message, type, param, code}}` with `type`
 *   "invalid_request_error" and codes such as "model_not_found",
 *   "context_length_exceeded", "invalid_api_key", "rate_limit_exceeded";
 * - an API key when one is set (401 when missing or wrong);
 * - per-minute request and token limits with their headers and 429s
 *   (openai-limits.ts);
 * - request fields it does not know are refused ("Unrecognized request
 *   argument supplied"), so another server's structured-output fields get a
 *   400, not silence; `response_format` json_schema / json_object honoured
 *   (json_object only when the messages say "json");
 * - a reasoning model keeps its thinking to itself: only
 *   `usage.completion_tokens_details.reasoning_tokens` tells of it, and it
 *   refuses `max_tokens` for `max_completion_tokens`;
 * - no /health, no /metrics (the sim's own series only, unless turned off);
 *   /v1/models owned_by "system".
 */

const JSON_HEADERS = { "content-type": "application/json", "openai-version": "2020-10-01" };
const FINGERPRINT = "fp_sim0000000";
const PARAMS = new Set(
  (
    "messages model audio frequency_penalty function_call functions logit_bias logprobs max_completion_tokens max_tokens metadata " +
    "modalities n parallel_tool_calls prediction presence_penalty prompt_cache_key reasoning_effort response_format safety_identifier " +
    "seed service_tier stop store stream stream_options temperature tool_choice tools top_logprobs top_p user verbosity web_search_options"
  ).split(" "),
);
const TYPES: Record<number, string> = { 400: "invalid_request_error", 401: "invalid_request_error", 404: "invalid_request_error", 429: "requests", 500: "server_error", 503: "server_error" };

const VARIANT: OpenAIVariant = {
  messageExtra: { refusal: null, annotations: [] },
  reasoningFields: [],
  choiceExtra: () => "",
  choiceFields: () => undefined,
  deltaChoiceExtra: "",
  bodyExtra: { service_tier: "default", system_fingerprint: FINGERPRINT },
  chunkExtra: `,"service_tier":"default","system_fingerprint":"${FINGERPRINT}"`,
  usage: (r) => ({
    prompt_tokens: r.promptTokens,
    completion_tokens: r.composed.tokens,
    total_tokens: r.promptTokens + r.composed.tokens,
    prompt_tokens_details: { cached_tokens: r.cachedTokens, audio_tokens: 0 },
    completion_tokens_details: { reasoning_tokens: r.composed.reasoningTokens, audio_tokens: 0, accepted_prediction_tokens: 0, rejected_prediction_tokens: 0 },
  }),
  openDelta: `{"role":"assistant","content":"","refusal":null}`,
  nullUsage: "asked",
};

interface Err {
  status: number;
  message: string;
  param?: string | null;
  code?: string | null;
  type?: string;
}

/** The hosted-API surface of a server. */
export function openaiKind(live: SimLive): KindSurface {
  const o = live.o;
  const seed = o.port * 32452843 + live.startedAt;
  const limits = o.rpm > 0 || o.tpm > 0 ? new RateLimits(o.rpm, o.tpm, o.model) : undefined;
  let requestNo = 0;
  const error = (e: Err, headers?: Record<string, string>): Response => {
    const body = { error: { message: e.message, type: e.type ?? TYPES[e.status] ?? "invalid_request_error", param: e.param ?? null, code: e.code ?? null } };
    const h: Record<string, string> = { ...JSON_HEADERS, ...(limits?.headers() ?? {}), "x-request-id": `req_${alnumId(seed, ++requestNo, 32)}`, ...headers };
    return jsonAnswer(body, e.status, h);
  };
  const routes: Record<string, Handler> = {
    "/v1/models": () =>
      jsonAnswer({ object: "list", data: [{ id: o.model, object: "model", created: Math.floor(live.startedAt / 1000), owned_by: "system" }] }, 200, JSON_HEADERS),
  };
  if (o.simMetrics) {
    routes["/metrics"] = () => {
      const p = new PromText();
      simSeries(p, live);
      return new Response(p.text(), { headers: PROM_HEADERS });
    };
  }
  return {
    kind: "openai",
    jsonHeaders: JSON_HEADERS,
    sseHeaders: { "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache", "openai-version": "2020-10-01" },
    routes,
    gate(req, path) {
      if (!o.apiKey || path === "/metrics") return undefined;
      const auth = req.headers.get("authorization");
      if (!auth?.startsWith("Bearer ") || auth.length <= 7) {
        return error({
          status: 401,
          message:
            "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field (with blank username) if you're accessing the API from your browser and are prompted for a username. You can obtain an API key from https://platform.openai.com/account/api-keys.",
        });
      }
      const key = auth.slice(7);
      if (key === o.apiKey) return undefined;
      const shown = key.length > 8 ? `${key.slice(0, 3)}${"*".repeat(key.length - 7)}${key.slice(-4)}` : "*".repeat(key.length);
      return error({ status: 401, message: `Incorrect API key provided: ${shown}. You can find your API key at https://platform.openai.com/account/api-keys.`, code: "invalid_api_key" });
    },
    refuse(r) {
      switch (r.why) {
        case "json":
          return error({
            status: 400,
            message:
              "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON. If you have trouble figuring out how to fix this, please contact us through our help center at help.openai.com.)",
          });
        case "schema":
          return r.missing
            ? error({ status: 400, message: `Missing required parameter: '${r.param ?? "body"}'.`, param: r.param, code: "missing_required_parameter" })
            : error({ status: 400, message: `Invalid value for '${r.param ?? "body"}': ${r.message}`, param: r.param, code: "invalid_value" });
        case "size":
          return error({ status: 400, message: `Request too large: the body is over ${r.max} bytes.` });
        case "route":
          return error({ status: 404, message: `Invalid URL (${r.method} ${r.path})` });
        case "injected":
          return r.status === 500
            ? error({ status: 500, message: "The server had an error while processing your request. Sorry about that!", type: "server_error" })
            : error({ status: 429, message: `Rate limit reached for ${o.model} in organization org-sim on requests per min (RPM). Please try again in 1s.`, type: "requests", code: "rate_limit_exceeded" }, { "retry-after": "1" });
        case "scripted":
          return error({ status: r.status, message: r.message, ...(r.status >= 500 ? { type: "server_error" } : {}) });
        case "stopping":
        case "dropped":
          return error({ status: 503, message: "The server is overloaded or not ready yet.", type: "server_error" });
        case "gone":
          return error({ status: 499, message: "Client closed the request." });
      }
    },
    screen(raw) {
      if (!isRecord(raw)) return undefined;
      for (const key of Object.keys(raw)) if (!PARAMS.has(key)) return error({ status: 400, message: `Unrecognized request argument supplied: ${key}` });
      const rf = raw.response_format;
      if (isRecord(rf)) {
        if (rf.type !== "text" && rf.type !== "json_object" && rf.type !== "json_schema") {
          return error({ status: 400, message: `Invalid value: '${String(rf.type)}'. Supported values are: 'text', 'json_object', and 'json_schema'.`, param: "response_format.type", code: "invalid_value" });
        }
        if (rf.type === "json_schema" && !(isRecord(rf.json_schema) && typeof rf.json_schema.name === "string")) {
          return error({ status: 400, message: "Missing required parameter: 'response_format.json_schema.name'.", param: "response_format.json_schema.name", code: "missing_required_parameter" });
        }
      }
      if (o.reasoning && raw.max_tokens != null) {
        return error({ status: 400, message: "Unsupported parameter: 'max_tokens' is not supported with this model. Use 'max_completion_tokens' instead.", param: "max_tokens", code: "unsupported_parameter" });
      }
      return undefined;
    },
    admit(body, promptTokens): Response | Admission {
      if (body.model == null) return error({ status: 400, message: "you must provide a model parameter" });
      if (body.model !== o.model) return error({ status: 404, message: `The model \`${body.model}\` does not exist or you do not have access to it.`, code: "model_not_found" });
      const rf = openaiResponseFormat(body);
      if (rf?.type === "json_object" && !/json/i.test(allText(body))) {
        return error({ status: 400, message: "'messages' must contain the word 'json' in some form, to use 'response_format' of type 'json_object'.", param: "messages" });
      }
      const n = o.contextTokens;
      const m = maxTokens(body);
      if (m !== undefined ? promptTokens + m > n : promptTokens > n) {
        const message =
          m !== undefined
            ? `This model's maximum context length is ${n} tokens. However, you requested ${promptTokens + m} tokens (${promptTokens} in the messages, ${m} in the completion). Please reduce the length of the messages or completion.`
            : `This model's maximum context length is ${n} tokens. However, your messages resulted in ${promptTokens} tokens. Please reduce the length of the messages.`;
        return error({ status: 400, message, param: "messages", code: "context_length_exceeded" });
      }
      let headers: Record<string, string> = {};
      if (limits) {
        // the estimate a hosted API counts against its TPM: the prompt and the completion asked for
        const c = limits.check(promptTokens + (m ?? 0));
        if (!c.ok) return error({ status: 429, message: c.message, type: c.kind, code: "rate_limit_exceeded" }, c.headers);
        headers = c.headers;
      }
      headers["x-request-id"] = `req_${alnumId(seed, ++requestNo, 32)}`;
      return { model: o.model, promptTokens, constraint: rf, headers };
    },
    replyId: (n) => `chatcmpl-${alnumId(seed, n, 29)}`,
    toolCallId: (hash) => `call_${alnumId(hash, 3, 24)}`,
    completion: (r) => openaiCompletion(VARIANT, r, undefined),
    stream: (r) => openaiStream(VARIANT, r),
  };
}
