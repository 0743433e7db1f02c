import { LlmError } from "../errors.ts";
import { type Logger, silentLogger } from "../log.ts";
import { type LlmConfig, type LlmConfigInput, parseLlmConfig } from "./config.ts";
import { Endpoint, FAILS_TO_DOWN, REDIRECT } from "./endpoint.ts";
import { type Cancellable, sleep } from "./limiter.ts";
import { Router } from "./router.ts";
import type { ChatOptions, ChatRequest, ChatResult, EndpointInfo, LlmClient } from "./types.ts";
import {
  type Completion,
  ModelListSchema,
  buildChatBody,
  describeNetworkError,
  estimateTokens,
  parseCompletion,
  parseRetryAfter,
  serverMessage,
} from "./wire.ts";

/** The `fetch` the client calls; Bun's global one unless a test or proxy supplies another. */
export type FetchLike = (input: string, init: BunFetchRequestInit) => Promise<Response>;

/** What the client is given besides its config. */
export interface LlmClientOptions {
  /** retries at debug, endpoint state changes at info/warn; silent when absent */
  log?: Logger;
  /** replaces the global fetch (tests, proxies) */
  fetch?: FetchLike;
}

/** A chat call ended by its caller's signal. `name` is "AbortError", as for an aborted fetch. */
export class LlmAbortError extends LlmError {
  override name = "AbortError";
}

/** How long a failing endpoint is avoided while others can serve. */
const PENALTY_MS = 1000;
/** Nonsense answers are retried this many times, however many retries are allowed. */
const NONSENSE_RETRIES = 2;
const MODELS_TIMEOUT_MS = 10_000;
/** Load a broken endpoint counts as, in capacities, while penalized. */
const BROKEN_PENALTY_LOAD = 100;
/** Times a queued request may give up its slot on a failing endpoint to choose again. */
const MAX_MOVES = 3;
/** Rejection reason of a wait cut short by abort or close. */
const INTERRUPTED: unique symbol = Symbol("interrupted");

type FailureKind = "network" | "timeout" | "status" | "nonsense";

/** One attempt that went wrong, before deciding whether to retry. */
class AttemptFailure {
  constructor(
    readonly kind: FailureKind,
    readonly status: number | undefined,
    /** e.g. `answered 503 Service Unavailable`, following the endpoint URL */
    readonly detail: string,
    readonly retryAfterMs: number | undefined,
  ) {}

  get retryable(): boolean {
    if (this.kind !== "status") return true;
    const s = this.status ?? 0;
    return s === 408 || s === 429 || s >= 500;
  }
}

/** The state of one `chat` call that abort and close need to reach. */
class Call implements Cancellable {
  cancel: ((why: unknown) => void) | null = null;
  /** the attempt's fetch, while one is running */
  ctl: AbortController | null = null;
  timedOut = false;
  stop: "abort" | "closed" | null = null;
  reason: unknown;

  interrupt(stop: "abort" | "closed", reason?: unknown): void {
    if (this.stop) return;
    this.stop = stop;
    this.reason = reason;
    this.ctl?.abort(reason);
    const cancel = this.cancel;
    this.cancel = null;
    cancel?.(INTERRUPTED);
  }
}

/**
 * The LLM client over one or more OpenAI-compatible endpoints. Build it with
 * {@link createLlmClient}.
 */
export class LlmClientImpl implements LlmClient {
  readonly structuredRetries: number;
  private readonly eps: Endpoint[];
  private readonly router: Router;
  private readonly calls = new Set<Call>();
  private readonly headers: Record<string, string>;
  private readonly fetchFn: FetchLike;
  private readonly log: Logger;
  private readonly closing = new AbortController();
  private modelsReady: boolean;
  private modelsLoading: Promise<void> | null = null;
  private closed = false;

  constructor(
    readonly config: LlmConfig,
    opts: LlmClientOptions = {},
  ) {
    this.structuredRetries = config.structuredRetries;
    this.eps = config.endpoints.map((e) => new Endpoint(e));
    this.router = new Router(this.eps, config.stickyOverload);
    this.modelsReady = this.eps.every((e) => e.modelsKnown);
    this.headers = { "content-type": "application/json", accept: "application/json" };
    if (config.apiKey) this.headers.authorization = `Bearer ${config.apiKey}`;
    this.fetchFn = opts.fetch ?? fetch;
    this.log = opts.log ?? silentLogger;
  }

