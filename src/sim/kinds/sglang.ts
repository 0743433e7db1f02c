import { LATENCY_BUCKETS, PROM_HEADERS, PromText, esc, simSeries } from "../metrics.ts";

import type { ChatBody } from "../request.ts";

import type { OutputConstraint } from "../skills/types.ts";

import { extra, jsonAnswer, maxTokens, openaiResponseFormat, pydanticInt } from "./common.ts";
import { hexId, hexIds } from "./ids.ts";

import { type OpenAIVariant, openaiCompletion, openaiStream } from "./openai-shape.ts";

import type { Admission, KindSurface, ReplyInfo, SimLive } from "./types.ts";
import { isRecord } from "../../util/record.ts";


/**
 * SGLang's OpenAI-compatible server, as of v0.5.4 (Oct 2025; read in
 * python/sglang/srt/entrypoints/{http_server.py, openai/serving_chat.py,
 * openai/protocol.py}, managers/tokenizer_manager.py, metrics/collector.py):
 * - errors `{"object": "error", message, type, param, code}`;
 * - context (without --allow-auto-truncate): `The input (T tokens) is longer
 *   than the model's context length (N tokens).`, and `Requested token count
 *   exceeds the model's maximum context length of N tokens. ...` when
 *   input + max_tokens reaches it;
 * - the `model` of a request is not checked: answers echo it ("default" when
 *   absent);
 * - structured output from `response_format` (json_schema, json_object) and
 *   the top-level `regex` (its `ebnf` grammars are beyond the sim: unconstrained);
 * - reasoning (with --reasoning-parser) in `reasoning_content`;
 * - tool call ids `call_<24 hex>`; ids of answers a bare uuid hex;
 * - /get_server_info (server args plus scheduler figures), /health,
 *   /metrics with `sglang:*` gauges labelled by engine type and ranks;
 * - `priority` (optional int; read in managers/scheduler.py
 *   `_set_or_validate_priority`, managers/schedule_policy.py): ignored
 *   unless --enable-priority-scheduling (the sim's "priority" policy), which
 *   serves HIGHER values first (--schedule-low-priority-values-first, not
 *   modelled, flips it), ties by queue entry time, a request without one
 *   last; with every slot busy a waiting request preempts the lowest running
 *   one when it outranks it by more than
 *   --priority-scheduling-preemption-threshold (10), and the preempted one
 *   queues again as a new entry, keeping its tokens.
 */

const VERSION = "0.5.4";
const JSON_HEADERS = { "content-type": "application/json" };
const ERROR_TYPES: Record<number, string> = {
  400: "BadRequestError",
  404: "NotFoundError",
  413: "BadRequestError",
  429: "RateLimitError",
  499: "BadRequestError",
  500: "InternalServerError",
  503: "ServiceUnavailableError",
};
const EOS_TOKEN_ID = 151645;
/** --priority-scheduling-preemption-threshold's default */
const PREEMPTION_THRESHOLD = 10;
/** the priority SGLang gives a request without one under priority scheduling: -sys.maxsize - 1 */
const NO_PRIORITY = -(2 ** 63);

const VARIANT: OpenAIVariant = {
  messageExtra: {},
  reasoningFields: ["reasoning_content"],
  choiceExtra: (r) => `,"matched_stop":${JSON.stringify(matchedStop(r))}`,
  choiceFields: (r) => ({ matched_stop: matchedStop(r) }),
  deltaChoiceExtra: `,"matched_stop":null`,
  bodyExtra: { metadata: { weight_version: "default" } },
  chunkExtra: "",
  usage: (r) => ({
    prompt_tokens: r.promptTokens,
    total_tokens: r.promptTokens + r.composed.tokens,
    completion_tokens: r.composed.tokens,
    prompt_tokens_details: null,
  }),
  openDelta: `{"role":"assistant","content":""}`,
  nullUsage: "always",
};

/** SGLang's matched_stop: the stop string hit, the EOS token id, or null when cut by length. */
function matchedStop(r: ReplyInfo): string | number | null {
  const c = r.composed;
  if (c.stopSequence !== null) return c.stopSequence;
  return c.finishReason === "length" ? null : EOS_TOKEN_ID;
}

/** An error answer in SGLang's shape. */
function sglangError(status: number, message: string, headers?: Record<string, string>): Response {
  const body = { object: "error", message, type: ERROR_TYPES[status] ?? "BadRequestError", param: null, code: status };
  return jsonAnswer(body, status, headers ? { ...JSON_HEADERS, ...headers } : JSON_HEADERS);
}

