/**
 * What differs between OpenAI-compatible servers: how they report load,
 * which field carries a structured-output constraint, what their grammar
 * converters accept, what their errors mean and how much they can run.
 * One `Dialect` per server kind; the client holds one per endpoint.
 */

/** The server kinds matrixd speaks to. `auto` is found out once per endpoint. */
export const SERVER_KINDS = ["vllm", "sglang", "llamacpp", "tgi", "openai"] as const;
export type ServerKind = (typeof SERVER_KINDS)[number];
export const KIND_SETTINGS = [...SERVER_KINDS, "auto"] as const;
export type KindSetting = (typeof KIND_SETTINGS)[number];

/** A server's load, read off its metrics. */
export interface ServerLoad {
  /** requests being generated */
  running: number;
  /** requests queued in the server */
  waiting: number;
  /** KV-cache share in use, 0..1, when the server says */
  cacheUsage?: number;
  /** cumulative counters, when the server has them (0 otherwise) */
  promptTokens: number;
  generationTokens: number;
  /** prompt tokens looked up in, and found in, the prefix cache (0 when absent) */
  prefixQueries: number;
  prefixHits: number;
  /** sequences the server runs at once, when its metrics say (`sim:slots`) */
  slots?: number;
  /** names this kind's metrics should have had and did not (said once by the caller) */
  missing: string[];
}

/** What a server says of itself on its info routes. */
export interface ServerInfo {
  /** sequences run at once: llama.cpp `/props` total_slots, SGLang max_running_requests, TGI max_concurrent_requests */
  slots?: number;
  /** requests it admits at once, past which it refuses (TGI's max_concurrent_requests): a cap, not its batch */
  maxRequests?: number;
  /** tokens of context per sequence (prompt + completion): llama.cpp n_ctx, vLLM max_model_len, ... */
  contextTokens?: number;
  /** the build or version, for the log */
  version?: string;
}

/** A probe of one info route: where to GET, and how to read the JSON answer. */
export interface InfoProbe {
  /** path on the server's origin (e.g. `/props`) or on the base URL when it starts with `v1/`... see `url` */
  url(baseUrl: string): string;
  read(json: unknown): ServerInfo;
}

/** Rate-limit state a hosted API reports in its `x-ratelimit-*` headers. */
export interface RateLimitReport {
  limitRequests?: number;
  remainingRequests?: number;
  /** ms until the request budget is whole again */
  resetRequestsMs?: number;
  limitTokens?: number;
  remainingTokens?: number;
  resetTokensMs?: number;
}

/** What an error answer means for the request that got it. */
export type ErrorClass =
  /** try again (elsewhere, later): overload, a crash, a restart */
  | "transient"
  /** the server is full: back off and cut concurrency */
  | "overload"
  /** the request can never succeed here as sent: a bad field, an unknown model, a server started without a needed flag */
  | "config"
  /** the prompt (plus max_tokens) does not fit the server's context */
  | "context";

/** One server kind's dialect. */
export interface Dialect {
  readonly kind: ServerKind;
  /** where its Prometheus metrics are, from the base URL; undefined when it has none (hosted APIs) */
  metricsUrl(baseUrl: string): string | undefined;
  /** read the load off its Prometheus text */
  parseLoad(text: string): ServerLoad;
  /** the routes that tell its slots and context size, tried once */
  readonly infoProbes: readonly InfoProbe[];
  /**
   * Put a structured-output constraint into a request body the way this
   * server honours it (the body already has `response_format` removed).
   * `format` is the OpenAI `response_format` the workflow gave
   * (`json_object`, `json_schema` with `json_schema.schema`) or matrixd's
   * `{ type: "regex", pattern }`.
   */
  applyFormat(body: Record<string, unknown>, format: Record<string, unknown>): void;
  /** a JSON Schema rewritten where this server's grammar converter is known to choke (`\d` -> `[0-9]`...) */
  rewriteSchema(schema: Record<string, unknown>): Record<string, unknown>;
  /** the field the completion cap goes in */
  readonly maxTokensField: "max_tokens" | "max_completion_tokens";
  /**
   * a request's `priority` runs first when higher (SGLang's default; vLLM
   * runs the lower first): matrixd's priorities, lower first, are sent negated
   */
  readonly priorityHigherFirst?: boolean;
  /** tools must carry a description (llama.cpp b4748 answers 500 without one) */
  readonly toolsNeedDescription: boolean;
  /** what an error answer means, from its status and the server's own words */
  classifyError(status: number, message: string): ErrorClass;
  /** hosted APIs: rate-limit headers of an answer; undefined when none */
  readRateLimit?(headers: Headers, nowMs: number): RateLimitReport | undefined;
}
