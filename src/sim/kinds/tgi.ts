import { PROM_HEADERS } from "../metrics.ts";

import type { ChatBody } from "../request.ts";

import type { OutputConstraint } from "../skills/types.ts";

import { jsonAnswer, maxTokens, schemaValue } from "./common.ts";
import { TgiMetrics } from "./tgi-metrics.ts";

import type { Admission, KindSurface, ReplyInfo, SimLive, StreamEncoder } from "./types.ts";
import { isRecord } from "../../util/record.ts";


/**
 * Hugging Face text-generation-inference, v3.3.6 (router/src/{lib,server,
 * validation,chat}.rs):
 * - errors `{"error": "...", "error_type": "..."}`: validation 422,
 *   overloaded 429 (past --max-concurrent-requests), tool errors 422; a body
 *   that is not JSON or not of the request's shape gets axum's plain-text
 *   rejection (400, 422; 415 without a JSON content type);
 * - `inputs` tokens + `max_new_tokens` (at most 1024 per chunk) must fit
 *   max_total_tokens, and inputs max_input_tokens (here context - 1);
 * - `response_format` is its grammar: `{type: "json" | "json_object",
 *   value: schema}`, `{type: "regex", value}` or `{type: "json_schema",
 *   value: {name, schema}}`; anything else fails to deserialize; with tools
 *   it is refused ("Grammar and tools are mutually exclusive");
 * - answers have `id: ""`, the request's model (or model_id), a tool call
 *   with id "0", a `description` and no content, finish "stop" after EOS
 *   (also for tool calls) and "stop_sequence" after a stop string; every
 *   chunk carries role and `usage: null`; no reasoning parser: thinking is
 *   inline;
 * - /info, /health, /metrics (`tgi_*`), /v1/models with owned_by = model id.
 */

const VERSION = "3.3.6";
const FINGERPRINT = `${VERSION}-native`;
const JSON_HEADERS = { "content-type": "application/json", "x-compute-type": "gpu+optimized" };
const TEXT_HEADERS = { "content-type": "text/plain; charset=utf-8" };
/** TGI's DEFAULT_GENERATION_LENGTH: the most new tokens one validation chunk counts */
const CHUNK = 1024;
const STATUS: Record<string, number> = { validation: 422, overloaded: 429, tool_error: 422, generation: 424, incomplete_generation: 500 };

/** The error_type TGI would give a status. */
function tgiErrorType(status: number): string {
  if (status === 429) return "overloaded";
  if (status === 424) return "generation";
  return status < 500 ? "validation" : "incomplete_generation";
}

function inline(r: ReplyInfo): string {
  const c = r.composed;
  return c.reasoning === null ? (c.text ?? "") : `<think>\n${c.reasoning}\n</think>\n\n${c.text ?? ""}`;
}

function finishOf(r: ReplyInfo): string {
  const c = r.composed;
  if (c.finishReason === "length") return "length";
  return c.stopSequence !== null ? "stop_sequence" : "stop";
}

function usage(r: ReplyInfo): Record<string, number> {
  return { prompt_tokens: r.promptTokens, completion_tokens: r.composed.tokens, total_tokens: r.promptTokens + r.composed.tokens };
}

function completion(r: ReplyInfo): string {
  const t = r.composed.toolCall;
  const message = t
    ? { role: "assistant", tool_calls: [{ id: r.toolCallId, type: "function", function: { description: null, name: t.name, arguments: t.arguments } }] }
    : { role: "assistant", content: inline(r) };
  return JSON.stringify({
    object: "chat.completion",
    id: "",
    created: r.created,
    model: r.model,
    system_fingerprint: FINGERPRINT,
    choices: [{ index: 0, message, logprobs: null, finish_reason: finishOf(r) }],
    usage: usage(r),
  });
}