function constraintOf(body: ChatBody): OutputConstraint | undefined {
  const rf = openaiResponseFormat(body);
  if (rf) return rf;
  const regex = extra(body, "regex");
  return typeof regex === "string" ? { type: "regex", pattern: regex } : undefined;
}

function metricsText(live: SimLive, lastGen: { t: number; tokens: number }): string {
  const o = live.o;
  const e = live.engine();
  const m = `model_name="${esc(o.model)}"`;
  // the scheduler's labels, in the order its multiprocess collector writes them
  const sched = `engine_type="unified",${m},pp_rank="0",tp_rank="0"`;
  const now = performance.now();
  const dt = (now - lastGen.t) / 1000;
  const throughput = dt > 0 ? (e.generationTokens - lastGen.tokens) / dt : 0;
  lastGen.t = now;
  lastGen.tokens = e.generationTokens;
  const p = new PromText();
  p.one("sglang:num_running_reqs", "gauge", "The number of running requests.", e.running, sched);
  p.one("sglang:num_used_tokens", "gauge", "The number of used tokens.", Math.round((e.running / o.slots) * maxTotalTokens(o)), sched);
  p.one("sglang:token_usage", "gauge", "The token usage.", e.running / o.slots, sched);
  p.one("sglang:gen_throughput", "gauge", "The generation throughput (token/s).", throughput, sched);
  p.one("sglang:num_queue_reqs", "gauge", "The number of requests in the waiting queue.", e.waiting, sched);
  p.one("sglang:cache_hit_rate", "gauge", "The prefix cache hit rate.", live.prefix.queries ? live.prefix.hits / live.prefix.queries : 0, sched);
  p.one("sglang:prompt_tokens_total", "counter", "Number of prefill tokens processed.", e.promptTokens, m);
  p.one("sglang:generation_tokens_total", "counter", "Number of generation tokens processed.", e.generationTokens, m);
  p.one("sglang:num_requests_total", "counter", "Number of requests processed.", live.server.latencyCount, m);
  const h = "sglang:e2e_request_latency_seconds";
  p.head(h, "histogram", "Histogram of End-to-end request latency in seconds");
  const s = live.server;
  p.line(`${h}_sum{${m}} ${s.latencySum}`);
  let cum = 0;
  for (let i = 0; i < LATENCY_BUCKETS.length; i++) {
    cum += s.latencyBuckets[i]!;
    p.line(`${h}_bucket{le="${LATENCY_BUCKETS[i]}",${m}} ${cum}`);
  }
  p.line(`${h}_bucket{le="+Inf",${m}} ${s.latencyCount}`).line(`${h}_count{${m}} ${s.latencyCount}`);
  if (o.simMetrics) simSeries(p, live);
  return p.text();
}

/** The KV pool the scheduler reports: every slot's full context. */
function maxTotalTokens(o: SimLive["o"]): number {
  return o.slots * o.contextTokens;
}

function serverInfo(live: SimLive): Record<string, unknown> {
  const o = live.o;
  const e = live.engine();
  return {
    model_path: o.model,
    tokenizer_path: o.model,
    tokenizer_mode: "auto",
    host: o.host,
    port: live.port,
    served_model_name: o.model,
    context_length: o.contextTokens,
    max_running_requests: o.slots,
    max_total_tokens: null,
    chunked_prefill_size: 8192,
    max_prefill_tokens: 16384,
    schedule_policy: "fcfs",
    enable_priority_scheduling: o.schedulingPolicy === "priority",
    abort_on_priority_when_disabled: false,
    schedule_low_priority_values_first: false,
    priority_scheduling_preemption_threshold: PREEMPTION_THRESHOLD,
    schedule_conservativeness: 1.0,
    mem_fraction_static: 0.88,
    tp_size: 1,
    dp_size: 1,
    pp_size: 1,
    stream_interval: 1,
    api_key: o.apiKey ?? null,
    reasoning_parser: o.reasoning ? "deepseek-r1" : null,
    tool_call_parser: "qwen25",
    allow_auto_truncate: false,
    enable_metrics: true,
    max_total_num_tokens: maxTotalTokens(o),
    max_req_input_len: Math.min(o.contextTokens - 1, maxTotalTokens(o) - 1),
    internal_states: [
      {
        last_gen_throughput: 0,
        effective_max_running_requests_per_dp: o.slots,
        num_running_reqs: e.running,
        num_queue_reqs: e.waiting,
      },
    ],
    version: VERSION,
  };
}

