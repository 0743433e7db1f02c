/**
 * The dialects of the server kinds matrixd speaks to, and finding out an
 * endpoint's kind. Names are those of:
 * - vLLM v0.6–v0.11 (`vllm:num_requests_running|waiting`,
 *   `vllm:gpu_cache_usage_perc` before V1, `vllm:kv_cache_usage_perc` since;
 *   structured output as `response_format` json_schema, honoured since v0.5,
 *   plus `guided_json`/`guided_regex` for the versions before
 *   `structured_outputs`);
 * - SGLang v0.4 (`sglang:num_running_reqs`, `sglang:num_queue_reqs`,
 *   `sglang:token_usage`, `/get_server_info` `max_running_requests`);
 * - llama.cpp b4748 (`llamacpp:requests_processing|deferred`,
 *   `llamacpp:kv_cache_usage_ratio`, `/props` `total_slots` and
 *   `default_generation_settings.n_ctx`; top-level `json_schema`), checked
 *   against its captured answers;
 * - TGI v2–v3 (`tgi_queue_size`, `tgi_batch_current_size`, `/info`
 *   `max_concurrent_requests`, `max_total_tokens`; `response_format`
 *   `{type: "json_object", value}`);
 * - OpenAI's API for hosted ones (`x-ratelimit-*` headers,
 *   `max_completion_tokens`, `response_format` json_schema with `strict`).
 */
import { z } from "zod";
import { parsePrometheus } from "../../services/prom.ts";
import { rewriteForLlamaCpp } from "./pattern.ts";
import type { Dialect, ErrorClass, InfoProbe, RateLimitReport, ServerInfo, ServerKind, ServerLoad } from "./types.ts";

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function origin(baseUrl: string): string {
  return new URL(baseUrl).origin;
}

/** A load from metric names; `missing` names the running/waiting gauges that were absent. */
function loadOf(text: string, names: { running: string[]; waiting: string[]; cache: string[]; prompt: string[]; generation: string[]; prefixQueries?: string[]; prefixHits?: string[] }): ServerLoad {
  const m = parsePrometheus(text);
  const first = (keys: string[] | undefined) => {
    for (const k of keys ?? []) {
      const v = m.get(k);
      if (v !== undefined) return v;
    }
    return undefined;
  };
  const missing: string[] = [];
  const running = first(names.running);
  const waiting = first(names.waiting);
  if (running === undefined) missing.push(names.running.join(" or "));
  if (waiting === undefined) missing.push(names.waiting.join(" or "));
  const load: ServerLoad = {
    running: running ?? 0,
    waiting: waiting ?? 0,
    promptTokens: first(names.prompt) ?? 0,
    generationTokens: first(names.generation) ?? 0,
    prefixQueries: first(names.prefixQueries) ?? 0,
    prefixHits: first(names.prefixHits) ?? 0,
    missing,
  };
  const cache = first(names.cache);
  if (cache !== undefined) load.cacheUsage = cache;
  // the simulated server says its slots; real servers say them on their info routes
  const slots = m.get("sim:slots");
  if (slots !== undefined && slots > 0) load.slots = slots;
  return load;
}

const CONTEXT_WORDS = /context length|context size|maximum context|too big compared to KV|exceeds the available context|too long|must be <=|max_total_tokens|context_length_exceeded|prompt is too long/i;
const CONFIG_500_WORDS = /--jinja|Failed to parse tools|Unsupported param|not supported|does not support|Invalid|must be|unknown (field|param)|grammar/i;

function classify(status: number, message: string): ErrorClass {
  if (status === 413) return "context";
  if (CONTEXT_WORDS.test(message) && (status === 400 || status === 422 || status === 500)) return "context";
  if (status === 429) return /insufficient_quota|quota/i.test(message) ? "config" : "overload";
  if (status === 503 && /queue|overload|busy|capacity/i.test(message)) return "overload";
  if (status === 408 || status >= 502) return "transient";
  if (status === 500) return CONFIG_500_WORDS.test(message) ? "config" : "transient";
  if (status >= 400) return "config";
  return "transient";
}

