/**
 * OpenAI's API, which every kind speaks: where a server's own routes are
 * beside its base URL, how error statuses read in general, and the dialect
 * of hosted APIs (OpenAI, and those that copy it: Together, Fireworks,
 * OpenRouter, Groq...).
 *
 * Sources: OpenAI's API reference for chat completions (2025:
 * `max_completion_tokens`, with `max_tokens` deprecated and refused by the
 * o-series reasoning models; `response_format` `{type: "json_schema",
 * json_schema: {name, schema, strict}}`, strict mode wanting every object
 * closed and all its properties required; 400 `context_length_exceeded`
 * "This model's maximum context length is N tokens..."; 429 for rate
 * limits and `insufficient_quota`), its rate-limit guide
 * (`x-ratelimit-{limit,remaining,reset}-{requests,tokens}`, resets as
 * durations "1s", "6m0s", "20ms"), Together's (`x-ratelimit-limit`,
 * `-remaining`, `-reset`, tokens as `x-tokenlimit-limit|remaining`),
 * Fireworks' (`x-ratelimit-{limit,remaining}-tokens-{prompt,generated}`)
 * and OpenRouter's (`X-RateLimit-Reset` in epoch milliseconds).
 */
import { readFormat, strictCompatible } from "./schema.ts";
import type { Dialect, ErrorClass, RateLimitReport, ServerLoad } from "./types.ts";

/** The base URL without trailing slashes (`http://host:8000/v1`). */
export function apiBase(baseUrl: string): string {
  return baseUrl.replace(/\/+$/, "");
}

/**
 * Where a server's own routes (`/metrics`, `/props`, `/info`...) are: the
 * base URL without its `/v1`, which is its origin for the usual
 * `http://host:8000/v1` and keeps a reverse proxy's path prefix
 * (`http://host/llm/v1` -> `http://host/llm`).
 */
export function serverRoot(baseUrl: string): string {
  return apiBase(baseUrl).replace(/\/v1$/, "");
}

/** A kind's own words for the errors it answers. */
export interface ErrorWords {
  /** what it says of a prompt (plus completion cap) that does not fit its context */
  context: readonly RegExp[];
  /** what its 500s say when the request as sent can never work there (a missing server flag, a field it refuses) */
  config500?: readonly RegExp[];
  /** 4xx statuses that are the server failing, not the request */
  transient4xx?: readonly number[];
}

/** A 429 that will not pass by waiting: the account's quota or credit is spent. */
const QUOTA = /insufficient_quota|exceeded your current quota|billing|insufficient credits/i;
/** A 503 of a server that is full rather than down. */
const FULL = /overload|queue (is )?full|queue_full|too many (concurrent |pending )?requests|capacity|busy/i;

/**
 * The error classifier of a kind: 413 and the kind's context words are
 * "context"; 429 "overload" (unless a spent quota: "config"), and so is a
 * 503 that says the server is full; 408, other 5xx (a crash, a restart, a
 * model loading) "transient", except 500s in the kind's configuration
 * words; other 4xx "config".
 */
export function classifyWith(words: ErrorWords): (status: number, message: string) => ErrorClass {
  return (status, message) => {
    if (status === 413 || words.context.some((re) => re.test(message))) return "context";
    if (status === 429) return QUOTA.test(message) ? "config" : "overload";
    if (status === 503 && FULL.test(message)) return "overload";
    if (status === 408 || words.transient4xx?.includes(status)) return "transient";
    if (status === 500 && words.config500?.some((re) => re.test(message))) return "config";
    if (status >= 500) return "transient";
    return status >= 400 ? "config" : "transient";
  };
}

/** A load with nothing in it, for a kind that publishes none. */
export function noLoad(): ServerLoad {
  return { running: 0, waiting: 0, promptTokens: 0, generationTokens: 0, prefixQueries: 0, prefixHits: 0, missing: [] };
}

const UNIT_MS: Record<string, number> = { h: 3_600_000, m: 60_000, s: 1000, ms: 1, us: 0.001, µs: 0.001, ns: 0.000_001 };

/**
 * Milliseconds of a duration as OpenAI and Groq write their resets ("1s",
 * "6m0s", "20ms", "1h2m3.5s"), or of plain seconds ("2", "0.5");
 * undefined for anything else.
 */
export function parseDuration(text: string): number | undefined {
  const s = text.trim();
  if (/^\d+(\.\d+)?$/.test(s)) return Number(s) * 1000;
  if (!/^(\d+(\.\d+)?(h|ms|m|s|us|µs|ns))+$/.test(s)) return undefined;
  let total = 0;
  for (const m of s.matchAll(/(\d+(?:\.\d+)?)(h|ms|m|s|us|µs|ns)/g)) total += Number(m[1]) * (UNIT_MS[m[2] ?? ""] ?? 0);
  return total;
}