/** The SGLang surface of a server. */
export function sglangKind(live: SimLive): KindSurface {
  const o = live.o;
  const seed = o.port * 104729 + live.startedAt;
  const lastGen = { t: performance.now(), tokens: 0 };
  const info = () => jsonAnswer(serverInfo(live), 200, JSON_HEADERS);
  const ok = () => new Response(null, { status: 200 });
  const byPriority = o.schedulingPolicy === "priority";
  return {
    kind: "sglang",
    // the engine serves lower keys first: the key is -priority, so the gap is the same
    ...(byPriority ? { preemptGap: PREEMPTION_THRESHOLD } : {}),
    jsonHeaders: JSON_HEADERS,
    sseHeaders: { "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache" },
    routes: {
      "/v1/models": () =>
        jsonAnswer(
          {
            object: "list",
            data: [{ id: o.model, object: "model", created: Math.floor(live.startedAt / 1000), owned_by: "sglang", root: o.model, parent: null, max_model_len: o.contextTokens }],
          },
          200,
          JSON_HEADERS,
        ),
      "/get_server_info": info,
      "/server_info": info,
      "/get_model_info": () =>
        jsonAnswer({ model_path: o.model, tokenizer_path: o.model, is_generation: true, preferred_sampling_params: null, weight_version: "default" }, 200, JSON_HEADERS),
      "/health": ok,
      "/health_generate": ok,
      "/metrics": () => new Response(metricsText(live, lastGen), { headers: PROM_HEADERS }),
    },
    gate(req, path) {
      // SGLang's --api-key guards every route but the health checks
      if (!o.apiKey || path.startsWith("/health") || req.headers.get("authorization") === `Bearer ${o.apiKey}`) return undefined;
      return jsonAnswer({ error: "Unauthorized" }, 401, JSON_HEADERS);
    },
    refuse(r) {
      switch (r.why) {
        case "json":
          return sglangError(400, `Invalid JSON body: ${r.detail}`);
        case "schema":
          return sglangError(400, r.message);
        case "size":
          return sglangError(413, `Request body is larger than ${r.max} bytes.`);
        case "route":
          return r.known ? jsonAnswer({ detail: "Method Not Allowed" }, 405, JSON_HEADERS) : jsonAnswer({ detail: "Not Found" }, 404, JSON_HEADERS);
        case "injected":
          return r.status === 500 ? sglangError(500, "Simulated internal server error.") : sglangError(429, "Simulated rate limit: try again shortly.", { "retry-after": "1" });
        case "scripted":
          return sglangError(r.status, r.message);
        case "stopping":
          return sglangError(503, "The server is stopping.");
        case "dropped":
          return sglangError(503, "The server stopped before answering.");
        case "gone":
          return sglangError(499, "Client closed the request.");
      }
    },
    screen(raw) {
      if (!isRecord(raw)) return undefined;
      if (raw.priority != null) {
        const p = pydanticInt(raw.priority);
        if ("error" in p) return sglangError(400, `priority: ${p.error}`);
      }
      if (!isRecord(raw.response_format)) return undefined;
      const t = raw.response_format.type;
      if (typeof t === "string" && !["text", "json_object", "json_schema", "structural_tag"].includes(t)) {
        return sglangError(400, `response_format.type: Input should be 'text', 'json_object' or 'json_schema'`);
      }
      return undefined;
    },
    admit(body, promptTokens): Response | Admission {
      const n = o.contextTokens;
      if (promptTokens >= n) return sglangError(400, `The input (${promptTokens} tokens) is longer than the model's context length (${n} tokens).`);
      const m = maxTokens(body);
      if (m !== undefined && promptTokens + m >= n) {
        return sglangError(
          400,
          `Requested token count exceeds the model's maximum context length of ${n} tokens. You requested a total of ${promptTokens + m} tokens: ${promptTokens} tokens from the input messages and ${m} tokens for the completion. Please reduce the number of tokens in the input messages or the completion to fit within the limit.`,
        );
      }
      const adm: Admission = { model: body.model ?? "default", promptTokens, constraint: constraintOf(body) };
      if (byPriority) {
        const given = extra(body, "priority");
        const p = given == null ? undefined : pydanticInt(given);
        adm.priority = -(p && "value" in p ? p.value : NO_PRIORITY);
      }
      return adm;
    },
    replyId: hexIds(seed),
    toolCallId: (hash) => `call_${hexId(hash, 2, 24)}`,
    completion: (r) => openaiCompletion(VARIANT, r, null),
    stream: (r) => openaiStream(VARIANT, r),
  };
}