/** The JSON Schema of an OpenAI response format, when it has one. */
function schemaOf(format: Record<string, unknown>): Record<string, unknown> | undefined {
  const js = format.json_schema;
  if (format.type === "json_schema" && isRecord(js) && isRecord(js.schema)) return js.schema;
  if (isRecord(format.schema)) return format.schema;
  return undefined;
}

function regexOf(format: Record<string, unknown>): string | undefined {
  return format.type === "regex" && typeof format.pattern === "string" ? format.pattern : undefined;
}

function jsonRoute(path: string, read: (json: unknown) => ServerInfo, onBase = false): InfoProbe {
  return { url: (base) => (onBase ? `${base}${path}` : `${origin(base)}${path}`), read };
}

const num = z.number().positive();
const PropsSchema = z.looseObject({
  total_slots: num.optional(),
  default_generation_settings: z.looseObject({ n_ctx: num.optional() }).optional(),
  build_info: z.string().optional(),
});
const SglangInfoSchema = z.looseObject({
  max_running_requests: num.nullish(),
  context_length: num.nullish(),
  version: z.string().optional(),
});
const TgiInfoSchema = z.looseObject({
  max_concurrent_requests: num.optional(),
  max_total_tokens: num.optional(),
  version: z.string().optional(),
});
const VllmModelsSchema = z.looseObject({ data: z.array(z.looseObject({ max_model_len: num.optional() })).min(1) });

const vllm: Dialect = {
  kind: "vllm",
  metricsUrl: (base) => `${origin(base)}/metrics`,
  parseLoad: (text) =>
    loadOf(text, {
      running: ["vllm:num_requests_running"],
      waiting: ["vllm:num_requests_waiting"],
      cache: ["vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"],
      prompt: ["vllm:prompt_tokens_total"],
      generation: ["vllm:generation_tokens_total"],
      prefixQueries: ["vllm:prefix_cache_queries_total", "vllm:gpu_prefix_cache_queries_total"],
      prefixHits: ["vllm:prefix_cache_hits_total", "vllm:gpu_prefix_cache_hits_total"],
    }),
  infoProbes: [
    jsonRoute(
      "/models",
      (json) => {
        const p = VllmModelsSchema.safeParse(json);
        const len = p.success ? p.data.data[0]?.max_model_len : undefined;
        return len ? { contextTokens: len } : {};
      },
      true,
    ),
  ],
  applyFormat(body, format) {
    const schema = schemaOf(format);
    const regex = regexOf(format);
    if (regex !== undefined) {
      // versions before structured_outputs read guided_regex; later ones read both
      body.guided_regex = regex;
      body.structured_outputs = { regex };
    } else if (schema) {
      body.response_format = { type: "json_schema", json_schema: { name: jsonName(format), schema } };
      body.guided_json = schema;
    } else {
      body.response_format = format;
    }
  },
  rewriteSchema: (s) => s,
  maxTokensField: "max_tokens",
  toolsNeedDescription: false,
  classifyError: classify,
};

function jsonName(format: Record<string, unknown>): string {
  const js = format.json_schema;
  return isRecord(js) && typeof js.name === "string" ? js.name : "reply";
}