  endpoints(): EndpointInfo[] {
    const now = performance.now();
    return this.eps.map((e) => e.info(now));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.closing.abort();
    for (const call of this.calls) call.interrupt("closed");
    for (const ep of this.eps) ep.slots.rejectAll(INTERRUPTED);
  }

  async chat(req: ChatRequest, opts?: ChatOptions): Promise<ChatResult> {
    if (this.closed) throw new LlmError("LLM client closed", undefined, undefined, false);
    const signal = opts?.signal;
    if (signal?.aborted) throw abortError(undefined, signal.reason);
    const call = new Call();
    this.calls.add(call);
    const onAbort = signal ? () => call.interrupt("abort", signal.reason) : undefined;
    if (signal && onAbort) signal.addEventListener("abort", onAbort, { once: true });
    try {
      return await this.run(req, opts?.affinity, call);
    } finally {
      this.calls.delete(call);
      if (signal && onAbort) signal.removeEventListener("abort", onAbort);
    }
  }

  private async run(req: ChatRequest, affinity: string | undefined, call: Call): Promise<ChatResult> {
    const started = performance.now();
    const { retries, backoffMs, maxBackoffMs, adaptive } = this.config;
    if (!this.modelsReady) await this.wait(this.loadModels(), call, undefined);
    let attempts = 0;
    let nonsense = 0;
    let body = "";
    let bodyModel: string | undefined | null = null;
    /** last failure per endpoint URL, for the final message */
    let failures: Map<string, string> | undefined;
    let lastEp: Endpoint | undefined;

    let moves = 0;
    let next: Endpoint | undefined;

    for (;;) {
      if (call.stop) throw this.stopped(call, lastEp);
      const ep = next ?? this.router.pick(req.model, affinity);
      next = undefined;
      const granted = ep.slots.acquire(call);
      if (granted) {
        try {
          await granted;
          call.cancel = null;
        } catch (err) {
          call.cancel = null;
          if (err === REDIRECT) continue;
          throw this.stopped(call, ep);
        }
        // the endpoint failed while this request queued for it: go elsewhere if better
        if (performance.now() < ep.penaltyUntil && moves < MAX_MOVES && !call.stop) {
          const alt = this.router.pick(req.model, affinity);
          if (alt !== ep) {
            ep.slots.release();
            moves++;
            next = alt;
            continue;
          }
        }
      }

      let sentTokens = 0;
      let tookRequest = false;
      let sent = false;
      try {
        // an abort may land between the slot's grant and this continuation
        if (call.stop) throw INTERRUPTED;
        let now = performance.now();
        let wait = Math.max(ep.notBefore, ep.isDown(now) ? ep.downUntil : 0) - now;
        if (ep.rpm) {
          wait = Math.max(wait, ep.rpm.take(1, now));
          tookRequest = true;
        }
        if (ep.tpm) {
          sentTokens = estimateTokens(req);
          wait = Math.max(wait, ep.tpm.take(sentTokens, now));
        }
        if (wait > 0) await this.wait(sleep(wait, call), call, ep);

        attempts++;
        const model = req.model ?? ep.defaultModel;
        if (model !== bodyModel) {
          body = buildChatBody(req, model);
          bodyModel = model;
        }
        sent = true;
        const epoch = ep.epoch;
        const t0 = performance.now();
        try {
          const done = await this.attempt(ep, body, call);
          const ms = performance.now() - t0;
          this.account(ep, done, sentTokens, ms);
          return {
            text: done.text,
            toolCalls: done.toolCalls,
            finishReason: done.finishReason,
            usage: { prompt: done.prompt, completion: done.completion },
            endpoint: ep.url,
            model: done.model ?? model ?? "",
            ms: performance.now() - started,
            attempts,
          };
        } catch (err) {
          if (!(err instanceof AttemptFailure) || call.stop) throw err;
          now = performance.now();
          ep.errors++;
          if (sentTokens > 0) ep.tpm?.give(sentTokens);
          this.penalize(ep, err, epoch, now, adaptive, maxBackoffMs);
          lastEp = ep;
          (failures ??= new Map()).set(ep.url, err.detail);
          if (!err.retryable) {
            throw new LlmError(`LLM request rejected: ${ep.url} ${err.detail}`, err.status, ep.url, false);
          }
          if ((err.kind === "nonsense" && ++nonsense > NONSENSE_RETRIES) || attempts > retries) {
            throw new LlmError(
              `LLM request failed after ${attempts} attempt${attempts === 1 ? "" : "s"}: ${[...failures].map(([url, d]) => `${url} ${d}`).join("; ")}`,
              err.status,
              ep.url,
              true,
            );
          }
          this.log.debug({ endpoint: ep.url, attempt: attempts, reason: err.detail }, "LLM request retried");
        }
      } catch (err) {
        if (call.stop) {
          // what was reserved for a request never sent goes back
          if (!sent && tookRequest) ep.rpm?.give(1);
          if (!sent && sentTokens > 0) ep.tpm?.give(sentTokens);
          throw this.stopped(call, lastEp ?? ep);
        }
        throw err;
      } finally {
        ep.slots.release();
      }

      const step = Math.min(maxBackoffMs, backoffMs * 2 ** Math.min(30, attempts - 1));
      const delay = Math.random() * step;
      if (delay >= 1) await this.wait(sleep(delay, call), call, lastEp);
    }
  }

