import type { Logger } from "../log.ts";
import type { ErrorClass } from "./dialect/types.ts";
import { AttemptFailure, type Call, INTERRUPTED } from "./call.ts";
import type { Endpoint } from "./endpoint.ts";
import { formatBytes } from "../util/bytes.ts";
import { type Completion, ModelListSchema, describeNetworkError, parseCompletion, parseRetryAfter, serverMessage } from "./wire.ts";

/** The `fetch` the client calls; Bun's global one unless a test or proxy supplies another. */
export type FetchLike = (input: string, init: BunFetchRequestInit) => Promise<Response>;

/** How the client talks HTTP to its endpoints. */
export interface Transport {
  fetch: FetchLike;
  headers: Record<string, string>;
  /** deadline of one request */
  timeoutMs: number;
  /** longest gap between the bytes of an answer once it has begun */
  idleTimeoutMs?: number;
}

/** What one attempt may take: its deadline and the size of its answer. */
export interface AnswerLimits {
  deadlineMs: number;
  maxBytes: number;
  /** the request's max_tokens, named when an answer is cut off */
  maxTokens: number | undefined;
}

/** Bytes a token of `max_tokens` allows an answer, with JSON, escapes and the usage around it. */
const BYTES_PER_TOKEN = 16;
const MIN_ANSWER_BYTES = 1 << 20;

/**
 * An attempt's limits from the client's settings and the request's
 * max_tokens: the deadline is the answer allowance plus the tokens' time,
 * at most the total timeout; the size, 16 bytes a token (at least 1 MiB),
 * at most the byte limit.
 */
export function answerLimits(
  c: { timeoutMs: number; answerTimeoutMs: number; msPerToken: number; maxAnswerBytes: number },
  maxTokens: number | undefined,
): AnswerLimits {
  if (maxTokens === undefined) return { deadlineMs: c.timeoutMs, maxBytes: c.maxAnswerBytes, maxTokens };
  return {
    deadlineMs: Math.min(c.timeoutMs, Math.ceil(c.answerTimeoutMs + c.msPerToken * maxTokens)),
    maxBytes: Math.min(c.maxAnswerBytes, Math.max(MIN_ANSWER_BYTES, BYTES_PER_TOKEN * maxTokens)),
    maxTokens,
  };
}

const MODELS_TIMEOUT_MS = 10_000;

/** The headers of a request to `ep`: its own API key, when it has one, over the client's. */
export function headersFor(t: Transport, ep: Endpoint): Record<string, string> {
  return ep.authorization ? { ...t.headers, authorization: ep.authorization } : t.headers;
}

/**
 * One chat completion exchange with an endpoint: resolves with the
 * completion, or throws an AttemptFailure saying what went wrong (or
 * INTERRUPTED when the call was stopped). The answer is read as it comes:
 * past its deadline, after a gap of `idleTimeoutMs` once begun, or past its
 * size limit, the attempt is given up.
 */
export async function exchange(t: Transport, ep: Endpoint, body: string, call: Call, limits?: AnswerLimits): Promise<Completion> {
  if (call.stop) throw INTERRUPTED;
  const deadlineMs = limits?.deadlineMs ?? t.timeoutMs;
  const ctl = new AbortController();
  call.ctl = ctl;
  const timer = setTimeout(() => {
    call.timedOut = true;
    ctl.abort();
  }, deadlineMs);
  ep.requests++;
  let res: Response | undefined;
  const read = { bytes: 0, idle: false };
  let text: string;
  try {
    // Bun's own idle timer (5 min) would cut long generations; the deadline is ours
    res = await t.fetch(ep.chatUrl, { method: "POST", headers: headersFor(t, ep), body, signal: ctl.signal, timeout: false });
    text = await readAnswer(res, ctl, read, t.idleTimeoutMs, limits);
  } catch (err) {
    if (call.stop) throw INTERRUPTED;
    if (err instanceof AttemptFailure) throw err;
    if (read.idle) throw new AttemptFailure("timeout", undefined, `stalled: no byte for ${t.idleTimeoutMs} ms after ${read.bytes} bytes of the answer`, undefined);
    if (call.timedOut) {
      const how = res === undefined ? "with no answer" : `with the answer unfinished after ${read.bytes} bytes`;
      throw new AttemptFailure("timeout", undefined, `timed out after ${deadlineMs} ms ${how}`, undefined);
    }
    throw new AttemptFailure("network", undefined, describeNetworkError(err), undefined);
  } finally {
    clearTimeout(timer);
    call.ctl = null;
    call.timedOut = false;
  }
  const limitsSaid = ep.dialect?.readRateLimit?.(res.headers, Date.now());
  if (limitsSaid) ep.rateLimited(limitsSaid, performance.now());
  if (res.ok) {
    const parsed = parseCompletion(text);
    if (parsed.ok) return parsed.value;
    throw new AttemptFailure("nonsense", res.status, `answered ${parsed.problem}`, undefined);
  }
  const status = `${res.status} ${res.statusText}`.trim();
  const retryAfter = parseRetryAfter(res.headers.get("retry-after"));
  const words = serverMessage(text);
  const cls = ep.dialect ? ep.dialect.classifyError(res.status, words) : defaultClass(res.status);
  throw new AttemptFailure("status", res.status, words ? `answered ${status}: ${words}` : `answered ${status}`, retryAfter, cls);
}