const sglang: Dialect = {
  kind: "sglang",
  metricsUrl: (base) => `${origin(base)}/metrics`,
  parseLoad: (text) =>
    loadOf(text, {
      running: ["sglang:num_running_reqs"],
      waiting: ["sglang:num_queue_reqs"],
      cache: ["sglang:token_usage"],
      prompt: ["sglang:prompt_tokens_total"],
      generation: ["sglang:generation_tokens_total"],
    }),
  infoProbes: [
    jsonRoute("/get_server_info", (json) => {
      const p = SglangInfoSchema.safeParse(json);
      if (!p.success) return {};
      const info: ServerInfo = {};
      if (p.data.max_running_requests) info.slots = p.data.max_running_requests;
      if (p.data.context_length) info.contextTokens = p.data.context_length;
      if (p.data.version) info.version = p.data.version;
      return info;
    }),
  ],
  applyFormat(body, format) {
    const schema = schemaOf(format);
    const regex = regexOf(format);
    if (regex !== undefined) body.regex = regex;
    else if (schema) body.response_format = { type: "json_schema", json_schema: { name: jsonName(format), schema } };
    else body.response_format = format;
  },
  rewriteSchema: (s) => s,
  maxTokensField: "max_tokens",
  toolsNeedDescription: false,
  classifyError: classify,
};

const llamacpp: Dialect = {
  kind: "llamacpp",
  metricsUrl: (base) => `${origin(base)}/metrics`,
  parseLoad: (text) =>
    loadOf(text, {
      running: ["llamacpp:requests_processing"],
      waiting: ["llamacpp:requests_deferred"],
      cache: ["llamacpp:kv_cache_usage_ratio"],
      prompt: ["llamacpp:prompt_tokens_total"],
      generation: ["llamacpp:tokens_predicted_total"],
    }),
  infoProbes: [
    jsonRoute("/props", (json) => {
      const p = PropsSchema.safeParse(json);
      if (!p.success) return {};
      const info: ServerInfo = {};
      if (p.data.total_slots) info.slots = p.data.total_slots;
      const ctx = p.data.default_generation_settings?.n_ctx;
      if (ctx) info.contextTokens = ctx;
      if (p.data.build_info) info.version = p.data.build_info;
      return info;
    }),
  ],
  applyFormat(body, format) {
    // b4748 ignores response_format json_schema and does not know guided_json: a top-level json_schema it honours
    const schema = schemaOf(format);
    if (schema) body.json_schema = schema;
    else if (format.type === "json_object") body.response_format = { type: "json_object" };
    // no regex field: such a request goes unconstrained
  },
  rewriteSchema: rewriteForLlamaCpp,
  maxTokensField: "max_tokens",
  toolsNeedDescription: true,
  classifyError: classify,
};

const tgi: Dialect = {
  kind: "tgi",
  metricsUrl: (base) => `${origin(base)}/metrics`,
  parseLoad: (text) =>
    loadOf(text, {
      running: ["tgi_batch_current_size"],
      waiting: ["tgi_queue_size"],
      cache: [],
      prompt: ["tgi_request_input_length_sum"],
      generation: ["tgi_request_generated_tokens_sum"],
    }),
  infoProbes: [
    jsonRoute("/info", (json) => {
      const p = TgiInfoSchema.safeParse(json);
      if (!p.success) return {};
      const info: ServerInfo = {};
      if (p.data.max_concurrent_requests) info.slots = p.data.max_concurrent_requests;
      if (p.data.max_total_tokens) info.contextTokens = p.data.max_total_tokens;
      if (p.data.version) info.version = p.data.version;
      return info;
    }),
  ],
  applyFormat(body, format) {
    const schema = schemaOf(format);
    const regex = regexOf(format);
    if (regex !== undefined) body.response_format = { type: "regex", value: regex };
    else if (schema) body.response_format = { type: "json_object", value: schema };
    else body.response_format = format;
  },
  rewriteSchema: (s) => s,
  maxTokensField: "max_tokens",
  toolsNeedDescription: false,
  classifyError: classify,
};

const openai: Dialect = {
  kind: "openai",
  metricsUrl: () => undefined,
  parseLoad: (text) => loadOf(text, { running: [], waiting: [], cache: [], prompt: [], generation: [] }),
  infoProbes: [],
  applyFormat(body, format) {
    const schema = schemaOf(format);
    if (schema) body.response_format = { type: "json_schema", json_schema: { name: jsonName(format), schema, strict: strictable(schema) } };
    else if (regexOf(format) === undefined) body.response_format = format;
  },
  rewriteSchema: (s) => s,
  maxTokensField: "max_completion_tokens",
  toolsNeedDescription: false,
  classifyError: classify,
  readRateLimit: readRateLimitHeaders,
};

