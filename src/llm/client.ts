import { LlmError } from "../errors.ts";
import { type Logger, silentLogger } from "../log.ts";
import { type LlmConfig, type LlmConfigInput, type LlmEndpointInput, parseLlmConfig } from "./config.ts";
import { AttemptFailure, Call, INTERRUPTED } from "./call.ts";
import { type Endpoint, type LoadReport, REDIRECT } from "./endpoint.ts";
import { EndpointSet, parseEndpoints } from "./endpoint-set.ts";
import { discover } from "./discover.ts";
import { answerLimits, exchange, type FetchLike, type Transport } from "./exchange.ts";
import { sleep } from "../util/wait.ts";
import { MetricsPoller } from "./poller.ts";
import { priorityOf, refusesPriority } from "./priority.ts";
import { Router } from "./router.ts";
import { credit, penalize } from "./standing.ts";
import { Tries } from "./tries.ts";
import type { CallDurations, ChatOptions, ChatRequest, ChatResult, EndpointInfo, EndpointStanding, ManagedLlmClient } from "./types.ts";
import { buildChatBody, estimateTokens, promptTokensAtLeast } from "./wire.ts";

export type { FetchLike } from "./exchange.ts";

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

/** Times a queued request may give up its slot on a failing endpoint to choose again. */
const MAX_MOVES = 3;
/** While every endpoint for a model is out, a waiting request looks again this often. */
const RECHECK_MS = 1_000;
/** Calls failing with a configuration error, none answered, after which the client says it cannot work. */
const FATAL_AFTER = 3;
/** The source name of endpoints from the client's config. */
const CONFIG_SOURCE = "config";

/**
 * The LLM client over one or more OpenAI-compatible endpoints. Build it with
 * {@link createLlmClient}.
 */
export class LlmClientImpl implements ManagedLlmClient {
  readonly structuredRetries: number;
  private readonly set: EndpointSet;
  private readonly router: Router;
  private readonly poller: MetricsPoller;
  private readonly calls = new Set<Call>();
  private readonly transport: Transport;
  private readonly log: Logger;
  private readonly closing = new AbortController();
  /** every endpoint has been looked at (kind, info, models) */
  private allDiscovered = true;
  private discovering: Promise<void> | null = null;
  /** answers received, and calls that failed with a configuration error before any answer */
  private answered = 0;
  private configFailures = 0;
  private readonly fatalListeners = new Set<(err: LlmError) => void>();
  private readonly standingListeners = new Set<(change: EndpointStanding) => void>();
  /** endpoints whose going down was told, and not yet their coming back */
  private readonly downSaid = new Set<string>();
  /** requests waiting for an endpoint of their model to come back */
  #waitingForEndpoint = 0;
  private closed = false;

  constructor(
    readonly config: LlmConfig,
    opts: LlmClientOptions = {},
  ) {
    this.structuredRetries = config.structuredRetries;
    const headers: Record<string, string> = { "content-type": "application/json", accept: "application/json" };
    // endpoints without their own apiKeyEnv take the client's key
    const key = config.apiKey ?? (config.apiKeyEnv ? process.env[config.apiKeyEnv] : undefined);
    if (key) headers.authorization = `Bearer ${key}`;
    this.transport = { fetch: opts.fetch ?? fetch, headers, timeoutMs: config.timeoutMs, idleTimeoutMs: config.idleTimeoutMs };
    this.log = opts.log ?? silentLogger;
    this.router = new Router([], config.stickyOverload);
    this.poller = new MetricsPoller(() => this.set.list, (ep, up) => this.health(ep, up), this.log);
    this.set = new EndpointSet((list, added) => {
      this.router.setEndpoints(list);
      if (added.length > 0) {
        this.allDiscovered = false;
        // look at new endpoints now, not at the first request: their metrics are read once their kind is known
        void this.discoverAll();
      }
      this.poller.ensure(added);
    });
    this.set.set(CONFIG_SOURCE, config.endpoints);
  }

  waitingForEndpoint(): number {
    return this.#waitingForEndpoint;
  }

  endpoints(): EndpointInfo[] {
    const now = performance.now();
    return this.set.list.map((e) => e.info(now));
  }

