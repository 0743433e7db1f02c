import { PROM_HEADERS, PromText, simSeries } from "../metrics.ts";

import type { ChatBody } from "../request.ts";

import type { OutputConstraint } from "../skills/types.ts";

import { extra, jsonAnswer, maxTokens, openaiResponseFormat, pydanticInt, schemaValue } from "./common.ts";
import { hexId, hexIds } from "./ids.ts";

import { type OpenAIVariant, openaiCompletion, openaiStream } from "./openai-shape.ts";

import type { Admission, KindSurface, SimLive } from "./types.ts";

import { vllmSeries } from "./vllm-metrics.ts";
import { isRecord } from "../../util/record.ts";


/**
 * vLLM's OpenAI-compatible server, as of v0.11.1 (Nov 2025; read in
 * vllm/entrypoints/openai/{protocol,serving_engine,serving_chat}.py):
 * - errors `{"error": {message, type, param, code}}` (the envelope since
 *   v0.10.1; v0.10.0 and older answered a flat `{"object": "error", ...}`);
 * - context: `This model's maximum context length is N tokens. However, your
 *   request has T input tokens. ...` without max_tokens, `'max_tokens' or
 *   'max_completion_tokens' is too large: M. ...` with it (v0.10.2 to v0.17);
 * - structured output from `structured_outputs` (new in v0.11), the
 *   deprecated `guided_json` / `guided_regex` / `guided_choice` (removed in
 *   v0.12.0, ignored since) and `response_format`;
 * - reasoning (with --reasoning-parser) in both `reasoning` and the
 *   deprecated `reasoning_content` (v0.11.1 to v0.15; only `reasoning` from
 *   v0.16, only `reasoning_content` up to v0.11.0);
 * - tool call ids `chatcmpl-tool-<uuid hex>`; `/v1/models` owned_by "vllm"
 *   with max_model_len; usage.prompt_tokens_details as with
 *   --enable-prompt-tokens-details;
 * - `priority` (int, default 0, lower first): with --scheduling-policy
 *   priority the waiting queue is ordered by (priority, arrival)
 *   (v1/core/sched/request_queue.py); under the default fcfs it is taken and
 *   ignored: the V1 engine (the only one since v0.11.0) has no check, and
 *   "Got priority N but Priority scheduling is not enabled." was the V0
 *   engine's. V1 preempts only when the KV cache is full, which the sim does
 *   not model, so it never preempts.
 */

const VERSION = "0.11.1";
const ERROR_TYPES: Record<number, string> = {
  400: "BadRequestError",
  404: "NotFoundError",
  413: "RequestEntityTooLarge",
  429: "RateLimitError",
  499: "ClientDisconnected",
  500: "InternalServerError",
  503: "ServiceUnavailable",
};
const JSON_HEADERS = { "content-type": "application/json" };
const RESPONSE_FORMAT_TYPES = new Set(["text", "json_object", "json_schema", "structural_tag"]);

const VARIANT: OpenAIVariant = {
  messageExtra: { refusal: null, annotations: null, audio: null, function_call: null },
  reasoningFields: ["reasoning", "reasoning_content"],
  choiceExtra: (r) => `,"stop_reason":${JSON.stringify(r.composed.stopSequence)}`,
  choiceFields: (r) => ({ stop_reason: r.composed.stopSequence }),
  deltaChoiceExtra: "",
  bodyExtra: { service_tier: null, system_fingerprint: null, prompt_logprobs: null, prompt_token_ids: null, kv_transfer_params: null },
  chunkExtra: "",
  usage: (r) => ({
    prompt_tokens: r.promptTokens,
    total_tokens: r.promptTokens + r.composed.tokens,
    completion_tokens: r.composed.tokens,
    prompt_tokens_details: { cached_tokens: r.cachedTokens },
  }),
  openDelta: `{"role":"assistant","content":""}`,
  nullUsage: "never",
};

/** An error answer in vLLM's envelope. */
export function vllmError(status: number, message: string, param: string | null = null, headers?: Record<string, string>): Response {
  const body = { error: { message, type: ERROR_TYPES[status] ?? "Error", param, code: status } };
  return jsonAnswer(body, status, headers ? { ...JSON_HEADERS, ...headers } : JSON_HEADERS);
}

/** The constraint vLLM v0.11.1 enforces: structured_outputs, then the guided_* fields, then response_format. */
function constraintOf(body: ChatBody): OutputConstraint | undefined {
  const so = extra(body, "structured_outputs");
  if (isRecord(so)) {
    const schema = schemaValue(so.json);
    if (schema) return { type: "json_schema", schema };
    if (typeof so.regex === "string") return { type: "regex", pattern: so.regex };
    if (Array.isArray(so.choice)) return { type: "choice", choices: so.choice.map(String) };
    if (so.json_object === true) return { type: "json_object" };
  }
  const gj = schemaValue(extra(body, "guided_json"));
  if (gj) return { type: "json_schema", schema: gj };
  const gr = extra(body, "guided_regex");
  if (typeof gr === "string") return { type: "regex", pattern: gr };
  const gc = extra(body, "guided_choice");
  if (Array.isArray(gc)) return { type: "choice", choices: gc.map(String) };
  return openaiResponseFormat(body);
}