/**
 * Milliseconds until a reset header's time: a duration, plain seconds, an
 * epoch in milliseconds (OpenRouter) or seconds, or an RFC 3339 time.
 */
function resetIn(value: string | null, nowMs: number): number | undefined {
  if (value === null) return undefined;
  const s = value.trim();
  if (/^\d+(\.\d+)?$/.test(s)) {
    const n = Number(s);
    if (n > 1e12) return Math.max(0, n - nowMs);
    if (n > 1e9) return Math.max(0, n * 1000 - nowMs);
    return n * 1000;
  }
  const d = parseDuration(s);
  if (d !== undefined) return d;
  if (!/^\d{4}-\d{2}-\d{2}T/.test(s)) return undefined;
  const at = Date.parse(s);
  return Number.isNaN(at) ? undefined : Math.max(0, at - nowMs);
}

/**
 * The rate-limit state in an answer's `x-ratelimit-*` headers, in the
 * spellings of OpenAI (and Groq), Together, Fireworks and OpenRouter;
 * undefined when there is none. Fireworks counts prompt and generated
 * tokens apart: the tighter of its two budgets is the one reported.
 */
export function readRateLimitHeaders(h: Headers, nowMs: number): RateLimitReport | undefined {
  const num = (name: string): number | undefined => {
    const v = h.get(name)?.trim();
    if (v === undefined || v === "") return undefined;
    const n = Number(v);
    return Number.isFinite(n) ? n : undefined;
  };
  const r: RateLimitReport = {};
  const put = (key: keyof RateLimitReport, v: number | undefined) => {
    if (v !== undefined) r[key] = v;
  };
  put("limitRequests", num("x-ratelimit-limit-requests") ?? num("x-ratelimit-limit"));
  put("remainingRequests", num("x-ratelimit-remaining-requests") ?? num("x-ratelimit-remaining"));
  put("resetRequestsMs", resetIn(h.get("x-ratelimit-reset-requests"), nowMs) ?? resetIn(h.get("x-ratelimit-reset"), nowMs));
  let limitTokens = num("x-ratelimit-limit-tokens") ?? num("x-tokenlimit-limit");
  let remainingTokens = num("x-ratelimit-remaining-tokens") ?? num("x-tokenlimit-remaining");
  if (limitTokens === undefined && remainingTokens === undefined) {
    let tightest = Infinity;
    for (const part of ["prompt", "generated"]) {
      const limit = num(`x-ratelimit-limit-tokens-${part}`);
      const left = num(`x-ratelimit-remaining-tokens-${part}`);
      if (limit === undefined || left === undefined) continue;
      const share = limit > 0 ? left / limit : 0;
      if (share < tightest) {
        tightest = share;
        limitTokens = limit;
        remainingTokens = left;
      }
    }
  }
  put("limitTokens", limitTokens);
  put("remainingTokens", remainingTokens);
  put("resetTokensMs", resetIn(h.get("x-ratelimit-reset-tokens"), nowMs));
  return Object.keys(r).length > 0 ? r : undefined;
}

/** What hosted APIs say of a prompt too long for the model (OpenAI, Together, OpenRouter, Groq...). */
const HOSTED_CONTEXT = [
  /maximum context length/i,
  /context_length_exceeded/i,
  /longer than the model's context length/i,
  /exceeds the (model's )?context window/i,
  /prompt is too long/i,
  /reduce the length of the messages/i,
  // a 429 for one request larger than the whole per-minute token budget: waiting does not help
  /Request too large for/i,
];

/** The dialect of hosted APIs that copy OpenAI's. */
export const openai: Dialect = {
  kind: "openai",
  // hosted APIs publish no metrics: their load is read off their rate-limit headers
  metricsUrl: () => undefined,
  parseLoad: () => noLoad(),
  infoProbes: [],
  applyFormat(body, format) {
    const f = readFormat(format);
    if (f.type === "json_schema") {
      // strict mode refuses a schema that leaves an object open or a property optional: ask it only when it holds
      const strict = f.strict !== false && strictCompatible(f.schema);
      body.response_format = { type: "json_schema", json_schema: { name: f.name, schema: f.schema, strict } };
    } else if (f.type === "json_object") body.response_format = { type: "json_object" };
    else if (f.type === "other") body.response_format = f.format;
    // a regex has no field in OpenAI's API: the reply goes unconstrained and is checked by the caller
  },
  rewriteSchema: (schema) => schema,
  maxTokensField: "max_completion_tokens",
  toolsNeedDescription: false,
  classifyError: classifyWith({ context: HOSTED_CONTEXT }),
  readRateLimit: readRateLimitHeaders,
};
