import type { Logger } from "../log.ts";
import type { ErrorClass } from "./dialect/types.ts";
import { AttemptFailure, type Call, INTERRUPTED } from "./call.ts";
import type { Endpoint } from "./endpoint.ts";
import { type Completion, ModelListSchema, describeNetworkError, parseCompletion, parseRetryAfter, serverMessage } from "./wire.ts";

/** The `fetch` the client calls; Bun's global one unless a test or proxy supplies another. */
export type FetchLike = (input: string, init: BunFetchRequestInit) => Promise<Response>;

/** How the client talks HTTP to its endpoints. */
export interface Transport {
  fetch: FetchLike;
  headers: Record<string, string>;
  /** deadline of one request */
  timeoutMs: number;
}

const MODELS_TIMEOUT_MS = 10_000;

/** The headers of a request to `ep`: its own API key, when it has one, over the client's. */
export function headersFor(t: Transport, ep: Endpoint): Record<string, string> {
  return ep.authorization ? { ...t.headers, authorization: ep.authorization } : t.headers;
}

/**
 * One chat completion exchange with an endpoint: resolves with the
 * completion, or throws an AttemptFailure saying what went wrong (or
 * INTERRUPTED when the call was stopped).
 */
export async function exchange(t: Transport, ep: Endpoint, body: string, call: Call): Promise<Completion> {
  if (call.stop) throw INTERRUPTED;
  const ctl = new AbortController();
  call.ctl = ctl;
  const timer = setTimeout(() => {
    call.timedOut = true;
    ctl.abort();
  }, t.timeoutMs);
  ep.requests++;
  let res: Response;
  let text: string;
  try {
    // Bun's own idle timer (5 min) would cut long generations; the deadline is ours
    res = await t.fetch(ep.chatUrl, { method: "POST", headers: headersFor(t, ep), body, signal: ctl.signal, timeout: false });
    text = await res.text();
  } catch (err) {
    if (call.stop) throw INTERRUPTED;
    if (call.timedOut) throw new AttemptFailure("timeout", undefined, `timed out after ${t.timeoutMs} ms`, undefined);
    throw new AttemptFailure("network", undefined, describeNetworkError(err), undefined);
  } finally {
    clearTimeout(timer);
    call.ctl = null;
    call.timedOut = false;
  }
  const limits = ep.dialect?.readRateLimit?.(res.headers, Date.now());
  if (limits) ep.rateLimited(limits, performance.now());
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