  /** One HTTP exchange; resolves with the completion or throws an AttemptFailure. */
  private async attempt(ep: Endpoint, body: string, call: Call): Promise<Completion> {
    if (call.stop) throw INTERRUPTED;
    const ctl = new AbortController();
    call.ctl = ctl;
    const timeoutMs = this.config.timeoutMs;
    const timer = setTimeout(() => {
      call.timedOut = true;
      ctl.abort();
    }, timeoutMs);
    ep.requests++;
    let res: Response;
    let text: string;
    try {
      // Bun's own idle timer (5 min) would cut long generations; the deadline is ours
      res = await this.fetchFn(ep.chatUrl, { method: "POST", headers: this.headers, body, signal: ctl.signal, timeout: false });
      text = await res.text();
    } catch (err) {
      if (call.stop) throw INTERRUPTED;
      if (call.timedOut) throw new AttemptFailure("timeout", undefined, `timed out after ${timeoutMs} ms`, undefined);
      throw new AttemptFailure("network", undefined, describeNetworkError(err), undefined);
    } finally {
      clearTimeout(timer);
      call.ctl = null;
      call.timedOut = false;
    }
    if (res.ok) {
      const parsed = parseCompletion(text);
      if (parsed.ok) return parsed.value;
      throw new AttemptFailure("nonsense", res.status, `answered ${parsed.problem}`, undefined);
    }
    const status = `${res.status} ${res.statusText}`.trim();
    const retryAfter = parseRetryAfter(res.headers.get("retry-after"));
    const detail = res.status >= 500 || res.status === 429 ? `answered ${status}` : `answered ${status}: ${serverMessage(text)}`;
    throw new AttemptFailure("status", res.status, detail, retryAfter);
  }

  /** What a failed attempt does to its endpoint's standing. */
  private penalize(ep: Endpoint, f: AttemptFailure, epoch: number, now: number, adaptive: boolean, maxBackoffMs: number): void {
    const s = f.status ?? 0;
    const overload = f.kind === "timeout" || s === 429;
    const broken = f.kind === "network" || f.kind === "nonsense" || (f.kind === "status" && s >= 500);
    if (!overload && !broken && !f.retryable) return;
    // an overloaded endpoint still takes work when the others are fuller; a broken one hardly
    ep.penalize(now, Math.max(PENALTY_MS, f.retryAfterMs ?? 0), broken ? BROKEN_PENALTY_LOAD : 1);
    if (f.retryAfterMs !== undefined) ep.notBefore = Math.max(ep.notBefore, now + f.retryAfterMs);
    if (overload && ep.onOverload(epoch, adaptive)) {
      this.log.info({ endpoint: ep.url, limit: ep.slots.limit, reason: f.detail }, "LLM endpoint concurrency cut");
    }
    if (broken && ep.onFailure(now, Math.max(1, maxBackoffMs))) {
      this.log.warn({ endpoint: ep.url, fails: ep.fails, reason: f.detail }, "LLM endpoint down");
    }
  }

