/**
 * One LLM server as the client sees it: its slots, its health, its adaptive
 * limit, its rate limits and its counters.
 */
import type { LlmEndpointConfig } from "./config.ts";
import { dialectFor } from "./dialect/index.ts";
import type { Dialect, RateLimitReport, ServerInfo, ServerKind } from "./dialect/types.ts";
import { DURATION_BUCKETS_MS, Histogram } from "../metrics/histogram.ts";
import { fnv1a } from "../util/hash.ts";
import { Semaphore } from "../util/wait.ts";
import { TokenBucket } from "./limiter.ts";
import { Pacer } from "./pacing.ts";
import type { EndpointInfo } from "./types.ts";

/** Consecutive failures (network errors, 5xx, nonsense) before an endpoint is taken out. */
export const FAILS_TO_DOWN = 3;
/** First cool-down; doubles with each further failure, up to the client's `maxBackoffMs`. */
const FIRST_COOLDOWN_MS = 1000;
/** Multiplicative decrease on a 429 or timeout. */
const AIMD_CUT = 0.7;
const LATENCY_WEIGHT = 0.2;
/** A load the server reported longer ago than this is not trusted. */
const STALE_MS = 5_000;
/** How long an endpoint whose connection broke is left out when no health report comes first. */
const SUSPECT_MS = 5_000;

/** What a server says of its own load (from its /metrics, or from whoever reads them). */
export interface LoadReport {
  /** requests the server is running */
  running: number;
  /** requests queued in the server */
  waiting: number;
  /** sequences it runs at once at most, when known */
  slots?: number;
}

/** A remaining budget below this share of a hosted API's limit holds requests until its reset. */
const RATE_RESERVE = 0.02;

/** Thrown to requests queued on an endpoint that just went down, so they choose again. */
export const REDIRECT: unique symbol = Symbol("redirect");

export class Endpoint {
  readonly url: string;
  readonly chatUrl: string;
  readonly modelsUrl: string;
  /** what it serves; `null` when unknown or unreadable, meaning "any model" */
  models: Set<string> | null = null;
  /** the first model it lists, sent when a request names none */
  defaultModel: string | undefined;
  /** models were configured or have been asked for */
  modelsKnown = false;
  maxConcurrency: number;
  readonly slots: Semaphore;
  /** the limit from the server's slots, queue and latency */
  readonly pacer: Pacer;
  /** the limit after 429s and timeouts (AIMD); the semaphore's is the lower of this and the pacer's */
  private aimd: number;
  /** how the server is spoken to; undefined until an `auto` endpoint is found out */
  dialect: Dialect | undefined;
  /** the server's kind was given or found out */
  kindKnown = false;
  /** its kind, slots and context were looked for (see discover.ts) */
  discovered = false;
  /** an endpoint that answered nothing is looked at again after then (performance.now ms) */
  discoverAfter = 0;
  /** why the kind is what it is, for the log and /v1/cluster */
  kindWhy = "";
  /** tokens of context per sequence, when the server says */
  contextTokens: number | undefined;
  /** the server's build or version, when it says */
  version: string | undefined;
  /** `Bearer ...` from the endpoint's own key variable */
  readonly authorization: string | undefined;
  /** metric names its kind should have had and its metrics lacked (said once) */
  missingMetrics: string[] = [];
  /** hosted rate limits: nothing is sent before then (performance.now ms) */
  holdUntil = 0;
  private readonly metricsSetting: LlmEndpointConfig["metrics"];
  readonly rpm: TokenBucket | undefined;
  readonly tpm: TokenBucket | undefined;
  /** rendezvous-hash salt, from the URL so every node ranks endpoints alike */
  readonly salt: number;

  /** consecutive failures */
  fails = 0;
  /** it has answered a chat request: refusing connections then, it died, and requests may wait for it */
  answeredOnce = false;
  /** when it began refusing connections since its last answer (performance.now ms), -1 when it did not */
  unreachableSince = -1;
  /** down until then (performance.now ms) once `fails >= FAILS_TO_DOWN` */
  downUntil = 0;
  /** avoided, when others can serve, until then */
  penaltyUntil = 0;
  /** load added while penalized: 1 after an overload, more after a breakage */
  penaltyLoad = 0;