  *callDurations(): Iterable<CallDurations> {
    for (const e of this.set.list) for (const [model, hist] of e.calls) yield { endpoint: e.url, model, hist };
  }

  /**
   * Make the endpoints listed by `source` exactly these: new ones are added,
   * ones listed again keep their state (load, limits, counters) and take the
   * new models and concurrency cap, ones no longer listed are dropped unless
   * another source lists them. Requests queued for a dropped endpoint choose
   * again; those in flight to it finish there.
   *
   * The cluster calls this with the endpoints other nodes advertise (source
   * `"cluster"`) each time membership changes; a node's own endpoints are
   * the config's (source `"config"`) and its supervised servers'. A URL
   * listed by several sources is one endpoint.
   *
   * @throws ConfigError naming the bad endpoint and field
   *
   * @example
   * ```ts
   * llm.setEndpoints(
   *   peers.flatMap((m) => m.services.llm).map((e) => ({ url: e.url, models: e.models, maxConcurrency: e.maxConcurrency })),
   *   "cluster",
   * );
   * ```
   */
  setEndpoints(endpoints: readonly LlmEndpointInput[], source = CONFIG_SOURCE): void {
    this.set.set(source, parseEndpoints(endpoints));
  }

  /**
   * Add one endpoint (or, when its URL is known, add `source` to its
   * listings and update its models and concurrency cap).
   *
   * @throws ConfigError on a bad endpoint
   */
  addEndpoint(endpoint: LlmEndpointInput, source = CONFIG_SOURCE): void {
    const [config] = parseEndpoints([endpoint]);
    if (config) this.set.add(source, config);
  }

  /**
   * Drop `source`'s listing of an endpoint (every listing when no source is
   * named). Returns true when the endpoint is gone: nothing new is sent to
   * it, queued requests choose again, requests in flight finish.
   */
  removeEndpoint(url: string, source?: string): boolean {
    return this.set.remove(url, source);
  }

  /**
   * Tell the client what a server says of its own load (from its /metrics,
   * read by a supervisor or another node): least-load choice then counts
   * the server's running and waiting requests from every client, not only
   * this one's. A report older than five seconds is ignored. Returns false
   * for an unknown URL.
   */
  reportLoad(url: string, load: LoadReport): boolean {
    const ep = this.set.get(url);
    if (!ep) return false;
    ep.observe(load, performance.now());
    return true;
  }

  /**
   * Tell the client whether an endpoint is up (a supervisor's health probe,
   * a restart, the cluster's view). An endpoint reported down is never
   * chosen; requests that find every endpoint for their model down wait for
   * one to come back (up to `waitOnlineMs`) instead of failing. Once health
   * is reported, a broken connection to the endpoint also takes it out until
   * the next report says it is up (or five seconds pass). Returns false for
   * an unknown URL.
   */
  setHealth(url: string, up: boolean): boolean {
    const ep = this.set.get(url);
    if (!ep) return false;
    this.health(ep, up);
    return true;
  }

  /**
   * Read the metrics of the endpoints that are polled now rather than at
   * the next second (e.g. before sizing role slots with `llmCapacity`).
   */
  async refreshLoad(): Promise<void> {
    if (this.undiscovered()) await this.discoverAll();
    await this.poller.refresh();
  }

  private health(ep: Endpoint, up: boolean): void {
    const now = performance.now();
    if (!ep.report(up, now)) return;
    if (up) {
      this.log.info({ event: "endpoint.up", endpoint: ep.url }, "LLM endpoint back");
      // one that was not up to be looked at is looked at now
      if (!ep.discovered) ep.discoverAfter = 0;
      this.set.wake();
    } else {
      this.log.warn({ event: "endpoint.down", endpoint: ep.url }, "LLM endpoint out");
    }
    this.standing(ep, up, up ? undefined : "reported down (its health or metrics do not answer)");
  }

  /**
   * `fn` hears each endpoint going down (failing, or reported out) and
   * coming back, once per change whichever way it was seen. Returns the
   * way to stop listening.
   */
  onStanding(fn: (change: EndpointStanding) => void): () => void {
    this.standingListeners.add(fn);
    return () => this.standingListeners.delete(fn);
  }