/** OpenAI's strict mode takes only objects that close their properties and require them all. */
function strictable(schema: unknown): boolean {
  if (!isRecord(schema)) return true;
  if (schema.type === "object" || isRecord(schema.properties)) {
    const props = isRecord(schema.properties) ? Object.keys(schema.properties) : [];
    const required = Array.isArray(schema.required) ? schema.required : [];
    if (schema.additionalProperties !== false || props.some((p) => !required.includes(p))) return false;
  }
  for (const v of Object.values(schema)) {
    if (isRecord(v) && !Object.values(v).every((x) => strictable(x))) return false;
    if (Array.isArray(v) && !v.every((x) => strictable(x))) return false;
  }
  return true;
}

/** "1s", "6m0s", "20ms", "1h2m3.5s" (OpenAI), or plain seconds; ms. */
export function parseDuration(text: string): number | undefined {
  const s = text.trim();
  if (/^\d+(\.\d+)?$/.test(s)) return Number(s) * 1000;
  const re = /(\d+(?:\.\d+)?)(ms|h|m|s)/g;
  let total = 0;
  let matched = "";
  for (let m = re.exec(s); m; m = re.exec(s)) {
    const n = Number(m[1]);
    total += m[2] === "h" ? n * 3_600_000 : m[2] === "m" ? n * 60_000 : m[2] === "s" ? n * 1000 : n;
    matched += m[0];
  }
  return matched === s && s !== "" ? total : undefined;
}

/** `x-ratelimit-*` headers (OpenAI, Together, Fireworks; OpenRouter's reset is epoch ms). */
export function readRateLimitHeaders(h: Headers, nowMs: number): RateLimitReport | undefined {
  const n = (name: string) => {
    const v = h.get(name);
    const x = v === null ? NaN : Number(v);
    return Number.isFinite(x) ? x : undefined;
  };
  const reset = (name: string) => {
    const v = h.get(name);
    if (v === null) return undefined;
    const x = Number(v);
    // an epoch in ms rather than a duration
    if (Number.isFinite(x) && x > 1e12) return Math.max(0, x - nowMs);
    return parseDuration(v);
  };
  const r: RateLimitReport = {};
  const set = <K extends keyof RateLimitReport>(k: K, v: number | undefined) => {
    if (v !== undefined) r[k] = v;
  };
  set("limitRequests", n("x-ratelimit-limit-requests") ?? n("x-ratelimit-limit"));
  set("remainingRequests", n("x-ratelimit-remaining-requests") ?? n("x-ratelimit-remaining"));
  set("resetRequestsMs", reset("x-ratelimit-reset-requests") ?? reset("x-ratelimit-reset"));
  set("limitTokens", n("x-ratelimit-limit-tokens"));
  set("remainingTokens", n("x-ratelimit-remaining-tokens"));
  set("resetTokensMs", reset("x-ratelimit-reset-tokens"));
  return Object.keys(r).length > 0 ? r : undefined;
}

const DIALECTS: Record<ServerKind, Dialect> = { vllm, sglang, llamacpp, tgi, openai };

/** The dialect of a server kind. */
export function dialectFor(kind: ServerKind): Dialect {
  return DIALECTS[kind];
}

/** What was learned of an endpoint by asking it. */
export interface ProbeResult {
  kind: ServerKind;
  /** the evidence, for the log */
  why: string;
  info: ServerInfo;
  models?: string[];
  /** whether anything answered at all (a server not up yet tells nothing) */
  answered: boolean;
}