  /** bumped on every AIMD cut; a 429 from a request sent before the cut does not cut again */
  epoch = 0;
  private okRun = 0;
  latencyMs = 0;

  requests = 0;
  errors = 0;
  promptTokens = 0;
  completionTokens = 0;
  /** durations (ms) of the calls it answered, per model asked for */
  readonly calls = new Map<string, Histogram>();

  /** where the client polls the server's load (its kind's metrics, or the configured URL) */
  metricsUrl: string | undefined;
  /** someone reports its health (a supervisor, the metrics poller, the cluster) */
  managed = false;
  /** the last health report: false takes it out until a report says it is back */
  reportedUp = true;
  /** out until then after its connection broke, unless a health report comes first */
  suspectUntil = 0;
  /** dropped from the client: requests in flight finish, nothing new is sent */
  removed = false;
  /** who listed it (config, supervisor, cluster...); it is dropped when none does */
  readonly sources = new Set<string>();
  /** metrics that refuse connections take it out (the config asked for them) */
  readonly healthFromMetrics: boolean;
  /** consecutive metrics polls that could not connect */
  pollFails = 0;

  /** the server's own figures: running and waiting, our requests in flight when read, when (performance.now) */
  serverRunning = 0;
  serverWaiting = 0;
  private ownAtReport = 0;
  reportedAt = -Infinity;
  /** sequences the server runs at once, when it says */
  serverSlots: number | undefined;
  /** requests carry their `priority` (the config says so, and the server has not refused one) */
  sendsPriority: boolean;

  constructor(config: LlmEndpointConfig) {
    this.url = config.url;
    this.chatUrl = `${config.url}/chat/completions`;
    this.modelsUrl = `${config.url}/models`;
    this.maxConcurrency = config.maxConcurrency;
    this.sendsPriority = config.priority === true;
    this.aimd = config.maxConcurrency;
    this.pacer = new Pacer(config.maxConcurrency, config.slots);
    this.slots = new Semaphore(this.pacer.limit);
    this.rpm = config.rpm === undefined ? undefined : new TokenBucket(config.rpm);
    this.tpm = config.tpm === undefined ? undefined : new TokenBucket(config.tpm);
    this.salt = fnv1a(config.url);
    if (config.models) this.setModels(config.models);
    this.metricsSetting = config.metrics;
    if (typeof config.metrics === "string") this.metricsUrl = config.metrics;
    // metrics asked for by name are a health signal too; those read by default only tell the load
    this.healthFromMetrics = config.metrics !== undefined && config.metrics !== false;
    if (this.healthFromMetrics) this.managed = true;
    if (config.metrics === true) this.metricsUrl = `${new URL(config.url).origin}/metrics`;
    const key = config.apiKeyEnv ? process.env[config.apiKeyEnv] : undefined;
    this.authorization = key ? `Bearer ${key}` : undefined;
    if (config.kind !== "auto") this.setKind(config.kind, "configured");
  }

  /**
   * Its kind is known: its dialect, where its metrics are (unless the config
   * says), and how its limit is paced.
   */
  setKind(kind: ServerKind, why: string): void {
    this.dialect = dialectFor(kind);
    this.kindKnown = true;
    this.kindWhy = why;
    this.pacer.setKind(kind);
    if (this.metricsSetting === undefined || this.metricsSetting === true) {
      this.metricsUrl = this.dialect.metricsUrl(this.url);
      if (this.metricsUrl && this.metricsSetting === true) this.managed = true;
    }
    this.applyLimit();
  }

  /** What the server said of itself on its info routes. */
  setInfo(info: ServerInfo): void {
    if (info.contextTokens !== undefined && info.contextTokens > 0) this.contextTokens = info.contextTokens;
    if (info.version) this.version = info.version;
    if (info.maxRequests !== undefined && info.maxRequests > 0 && info.maxRequests < this.pacer.cap) {
      this.pacer.cap = info.maxRequests;
      this.applyLimit();
    }
    if (info.slots !== undefined && info.slots > 0) {
      this.serverSlots = info.slots;
      this.pacer.setSlots(info.slots);
      this.applyLimit();
    }
  }

