import { PROM_HEADERS } from "../metrics.ts";

import { extra, jsonAnswer } from "./common.ts";
import { HttpPool } from "./http-pool.ts";

import { alnumId } from "./ids.ts";

import { BUILD_INFO, metricsText, models, props } from "./llamacpp-info.ts";

import { badPatternEscape, llamacppConstraint, llamacppRefusal, truncatedPrompt } from "./llamacpp-request.ts";

import type { Admission, KindSurface, ReplyInfo, SimLive, StreamEncoder } from "./types.ts";
import { isRecord } from "../../util/record.ts";


/**
 * llama.cpp's llama-server, build b4748 (Feb 2025; examples/server/
 * server.cpp and utils.hpp of that build, and its captured answers in
 * test/fixtures/llama.cpp-b4748):
 * - errors `{"error": {code, message, type}}`, the status in `code`; what
 *   the request parser throws is a 500 `server_error`;
 * - tools need --jinja, may not be streamed, and each function needs a
 *   name, description and parameters; a parameter `pattern` with `\d`, `\w`
 *   or `\s` breaks the grammar: the server logs it and answers plain text;
 * - tool calls carry `id: ""`; `model` in answers is the request's, or
 *   "gpt-3.5-turbo";
 * - a prompt of a slot's context or more is cut silently (context shift is
 *   on by default); cut to the brim, it fails the KV cache allocation when
 *   other slots are busy: 500 "Input prompt is too big compared to KV
 *   size", sent as an SSE `error:` event once a stream has begun;
 * - structured output from a top-level `json_schema` or `response_format:
 *   {type: "json_object", schema}`; `{type: "json_schema"}` is ignored;
 * - with --reasoning-format deepseek the thinking is returned apart, in
 *   `reasoning_content`, but only in non-streamed answers: streams carry
 *   it inline, between <think> tags;
 * - usage and `timings` in every streamed answer's last chunk;
 * - /metrics only with --metrics (else 501), /props, /health;
 * - a pool of --threads-http HTTP threads (http-pool.ts).
 */

const JSON_HEADERS = { "content-type": "application/json; charset=utf-8", server: "llama.cpp" };
const DEFAULT_MODEL = "gpt-3.5-turbo";
const KV_FULL = "Input prompt is too big compared to KV size. Please try increasing KV size.";
const TYPES: Record<number, string> = {
  400: "invalid_request_error",
  401: "authentication_error",
  403: "permission_error",
  404: "not_found_error",
  413: "invalid_request_error",
  429: "unavailable_error",
  499: "invalid_request_error",
  500: "server_error",
  501: "not_supported_error",
  503: "unavailable_error",
};

/** An error answer in llama.cpp's shape. */
function llamaError(status: number, message: string): Response {
  return jsonAnswer({ error: { code: status, message, type: TYPES[status] ?? "server_error" } }, status, JSON_HEADERS);
}

/** The SSE answer of an error met once the stream began: an `error:` event, then [DONE]. */
function streamedError(status: number, message: string): Response {
  const event = JSON.stringify({ code: status, message, type: TYPES[status] ?? "server_error" });
  return new Response(`error: ${event}\n\ndata: [DONE]\n\n`, { headers: { "content-type": "text/event-stream", server: "llama.cpp" } });
}

function timings(r: ReplyInfo, live: SimLive): Record<string, number> {
  const o = live.o;
  const promptN = Math.max(1, r.promptTokens - r.cachedTokens);
  const promptMs = (promptN / o.prefillTps) * 1000 * o.timeScale;
  const predictedN = r.composed.tokens;
  const predictedMs = Math.max(0.001, (r.elapsedMs ?? 0) - promptMs);
  return {
    prompt_n: promptN,
    prompt_ms: promptMs,
    prompt_per_token_ms: promptMs / promptN,
    prompt_per_second: (1000 * promptN) / promptMs,
    predicted_n: predictedN,
    predicted_ms: predictedMs,
    predicted_per_token_ms: predictedMs / predictedN,
    predicted_per_second: (1000 * predictedN) / predictedMs,
  };
}

function usage(r: ReplyInfo): Record<string, number> {
  return { completion_tokens: r.composed.tokens, prompt_tokens: r.promptTokens, total_tokens: r.promptTokens + r.composed.tokens };
}

/** The thinking between tags, as a stream (or a server without --jinja) carries it. */
function inline(r: ReplyInfo): string {
  const c = r.composed;
  return c.reasoning === null ? (c.text ?? "") : `<think>\n${c.reasoning}\n</think>\n\n${c.text ?? ""}`;
}

function completion(r: ReplyInfo, live: SimLive): string {
  const c = r.composed;
  const message: Record<string, unknown> = { role: "assistant" };
  if (c.toolCall) {
    if (c.reasoning !== null && live.o.jinja) message.reasoning_content = c.reasoning;
    message.content = null;
    message.tool_calls = [{ type: "function", function: { name: c.toolCall.name, arguments: c.toolCall.arguments }, id: r.toolCallId }];
  } else if (c.reasoning !== null && live.o.jinja) {
    message.reasoning_content = c.reasoning;
    message.content = c.text;
  } else message.content = inline(r);
  const body = {
    choices: [{ finish_reason: c.finishReason, index: 0, message }],
    created: r.created,
    model: r.model,
    system_fingerprint: BUILD_INFO,
    object: "chat.completion",
    usage: usage(r),
    id: r.id,
    timings: timings(r, live),
  };
  return JSON.stringify(body);
}