const ModelsSchema = z.looseObject({ data: z.array(z.looseObject({ id: z.string().min(1), owned_by: z.string().optional() })) });

/**
 * Find out an endpoint's kind by asking it (each GET with a short timeout,
 * never throwing): `/v1/models` `owned_by`, then the info routes only one
 * kind has, then metric name prefixes. A loopback server with no evidence
 * is taken for vLLM; a remote one for a hosted API.
 */
export async function probeKind(
  baseUrl: string,
  opts: { fetch?: (url: string, init: RequestInit) => Promise<Response>; headers?: Record<string, string>; signal?: AbortSignal; timeoutMs?: number } = {},
): Promise<ProbeResult> {
  const f = opts.fetch ?? fetch;
  let answered = false;
  const get = async (url: string): Promise<{ status: number; text: string } | undefined> => {
    try {
      const signals = [AbortSignal.timeout(opts.timeoutMs ?? 5_000), ...(opts.signal ? [opts.signal] : [])];
      const res = await f(url, { headers: opts.headers ?? {}, signal: AbortSignal.any(signals) });
      const text = await res.text();
      answered = true;
      return { status: res.status, text };
    } catch {
      return undefined;
    }
  };
  const parse = (r: { status: number; text: string } | undefined): unknown => {
    if (!r || r.status < 200 || r.status >= 300) return undefined;
    try {
      return JSON.parse(r.text);
    } catch {
      return undefined;
    }
  };
  const root = origin(baseUrl);
  const [models, props, sgl, info, metrics] = await Promise.all([
    get(`${baseUrl}/models`),
    get(`${root}/props`),
    get(`${root}/get_server_info`),
    get(`${root}/info`),
    get(`${root}/metrics`),
  ]);
  const m = ModelsSchema.safeParse(parse(models));
  const modelIds = m.success ? m.data.data.map((d) => d.id) : undefined;
  const owner = m.success ? m.data.data[0]?.owned_by : undefined;
  const propsJson = PropsSchema.safeParse(parse(props));
  const sglJson = SglangInfoSchema.safeParse(parse(sgl));
  const tgiJson = z.looseObject({ model_id: z.string() }).safeParse(parse(info));
  const metricsText = metrics && metrics.status === 200 ? metrics.text : "";
  const found = (kind: ServerKind, why: string, raw: unknown): ProbeResult => {
    const probe = dialectFor(kind).infoProbes[0];
    const learned = probe && raw !== undefined ? probe.read(raw) : {};
    return { kind, why, info: learned, ...(modelIds ? { models: modelIds } : {}), answered };
  };
  if (owner === "llamacpp" || (propsJson.success && propsJson.data.total_slots)) return found("llamacpp", owner === "llamacpp" ? "/v1/models owned_by llamacpp" : "/props total_slots", parse(props));
  if (owner === "sglang" || (sglJson.success && parse(sgl) !== undefined && sglJson.data.max_running_requests)) return found("sglang", owner === "sglang" ? "/v1/models owned_by sglang" : "/get_server_info", parse(sgl));
  if (owner === "vllm") return found("vllm", "/v1/models owned_by vllm", parse(models));
  if (tgiJson.success) return found("tgi", "/info model_id", parse(info));
  if (metricsText.includes("vllm:")) return found("vllm", "vllm: metric names", parse(models));
  if (metricsText.includes("sglang:")) return found("sglang", "sglang: metric names", parse(sgl));
  if (metricsText.includes("llamacpp:")) return found("llamacpp", "llamacpp: metric names", parse(props));
  if (metricsText.includes("tgi_")) return found("tgi", "tgi_ metric names", parse(info));
  const host = new URL(baseUrl).hostname;
  const local = host === "localhost" || host === "::1" || host === "[::1]" || /^127\./.test(host);
  if (!local) return found("openai", "no server metrics or info routes: a hosted API", undefined);
  return found("vllm", "no kind-specific evidence: spoken to as vLLM", parse(models));
}