/** The vLLM surface of a server. */
export function vllmKind(live: SimLive): KindSurface {
  const o = live.o;
  const byPriority = o.schedulingPolicy === "priority";
  const seed = o.port * 7919 + live.startedAt;
  const replyHex = hexIds(seed);
  const models = () =>
    jsonAnswer(
      {
        object: "list",
        data: [
          {
            id: o.model,
            object: "model",
            created: Math.floor(live.startedAt / 1000),
            owned_by: "vllm",
            root: o.model,
            parent: null,
            max_model_len: o.contextTokens,
            permission: [
              {
                id: `modelperm-${hexId(seed, 0)}`,
                object: "model_permission",
                created: Math.floor(live.startedAt / 1000),
                allow_create_engine: false,
                allow_sampling: true,
                allow_logprobs: true,
                allow_search_indices: false,
                allow_view: true,
                allow_fine_tuning: false,
                organization: "*",
                group: null,
                is_blocking: false,
              },
            ],
          },
        ],
      },
      200,
      JSON_HEADERS,
    );
  const metrics = () => {
    const p = new PromText();
    vllmSeries(p, live);
    if (o.simMetrics) simSeries(p, live);
    return new Response(p.text(), { headers: PROM_HEADERS });
  };
  return {
    kind: "vllm",
    jsonHeaders: JSON_HEADERS,
    sseHeaders: { "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache" },
    routes: {
      "/v1/models": models,
      "/health": () => new Response(null, { status: 200 }),
      "/metrics": metrics,
      "/version": () => jsonAnswer({ version: VERSION }, 200, JSON_HEADERS),
    },
    gate(req, path) {
      // vLLM's --api-key guards /v1 only, answering a bare {"error": "Unauthorized"}
      if (!o.apiKey || !path.startsWith("/v1") || req.headers.get("authorization") === `Bearer ${o.apiKey}`) return undefined;
      return jsonAnswer({ error: "Unauthorized" }, 401, JSON_HEADERS);
    },
    refuse(r) {
      switch (r.why) {
        case "json":
          return vllmError(400, `Invalid JSON body: ${r.detail}`);
        case "schema":
          return vllmError(400, r.message, r.param);
        case "size":
          return vllmError(413, `Request body is larger than ${r.max} bytes.`);
        case "route":
          // FastAPI's own answers
          return r.known ? jsonAnswer({ detail: "Method Not Allowed" }, 405, JSON_HEADERS) : jsonAnswer({ detail: "Not Found" }, 404, JSON_HEADERS);
        case "injected":
          return r.status === 500
            ? vllmError(500, "Simulated internal server error.")
            : vllmError(429, "Simulated rate limit: try again shortly.", null, { "retry-after": "1" });
        case "scripted":
          return vllmError(r.status, r.message);
        case "stopping":
          return vllmError(503, "The server is stopping.");
        case "dropped":
          return vllmError(503, "The server stopped before answering.");
        case "gone":
          return vllmError(499, "Client closed the request.");
      }
    },
    screen(raw) {
      if (!isRecord(raw)) return undefined;
      if ("priority" in raw) {
        const p = pydanticInt(raw.priority);
        if ("error" in p) return vllmError(400, `priority: ${p.error}`, "priority");
      }
      if (!isRecord(raw.response_format)) return undefined;
      const t = raw.response_format.type;
      if (typeof t === "string" && !RESPONSE_FORMAT_TYPES.has(t)) {
        return vllmError(400, `response_format.type: Input should be 'text', 'json_object', 'json_schema' or 'structural_tag'`, "response_format");
      }
      const js = raw.response_format.json_schema;
      if (t === "json_schema" && isRecord(js) && typeof js.name !== "string") {
        return vllmError(400, "response_format.json_schema.name: Field required", "response_format");
      }
      return undefined;
    },
    admit(body, promptTokens): Response | Admission {
      if (body.model != null && body.model !== o.model) return vllmError(404, `The model \`${body.model}\` does not exist.`, "model");
      const n = o.contextTokens;
      const m = maxTokens(body);
      if (m === undefined && promptTokens >= n) {
        return vllmError(400, `This model's maximum context length is ${n} tokens. However, your request has ${promptTokens} input tokens. Please reduce the length of the input messages.`);
      }
      if (m !== undefined && promptTokens + m > n) {
        const name = body.max_completion_tokens != null ? "max_completion_tokens" : "max_tokens";
        return vllmError(
          400,
          `'${name}' or 'max_completion_tokens' is too large: ${m}. This model's maximum context length is ${n} tokens and your request has ${promptTokens} input tokens (${m} > ${n} - ${promptTokens}).`,
        );
      }
      const adm: Admission = { model: o.model, promptTokens, constraint: constraintOf(body) };
      if (byPriority) {
        const p = pydanticInt(extra(body, "priority") ?? 0);
        adm.priority = "value" in p ? p.value : 0;
      }
      return adm;
    },
    replyId: (n) => `chatcmpl-${replyHex(n)}`,
    toolCallId: (hash) => `chatcmpl-tool-${hexId(hash, 1)}`,
    // tool_calls only when there is one, as vLLM drops an empty list
    completion: (r) => openaiCompletion(VARIANT, r, undefined),
    stream: (r) => openaiStream(VARIANT, r),
  };
}