function stream(r: ReplyInfo): StreamEncoder {
  const head = `data: {"object":"chat.completion.chunk","id":"","created":${r.created},"model":${JSON.stringify(r.model)},"system_fingerprint":"${FINGERPRINT}","choices":[{"index":0,"delta":`;
  const send = (delta: string, finish: string | null = null): string =>
    `${head}${delta},"logprobs":null,"finish_reason":${finish === null ? "null" : JSON.stringify(finish)}}],"usage":null}\n\n`;
  const content = (piece: string): string => (piece ? send(`{"role":"assistant","content":${JSON.stringify(piece)}}`) : "");
  const call = (name: string | null, args: string): string =>
    send(`{"role":"assistant","tool_calls":[{"index":0,"id":${JSON.stringify(r.toolCallId)},"type":"function","function":{"name":${JSON.stringify(name)},"arguments":${JSON.stringify(args)}}}]}`);
  return {
    open: () => "",
    reasoning: (piece, first, last) => content(`${first ? "<think>\n" : ""}${piece}${last ? "\n</think>\n\n" : ""}`),
    content,
    toolName: () => call(r.composed.toolCall?.name ?? null, ""),
    toolArgs: (piece) => call(null, piece),
    close() {
      let out = send(`{"role":"assistant","content":""}`, finishOf(r));
      if (r.includeUsage) {
        out += `data: {"object":"chat.completion.chunk","id":"","created":${r.created},"model":${JSON.stringify(r.model)},"system_fingerprint":"${FINGERPRINT}","choices":[],"usage":${JSON.stringify(usage(r))}}\n\n`;
      }
      return out + "data: [DONE]\n\n";
    },
  };
}

/** What TGI's GrammarType deserializes from `response_format`, or why it does not. */
function grammarOf(rf: unknown): OutputConstraint | { error: string } | undefined {
  if (rf == null) return undefined;
  if (!isRecord(rf)) return { error: "response_format: invalid type: expected internally tagged enum GrammarType" };
  const t = rf.type;
  if (t !== "json" && t !== "json_object" && t !== "regex" && t !== "json_schema") {
    return { error: `response_format: unknown variant \`${String(t)}\`, expected one of \`json\`, \`json_object\`, \`regex\`, \`json_schema\`` };
  }
  if (!("value" in rf)) return { error: "response_format: missing field `value`" };
  if (t === "regex") return typeof rf.value === "string" ? { type: "regex", pattern: rf.value } : { error: "response_format: invalid type: expected a string" };
  if (t === "json_schema") {
    const schema = isRecord(rf.value) ? schemaValue(rf.value.schema) : undefined;
    return schema ? { type: "json_schema", schema } : { error: "response_format: missing field `schema`" };
  }
  const schema = schemaValue(rf.value);
  return schema && Object.keys(schema).length > 0 ? { type: "json_schema", schema } : { type: "json_object" };
}