  private standing(ep: Endpoint, up: boolean, reason?: string): void {
    if (up ? !this.downSaid.delete(ep.url) : this.downSaid.has(ep.url)) return;
    if (!up) this.downSaid.add(ep.url);
    const change: EndpointStanding = reason === undefined ? { url: ep.url, up } : { url: ep.url, up, reason };
    for (const fn of this.standingListeners) {
      try {
        fn(change);
      } catch (err) {
        this.log.error({ endpoint: ep.url, err: String(err) }, "endpoint standing listener failed");
      }
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.closing.abort();
    this.poller.stop();
    for (const call of this.calls) call.interrupt("closed");
    for (const ep of this.set.list) ep.slots.rejectAll(INTERRUPTED);
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
      return await this.run(req, opts?.affinity, call, priorityOf(this.config.priority, opts?.task));
    } finally {
      if (call.held) this.unhold();
      this.calls.delete(call);
      if (signal && onAbort) signal.removeEventListener("abort", onAbort);
    }
  }

  private async run(req: ChatRequest, affinity: string | undefined, call: Call, priority: number | undefined): Promise<ChatResult> {
    const started = performance.now();
    const { retries, backoffMs, maxBackoffMs, adaptive } = this.config;
    const key = this.config.affinity ? affinity : undefined;
    const tries = new Tries(retries);
    const limits = answerLimits(this.config, req.max_tokens);
    let body = "";
    /** the model and dialect the body was built for */
    let bodyFor: string | null = null;
    /** when this request found no endpoint up for its model */
    let outSince = -1;

    let moves = 0;
    let next: Endpoint | undefined;

    for (;;) {
      if (call.stop) throw this.stopped(call, tries.last);
      if (!this.allDiscovered && this.undiscovered()) await this.wait(this.discoverAll(), call, tries.last);
      const ep = next ?? this.router.pick(req.model, key, performance.now());
      next = undefined;
      if (ep === undefined) {
        const now = performance.now();
        if (outSince < 0) outSince = now;
        const left = this.config.waitOnlineMs - (now - outSince);
        if (left <= 0) throw this.noneUp(req.model, tries);
        this.#waitingForEndpoint++;
        try {
          await this.wait(this.set.waitForChange(Math.min(left, RECHECK_MS), call), call, tries.last);
        } finally {
          this.#waitingForEndpoint--;
        }
        continue;
      }
      outSince = -1;
      const granted = ep.slots.acquire(call, priority);
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
          const alt = this.router.pick(req.model, key, performance.now());
          if (alt !== undefined && alt !== ep) {
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
        if (ep.contextTokens !== undefined) this.checkContext(req, ep);
        let wait = Math.max(ep.isDown(now) ? ep.downUntil : 0, ep.holdUntil) - now;
        if (ep.rpm) {
          wait = Math.max(wait, ep.rpm.take(1, now));
          tookRequest = true;
        }
        if (ep.tpm) {
          sentTokens = estimateTokens(req);
          wait = Math.max(wait, ep.tpm.take(sentTokens, now));
        }
        if (wait > 0) await this.wait(sleep(wait, call), call, ep);

        tries.attempts++;
        const model = req.model ?? ep.defaultModel;
        const sendPriority = ep.sendsPriority && priority !== undefined ? (ep.dialect?.priorityHigherFirst ? -priority : priority) : undefined;
        const forWhom = `${model ?? ""}\n${ep.dialect?.kind ?? ""}\n${sendPriority ?? ""}`;
        if (forWhom !== bodyFor) {
          body = buildChatBody(req, model, ep.dialect, sendPriority);
          bodyFor = forWhom;
        }
        sent = true;
        const epoch = ep.epoch;
        const t0 = performance.now();
        try {
          const done = await exchange(this.transport, ep, body, call, limits);
          const ms = performance.now() - t0;
          if (credit(ep, done, { sentTokens, ms, adaptive, log: this.log })) this.standing(ep, true);
          this.answered++;
          // usage is booked under the name asked for: servers answer with their own (llama.cpp: gpt-3.5-turbo)
          const asked = model ?? done.model ?? "";
          ep.timeCall(asked, ms);
          const result: ChatResult = {
            text: done.text,
            toolCalls: done.toolCalls,
            finishReason: done.finishReason,
            usage:
              done.reasoningTokens === undefined
                ? { prompt: done.prompt, completion: done.completion }
                : { prompt: done.prompt, completion: done.completion, reasoning: done.reasoningTokens },
            endpoint: ep.url,
            model: asked,
            ms: performance.now() - started,
            attempts: tries.attempts,
          };
          if (done.reasoning !== undefined) result.reasoning = done.reasoning;
          if (done.model !== undefined && done.model !== asked) result.servedModel = done.model;
          return result;
        } catch (err) {
          if (!(err instanceof AttemptFailure) || call.stop) throw err;
          if (sendPriority !== undefined && refusesPriority(err)) {
            // a server that does not schedule by priority (vLLM's default fcfs): sent without it from now on
            if (ep.sendsPriority) {
              ep.sendsPriority = false;
              this.log.warn({ endpoint: ep.url, reason: err.detail }, `LLM endpoint ${ep.url} refuses a request priority: its requests go without one (start vLLM with --scheduling-policy priority, or set priority: false on the endpoint)`);
            }
            tries.attempts--;
            continue;
          }
          now = performance.now();
          ep.errors++;
          if (err.kind === "network" && ep.unreachableSince < 0) ep.unreachableSince = now;
          if (sentTokens > 0) ep.tpm?.give(sentTokens);
          // a watched server whose connection broke is restarting: wait for it or go elsewhere
          if (tries.failed(ep, err) === "choose-again") {
            ep.suspect(now);
            this.log.debug({ endpoint: ep.url, reason: err.detail }, "LLM endpoint connection broke; choosing again");
            continue;
          }
          if (penalize(ep, err, { epoch, now, adaptive, maxBackoffMs, log: this.log })) this.standing(ep, false, err.detail);
          if (err.problem === "config") this.onConfigFailure(ep, err.detail);
          // every endpoint of the model refuses connections after answering before: wait for one, spending no retry
          const hold = err.kind === "network" ? this.hold(req.model, now, call) : -1;
          if (hold === 0) throw this.unreachable(req.model, tries);
          if (hold < 0) tries.spend(ep, err);
          this.log.debug({ endpoint: ep.url, attempt: tries.attempts, reason: err.detail }, "LLM request retried");
        }
      } catch (err) {
        if (call.stop) {
          // what was reserved for a request never sent goes back
          if (!sent && tookRequest) ep.rpm?.give(1);
          if (!sent && sentTokens > 0) ep.tpm?.give(sentTokens);
          throw this.stopped(call, tries.last ?? ep);
        }
        throw err;
      } finally {
        ep.slots.release();
      }

      const delay = tries.delay(backoffMs, maxBackoffMs);
      if (delay >= 1) await this.wait(sleep(delay, call), call, tries.last);
    }
  }