  private account(ep: Endpoint, done: Completion, sentTokens: number, ms: number): void {
    if (ep.fails >= FAILS_TO_DOWN) this.log.info({ endpoint: ep.url }, "LLM endpoint up again");
    ep.onSuccess(ms, this.config.adaptive);
    ep.promptTokens += done.prompt;
    ep.completionTokens += done.completion;
    // the estimate was charged up front; settle with what was really used
    if (sentTokens > 0) ep.tpm?.give(sentTokens - done.prompt - done.completion);
  }

  /** Ask endpoints without configured models what they serve, once for all requests. */
  private loadModels(): Promise<void> {
    this.modelsLoading ??= Promise.all(this.eps.filter((e) => !e.modelsKnown).map((e) => this.fetchModels(e))).then(() => {
      this.modelsReady = true;
    });
    return this.modelsLoading;
  }

  private async fetchModels(ep: Endpoint): Promise<void> {
    try {
      const signal = AbortSignal.any([this.closing.signal, AbortSignal.timeout(Math.min(MODELS_TIMEOUT_MS, this.config.timeoutMs))]);
      const res = await this.fetchFn(ep.modelsUrl, { headers: this.headers, signal });
      const text = await res.text();
      if (!res.ok) throw new Error(`answered ${res.status} ${res.statusText}`.trim());
      const parsed = ModelListSchema.safeParse(JSON.parse(text));
      if (!parsed.success || parsed.data.data.length === 0) throw new Error("answered no model list");
      ep.setModels(parsed.data.data.map((m) => m.id));
    } catch (err) {
      ep.modelsKnown = true;
      this.log.warn({ endpoint: ep.url, reason: describeNetworkError(err) }, "LLM endpoint models unknown; sending it any model");
    }
  }

  /**
   * Await `p` unless the call is interrupted first. `p` is either a sleep,
   * which registered its own `call.cancel`, or a shared promise (the model
   * list), which is given one here and left to settle unobserved.
   */
  private async wait(p: Promise<void>, call: Call, ep: Endpoint | undefined): Promise<void> {
    try {
      if (call.cancel === null) {
        if (call.stop) throw INTERRUPTED;
        await new Promise<void>((resolve, reject) => {
          call.cancel = reject;
          p.then(resolve, reject);
        });
      } else {
        // already interrupted: cancel the sleep now rather than leave its timer running
        if (call.stop) call.cancel(INTERRUPTED);
        await p;
      }
    } catch {
      throw this.stopped(call, ep);
    } finally {
      call.cancel = null;
    }
  }

  private stopped(call: Call, ep: Endpoint | undefined): LlmError {
    if (call.stop === "abort") return abortError(ep?.url, call.reason);
    return new LlmError("LLM client closed", undefined, ep?.url, false);
  }
}

function abortError(endpoint: string | undefined, reason: unknown): LlmAbortError {
  return new LlmAbortError("LLM request aborted", undefined, endpoint, false, { cause: reason });
}

/**
 * Create the LLM client. The config is validated and completed here.
 *
 * @throws ConfigError on a bad config
 *
 * @example
 * ```ts
 * const llm = createLlmClient({ endpoints: [{ url: "http://127.0.0.1:8000/v1" }] });
 * const r = await llm.chat({ messages: [{ role: "user", content: "Hi" }] }, { affinity: taskId });
 * console.log(r.text, r.usage);
 * await llm.close();
 * ```
 */
export function createLlmClient(config: LlmConfigInput | LlmConfig, opts: LlmClientOptions = {}): LlmClientImpl {
  return new LlmClientImpl(parseLlmConfig(config), opts);
}