function stream(r: ReplyInfo, live: SimLive): StreamEncoder {
  const tail = `,"created":${r.created},"id":${JSON.stringify(r.id)},"model":${JSON.stringify(r.model)},"system_fingerprint":"${BUILD_INFO}","object":"chat.completion.chunk"`;
  const content = (piece: string): string =>
    piece ? `data: {"choices":[{"finish_reason":null,"index":0,"delta":{"content":${JSON.stringify(piece)}}}]${tail}}\n\n` : "";
  return {
    // no role chunk: this build's first partial result is never the "first" one
    open: () => "",
    reasoning: (piece, first, last) => content(`${first ? "<think>\n" : ""}${piece}${last ? "\n</think>\n\n" : ""}`),
    content,
    // tools are refused with stream; nothing to write
    toolName: () => "",
    toolArgs: () => "",
    close: () =>
      `data: {"choices":[{"finish_reason":${JSON.stringify(r.composed.finishReason)},"index":0,"delta":{}}]${tail},"usage":${JSON.stringify(usage(r))},"timings":${JSON.stringify(timings(r, live))}}\n\ndata: [DONE]\n\n`,
  };
}

/** The llama.cpp surface of a server. */
export function llamacppKind(live: SimLive): KindSurface {
  const o = live.o;
  const seed = o.port * 15485863 + live.startedAt;
  const pool = new HttpPool(o.httpThreads, live.http);
  const ok = (body: unknown) => () => jsonAnswer(body, 200, JSON_HEADERS);
  const modelsRoute = () => jsonAnswer(models(live), 200, JSON_HEADERS);
  return {
    kind: "llamacpp",
    jsonHeaders: JSON_HEADERS,
    sseHeaders: { "content-type": "text/event-stream", server: "llama.cpp" },
    routes: {
      "/health": ok({ status: "ok" }),
      "/v1/models": modelsRoute,
      "/models": modelsRoute,
      "/props": () => jsonAnswer(props(live), 200, JSON_HEADERS),
      "/metrics": () =>
        o.metrics
          ? new Response(metricsText(live), {
              headers: { ...PROM_HEADERS, "content-type": "text/plain; version=0.0.4", server: "llama.cpp", "process-start-time-unix": String(Math.floor(live.startedAt / 1000)) },
            })
          : llamaError(501, "This server does not support metrics endpoint. Start it with `--metrics`"),
    },
    gate(req, path) {
      // --api-key: every route but these public ones
      if (!o.apiKey || path === "/health" || path === "/models" || path === "/v1/models" || path === "/") return undefined;
      return req.headers.get("authorization") === `Bearer ${o.apiKey}` ? undefined : llamaError(401, "Invalid API Key");
    },
    refuse(r) {
      switch (r.why) {
        case "json":
          return llamaError(500, `[json.exception.parse_error.101] parse error at line 1, column 1: syntax error while parsing value - ${r.detail}`);
        case "schema":
          return llamaError(500, r.missing && r.param ? `[json.exception.out_of_range.403] key '${r.param}' not found` : r.message);
        case "size":
          return llamaError(413, `Request body is larger than ${r.max} bytes.`);
        case "route":
          // cpp-httplib answers an unrouted method and path alike
          return llamaError(404, "File Not Found");
        case "injected":
          return r.status === 500 ? llamaError(500, "Simulated internal server error.") : llamaError(429, "Simulated rate limit: try again shortly.");
        case "scripted":
          return llamaError(r.status, r.message);
        case "stopping":
        case "dropped":
          return llamaError(503, "The server is stopping.");
        case "gone":
          return llamaError(499, "Client closed the request.");
      }
    },
    screen(raw) {
      if (!isRecord(raw)) return undefined;
      const why = llamacppRefusal(raw, o);
      return why === undefined ? undefined : llamaError(500, why);
    },
    admit(body, promptTokens): Response | Admission {
      const model = body.model ?? DEFAULT_MODEL;
      let constraint = llamacppConstraint(body);
      let toolsOff = false;
      if (constraint?.type === "json_schema") {
        const bad = badPatternEscape(constraint.schema);
        if (bad) {
          logGrammarError(bad);
          constraint = undefined;
        }
      }
      if (body.tools && body.tools.length > 0) {
        const bad = badPatternEscape(body.tools.map((t) => t.function.parameters));
        if (bad) {
          logGrammarError(bad);
          toolsOff = true;
        }
      }
      let tokens = promptTokens;
      if (promptTokens >= o.contextTokens) {
        if (live.engine().running > 0) return body.stream ? streamedError(500, KV_FULL) : llamaError(500, KV_FULL);
        tokens = truncatedPrompt(promptTokens, o.contextTokens, extra(body, "n_keep"));
      }
      return { model, promptTokens: tokens, constraint, toolsOff };
    },
    replyId: (n) => `chatcmpl-${alnumId(seed, n, 32)}`,
    toolCallId: () => "",
    completion: (r) => completion(r, live),
    stream: (r) => stream(r, live),
    wrap: (h) => pool.wrap(h, () => llamaError(499, "Client closed the request.")),
  };
}

/** What the real server writes to stderr when a schema's grammar does not parse. */
function logGrammarError(rest: string): void {
  process.stderr.write(`parse: error parsing grammar: unknown escape at ${rest}"\n`);
}