  /**
   * Call `fn` once the client concludes that its endpoints cannot serve the
   * requests as they are sent: the first FATAL_AFTER calls all failed with
   * a configuration error (an unknown model, a bad field, a server started
   * without a flag the request needs) and none was answered. A run stops
   * on it instead of failing every task the same way. Returns the way to
   * stop listening.
   */
  onFatal(fn: (err: LlmError) => void): () => void {
    this.fatalListeners.add(fn);
    return () => this.fatalListeners.delete(fn);
  }

  private onConfigFailure(ep: Endpoint, detail: string): void {
    if (this.answered > 0 || ++this.configFailures !== FATAL_AFTER) return;
    const err = new LlmError(
      `every LLM request so far (${FATAL_AFTER}) failed with a configuration error, none was answered: ${ep.url} ${detail}`,
      undefined,
      ep.url,
      false,
      { problem: "config" },
    );
    this.log.error({ endpoint: ep.url, reason: detail }, err.message);
    for (const fn of this.fatalListeners) fn(err);
  }

  /** Refuse, before sending, a prompt that cannot fit the endpoint's context (llama.cpp would cut it silently). */
  private checkContext(req: ChatRequest, ep: Endpoint): void {
    const ctx = ep.contextTokens ?? Infinity;
    const prompt = promptTokensAtLeast(req);
    if (prompt < ctx) return;
    throw new LlmError(
      `LLM request not sent: its prompt of about ${prompt} tokens does not fit the ${ctx}-token context of ${ep.url}`,
      undefined,
      ep.url,
      false,
      { problem: "context" },
    );
  }