  /** Its metrics are not there (404, 501): stop asking. */
  noMetrics(): void {
    this.metricsUrl = undefined;
  }

  /** A hosted API's rate-limit headers: hold requests when a budget is about spent, until its reset. */
  rateLimited(r: RateLimitReport, now: number): void {
    let until = 0;
    const spent = (left: number | undefined, limit: number | undefined) =>
      left !== undefined && left <= Math.max(0, (limit ?? 0) * RATE_RESERVE);
    if (spent(r.remainingRequests, r.limitRequests) && r.resetRequestsMs !== undefined) until = Math.max(until, now + r.resetRequestsMs);
    if (spent(r.remainingTokens, r.limitTokens) && r.resetTokensMs !== undefined) until = Math.max(until, now + r.resetTokensMs);
    if (until > this.holdUntil) this.holdUntil = until;
  }

  /** The semaphore's limit: the pacer's, cut by AIMD. */
  private applyLimit(): void {
    const limit = Math.max(1, Math.min(this.aimd, this.pacer.limit));
    if (limit !== this.slots.limit) this.slots.setLimit(limit);
  }

  /** Take a new listing of the same URL: its models and concurrency cap. */
  update(config: LlmEndpointConfig): void {
    if (config.models) this.setModels(config.models);
    if (config.maxConcurrency !== this.maxConcurrency) {
      this.maxConcurrency = config.maxConcurrency;
      this.pacer.cap = config.maxConcurrency;
      this.aimd = Math.min(this.aimd, config.maxConcurrency);
      this.applyLimit();
    }
  }

  /** Out of the choice: reported down, or suspected after a broken connection. */
  isOut(now: number): boolean {
    return !this.reportedUp || now < this.suspectUntil;
  }

  /**
   * A health report. Returns true when it changes whether the endpoint can
   * be chosen. Going out sends the requests queued for it to choose again.
   */
  report(up: boolean, now: number): boolean {
    this.managed = true;
    const wasOut = this.isOut(now);
    this.reportedUp = up;
    if (up) this.suspectUntil = 0;
    const out = this.isOut(now);
    if (out && !wasOut) this.slots.rejectAll(REDIRECT);
    return out !== wasOut;
  }

  /** Its connection broke while someone watches its health: leave it out until they say it is back. */
  suspect(now: number): void {
    const wasOut = this.isOut(now);
    this.suspectUntil = now + SUSPECT_MS;
    if (!wasOut) this.slots.rejectAll(REDIRECT);
  }

  /** The server's own load, as read from its metrics. */
  observe(load: LoadReport, now: number): void {
    this.serverRunning = load.running;
    this.serverWaiting = load.waiting;
    this.ownAtReport = this.slots.inFlight;
    this.reportedAt = now;
    if (load.slots !== undefined && load.slots > 0) {
      this.serverSlots = load.slots;
      this.pacer.setSlots(load.slots);
    }
    this.pacer.onLoad(load, this.ownAtReport, this.others(now));
    if (this.pacer.slots === undefined && this.serverWaiting > 0) this.serverSlots = Math.max(1, load.running);
    this.applyLimit();
  }

  /** Requests at the server that are not this client's, by its last fresh report. */
  private others(now: number): number {
    if (now - this.reportedAt >= STALE_MS) return 0;
    return Math.max(0, this.serverRunning + this.serverWaiting - this.ownAtReport);
  }

  /** What it can run at once: the client's limit, or the server's slots when fewer. */
  capacity(): number {
    const limit = this.slots.limit;
    return this.serverSlots !== undefined && this.serverSlots < limit ? this.serverSlots : limit;
  }

  setModels(models: string[]): void {
    this.models = new Set(models);
    this.defaultModel = models[0];
    this.modelsKnown = true;
  }

  serves(model: string | undefined): boolean {
    return model === undefined || this.models === null || this.models.has(model);
  }

  isDown(now: number): boolean {
    return this.fails >= FAILS_TO_DOWN && now < this.downUntil;
  }