const utf8 = new TextDecoder();

/**
 * An answer's body, read chunk by chunk: an idle timer (re-armed on each
 * chunk) and the size limit abort it. `read` tells the caller how far it got.
 */
async function readAnswer(
  res: Response,
  ctl: AbortController,
  read: { bytes: number; idle: boolean },
  idleMs: number | undefined,
  limits: AnswerLimits | undefined,
): Promise<string> {
  const max = limits?.maxBytes ?? Infinity;
  const declared = Number(res.headers.get("content-length") ?? Number.NaN);
  if (declared > max) {
    ctl.abort();
    throw cutOff(declared, max, limits);
  }
  const body = res.body;
  if (body === null) return "";
  const reader = body.getReader();
  const idle = idleMs === undefined ? undefined : setTimeout(() => {
    read.idle = true;
    ctl.abort();
  }, idleMs);
  try {
    let first: Uint8Array | undefined;
    let more: Uint8Array[] | undefined;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      read.bytes += value.byteLength;
      if (read.bytes > max) {
        ctl.abort();
        throw cutOff(read.bytes, max, limits);
      }
      if (first === undefined) first = value;
      else (more ??= [first]).push(value);
      idle?.refresh();
    }
    if (first === undefined) return "";
    return utf8.decode(more === undefined ? first : Buffer.concat(more));
  } finally {
    if (idle !== undefined) clearTimeout(idle);
  }
}

function cutOff(bytes: number, max: number, limits: AnswerLimits | undefined): AttemptFailure {
  const tokens = limits?.maxTokens === undefined ? "" : ` (max_tokens ${limits.maxTokens})`;
  return new AttemptFailure("nonsense", undefined, `answered over ${formatBytes(max)}${tokens}: cut off at ${formatBytes(bytes)}`, undefined);
}


/** What an error status means from a server of unknown kind. */
function defaultClass(status: number): ErrorClass {
  if (status === 429) return "overload";
  if (status === 413) return "context";
  if (status === 408 || status >= 500) return "transient";
  return "config";
}

/**
 * Ask an endpoint which models it serves (GET /models). An endpoint that
 * cannot say is sent any model, with a warning.
 */
export async function loadModelList(t: Transport, ep: Endpoint, closing: AbortSignal, log: Logger): Promise<void> {
  try {
    const signal = AbortSignal.any([closing, AbortSignal.timeout(Math.min(MODELS_TIMEOUT_MS, t.timeoutMs))]);
    const res = await t.fetch(ep.modelsUrl, { headers: headersFor(t, ep), signal });
    const text = await res.text();
    if (!res.ok) throw new Error(`answered ${res.status} ${res.statusText}`.trim());
    const parsed = ModelListSchema.safeParse(JSON.parse(text));
    if (!parsed.success || parsed.data.data.length === 0) throw new Error("answered no model list");
    ep.setModels(parsed.data.data.map((m) => m.id));
  } catch (err) {
    ep.modelsKnown = true;
    log.warn({ endpoint: ep.url, reason: describeNetworkError(err) }, "LLM endpoint models unknown; sending it any model");
  }
}