  /**
   * Whether a request whose attempt could not connect waits for an endpoint
   * instead of spending a retry: when every endpoint serving its model is
   * out or refuses connections, and one of them answered before (a server
   * that died, not a wrong URL). Returns the ms left to wait, 0 when the
   * model's endpoints have been unreachable for `waitOnlineMs` already, -1
   * when the request goes on as usual.
   */
  private hold(model: string | undefined, now: number, call: Call): number {
    let since = -Infinity;
    let answered = false;
    for (const e of this.set.list) {
      if (!e.serves(model)) continue;
      if (e.unreachableSince < 0) {
        if (!e.isOut(now)) return -1;
        continue;
      }
      if (e.answeredOnce) answered = true;
      if (e.unreachableSince > since) since = e.unreachableSince;
    }
    if (!answered) return -1;
    const left = this.config.waitOnlineMs - (now - since);
    if (left <= 0) return 0;
    if (!call.held) {
      call.held = true;
      if (this.#waitingForEndpoint++ === 0 && !this.closed) {
        this.log.warn(
          { event: "llm.waiting", model, waitSec: Math.round(this.config.waitOnlineMs / 1000) },
          `no LLM endpoint${model ? ` for model "${model}"` : ""} answers: requests wait up to ${Math.round(left / 1000)} s for one to come back (llm.waitOnlineMs), spending no retries`,
        );
      }
    }
    return left;
  }

  private unhold(): void {
    if (--this.#waitingForEndpoint === 0 && !this.closed) this.log.info({ event: "llm.resumed" }, "no LLM request waits for an endpoint any more");
  }

  /** The error of a request whose model's endpoints have refused connections for `waitOnlineMs`. */
  private unreachable(model: string | undefined, tries: Tries): LlmError {
    const n = tries.attempts;
    return new LlmError(
      `LLM request failed after ${n} attempt${n === 1 ? "" : "s"}: no LLM endpoint${model ? ` for model "${model}"` : ""} answered for ${Math.round(this.config.waitOnlineMs / 1000)} s (llm.waitOnlineMs): ${tries.summary()}`,
      undefined,
      tries.last?.url,
      true,
    );
  }

  /** The error of a request that waited `waitOnlineMs` for an endpoint to come back. */
  private noneUp(model: string | undefined, tries: Tries): LlmError {
    const out = this.set.list.filter((e) => e.serves(model)).map((e) => e.url);
    const last = tries.summary() ? `; last: ${tries.summary()}` : "";
    return new LlmError(
      `No LLM endpoint${model ? ` for model "${model}"` : ""} came back within ${this.config.waitOnlineMs} ms (out: ${out.join(", ") || "none listed"})${last}`,
      undefined,
      out[0],
      true,
    );
  }

  /** Whether an endpoint is still to be looked at now; notes when none is left. */
  private undiscovered(): boolean {
    const now = performance.now();
    let left = false;
    for (const e of this.set.list) {
      if (e.discovered) continue;
      left = true;
      if (now >= e.discoverAfter) return true;
    }
    if (!left) this.allDiscovered = true;
    return false;
  }

  /** Look at every endpoint not yet known (kind, slots, context, models), once for all requests waiting. */
  private discoverAll(): Promise<void> {
    const now = performance.now();
    this.discovering ??= Promise.all(
      this.set.list.filter((e) => !e.discovered && now >= e.discoverAfter).map(async (e) => {
        await discover(this.transport, e, this.closing.signal, this.log);
        if (e.discovered) this.poller.ensure([e]);
      }),
    ).then(() => {
      this.discovering = null;
    });
    return this.discovering;
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