/** The TGI surface of a server. */
export function tgiKind(live: SimLive): KindSurface {
  const o = live.o;
  const m = new TgiMetrics(live);
  const tgiError = (errorType: string, error: string, headers?: Record<string, string>): Response => {
    m.failed(errorType);
    return jsonAnswer({ error, error_type: errorType }, STATUS[errorType] ?? 500, headers ? { ...JSON_HEADERS, ...headers } : JSON_HEADERS);
  };
  const rejection = (status: number, text: string): Response => {
    m.failed("validation");
    return new Response(text, { status, headers: TEXT_HEADERS });
  };
  const info = {
    model_id: o.model,
    model_sha: null,
    model_pipeline_tag: "text-generation",
    max_concurrent_requests: o.maxConcurrentRequests,
    max_best_of: 2,
    max_stop_sequences: 4,
    max_input_tokens: o.contextTokens - 1,
    max_total_tokens: o.contextTokens,
    validation_workers: 2,
    max_client_batch_size: 4,
    router: "text-generation-router",
    version: VERSION,
    sha: null,
    docker_label: null,
  };
  const health = () => new Response(null, { status: 200 });
  return {
    kind: "tgi",
    jsonHeaders: JSON_HEADERS,
    sseHeaders: { "content-type": "text/event-stream", "cache-control": "no-cache", "x-compute-type": "gpu+optimized" },
    routes: {
      "/info": () => jsonAnswer(info, 200, JSON_HEADERS),
      "/health": health,
      "/ping": health,
      "/metrics": () => new Response(m.text(), { headers: PROM_HEADERS }),
      "/v1/models": () => jsonAnswer({ object: "list", data: [{ id: o.model, object: "model", created: 0, owned_by: o.model }] }, 200, JSON_HEADERS),
    },
    gate(req, path) {
      if (path !== "/v1/chat/completions" || req.method !== "POST") return undefined;
      m.requests++;
      // --api-key guards the generation routes with a bare 401
      if (o.apiKey && req.headers.get("authorization")?.toLowerCase() !== `bearer ${o.apiKey}`.toLowerCase()) return new Response(null, { status: 401 });
      const type = req.headers.get("content-type") ?? "";
      if (!/^application\/(.*\+)?json/i.test(type)) return rejection(415, "Expected request with `Content-Type: application/json`");
      return undefined;
    },
    refuse(r) {
      switch (r.why) {
        case "json":
          return rejection(400, `Failed to parse the request body as JSON: ${r.detail}`);
        case "schema":
          return rejection(422, `Failed to deserialize the JSON body into the target type: ${r.message}`);
        case "size":
          return rejection(413, "Failed to buffer the request body: length limit exceeded");
        case "route":
          // axum's own: empty bodies
          return new Response(null, { status: r.known ? 405 : 404 });
        case "injected":
          return r.status === 500 ? tgiError("generation", "Request failed during generation: Simulated internal server error.", undefined) : tgiError("overloaded", "Model is overloaded", { "retry-after": "1" });
        case "scripted":
          // TGI's error types each have one status; a scripted status keeps its own, with the nearest type
          return jsonAnswer({ error: r.message, error_type: tgiErrorType(r.status) }, r.status, JSON_HEADERS);
        case "stopping":
        case "dropped":
          return tgiError("incomplete_generation", "Incomplete generation");
        case "gone":
          return tgiError("incomplete_generation", "Incomplete generation");
      }
    },
    screen(raw) {
      if (!isRecord(raw)) return undefined;
      const g = grammarOf(raw.response_format);
      if (g && "error" in g) return rejection(422, `Failed to deserialize the JSON body into the target type: ${g.error}`);
      if (raw.response_format != null && Array.isArray(raw.tools) && raw.tools.length > 0) {
        return tgiError("tool_error", "Tool error: Grammar and tools are mutually exclusive");
      }
      return undefined;
    },
    admit(body: ChatBody, promptTokens): Response | Admission {
      const e = live.engine();
      if (e.running + e.waiting >= o.maxConcurrentRequests) return tgiError("overloaded", "Model is overloaded");
      const total = o.contextTokens;
      const maxInput = total - 1;
      const asked = maxTokens(body);
      const chunk = Math.min(asked ?? Math.max(0, total - promptTokens), CHUNK);
      if (promptTokens + chunk > total) {
        return tgiError("validation", `Input validation error: \`inputs\` tokens + \`max_new_tokens\` must be <= ${total}. Given: ${promptTokens} \`inputs\` tokens and ${chunk} \`max_new_tokens\``);
      }
      if (promptTokens > maxInput) return tgiError("validation", `Input validation error: \`inputs\` must have less than ${maxInput} tokens. Given: ${promptTokens}`);
      const g = grammarOf(body.response_format);
      const model = body.model == null || body.model === "tgi" ? o.model : body.model;
      return { model, promptTokens, constraint: g && !("error" in g) ? g : undefined };
    },
    replyId: () => "",
    toolCallId: () => "0",
    completion,
    stream,
    done: (r, seconds) => m.done(r.promptTokens, r.composed.tokens, seconds),
  };
}