  /**
   * Share of its capacity taken: this client's requests in flight and queued
   * for it, plus, from the server's fresh metrics, everyone else's.
   */
  load(now: number): number {
    return (this.slots.inFlight + this.slots.waiting + this.others(now)) / this.capacity();
  }

  /** A request sent now would not queue, here or, by its metrics, at the server. */
  hasRoom(now: number): boolean {
    if (this.slots.waiting > 0 || this.slots.inFlight >= this.slots.limit) return false;
    return this.serverSlots === undefined || this.slots.inFlight + this.others(now) < this.serverSlots;
  }

  /** A good answer: the endpoint is healthy and, when adaptive, may take one more request per window. */
  onSuccess(ms: number, adaptive: boolean): void {
    this.fails = 0;
    this.latencyMs = this.latencyMs === 0 ? ms : this.latencyMs + LATENCY_WEIGHT * (ms - this.latencyMs);
    if (!adaptive) return;
    if (this.aimd < this.maxConcurrency && ++this.okRun >= this.slots.limit) {
      this.okRun = 0;
      this.aimd = Math.min(this.maxConcurrency, Math.max(this.aimd, this.slots.limit) + 1);
    }
    this.applyLimit();
  }

  /** An answered call of `model` took `ms`. */
  timeCall(model: string, ms: number): void {
    let h = this.calls.get(model);
    if (!h) {
      h = new Histogram(DURATION_BUCKETS_MS);
      this.calls.set(model, h);
    }
    h.observe(ms);
  }

  /**
   * A 429 or timeout: cut the limit, once per congestion event. Requests sent
   * before the last cut carry an older epoch and are not counted again.
   */
  onOverload(sentEpoch: number, adaptive: boolean): boolean {
    if (!adaptive || sentEpoch !== this.epoch) return false;
    this.epoch++;
    this.okRun = 0;
    this.aimd = Math.max(1, Math.floor(this.slots.limit * AIMD_CUT));
    this.applyLimit();
    return true;
  }

  /**
   * A network error, 5xx or nonsense answer. Returns true when this failure
   * took the endpoint down; its queued requests are then sent elsewhere.
   */
  onFailure(now: number, maxCooldownMs: number): boolean {
    const wasDown = this.isDown(now);
    this.fails++;
    if (this.fails < FAILS_TO_DOWN) return false;
    const cooldown = Math.min(maxCooldownMs, FIRST_COOLDOWN_MS * 2 ** Math.min(20, this.fails - FAILS_TO_DOWN));
    this.downUntil = Math.max(this.downUntil, now + cooldown);
    if (wasDown) return false;
    this.slots.rejectAll(REDIRECT);
    return true;
  }

  penalize(now: number, ms: number, load: number): void {
    if (now >= this.penaltyUntil) this.penaltyLoad = load;
    else this.penaltyLoad = Math.max(this.penaltyLoad, load);
    if (now + ms > this.penaltyUntil) this.penaltyUntil = now + ms;
  }

  info(now = performance.now()): EndpointInfo {
    return {
      url: this.url,
      models: this.models ? [...this.models] : [],
      inFlight: this.slots.inFlight,
      limit: this.slots.limit,
      healthy: !this.isDown(now) && !this.isOut(now),
      requests: this.requests,
      errors: this.errors,
      promptTokens: this.promptTokens,
      completionTokens: this.completionTokens,
      waiting: this.slots.waiting,
      latencyMs: Math.round(this.latencyMs),
      maxConcurrency: this.maxConcurrency,
      ...(now - this.reportedAt < STALE_MS ? { serverRunning: this.serverRunning, serverWaiting: this.serverWaiting } : {}),
      ...(this.serverSlots !== undefined ? { serverSlots: this.serverSlots } : {}),
      ...(this.dialect ? { kind: this.dialect.kind } : {}),
      ...(this.contextTokens !== undefined ? { contextTokens: this.contextTokens } : {}),
      ...(this.missingMetrics.length > 0 ? { missingMetrics: this.missingMetrics } : {}),
    };
  }
}
