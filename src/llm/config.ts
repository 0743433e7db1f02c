import { z } from "zod";
import { ConfigError } from "../errors.ts";
import { KIND_SETTINGS } from "./dialect/types.ts";
import { formatIssues } from "../util/issues.ts";

const envVarName = z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, "must be an environment variable name");

/** One OpenAI-compatible server (vLLM, SGLang, llama.cpp, TGI, a hosted API). */
export const LlmEndpointConfigSchema = z.strictObject({
  /** base URL, e.g. `http://10.0.0.5:8000/v1`; a bare `http://host:port` gets `/v1` */
  url: z.url({ protocol: /^https?$/ }).transform(normalizeBaseUrl),
  /** models it serves; when absent they are read from `GET {url}/models` on first use */
  models: z.array(z.string().min(1)).min(1).optional(),
  /**
   * the server's kind, which decides how its load is read, which field
   * carries structured output and what its errors mean; `auto` finds it
   * out once (from /v1/models, /props, /get_server_info, /info, /metrics)
   */
  kind: z.enum(KIND_SETTINGS).default("auto"),
  /**
   * sequences the server runs at once, when it does not say so itself
   * (vLLM's `--max-num-seqs`); llama.cpp, SGLang and TGI tell theirs
   */
  slots: z.number().int().positive().optional(),
  /**
   * most requests in flight at once, whatever else is known. Below it the
   * limit follows what the server can run (its slots plus a short queue)
   * and what it reports of its queue and latency.
   */
  maxConcurrency: z.number().int().positive().default(1024),
  /** requests per minute */
  rpm: z.number().positive().optional(),
  /** tokens (prompt + completion) per minute */
  tpm: z.number().positive().optional(),
  /**
   * read the server's own load from its Prometheus metrics every second:
   * by default where its kind keeps them (`/metrics` on the URL's host;
   * hosted APIs have none), `false` for never, or the metrics URL itself.
   * An endpoint whose metrics refuse connections is taken out until they
   * answer again.
   */
  metrics: z.union([z.boolean(), z.url({ protocol: /^https?$/ })]).optional(),
  /** the environment variable holding its API key, sent as `Authorization: Bearer ...` */
  apiKeyEnv: envVarName.optional(),
  /**
   * send each request's `priority` (see the client's `priority` policy): for
   * a server that schedules by it, vLLM started with `--scheduling-policy
   * priority`. A server that refuses the field (vLLM's default fcfs policy
   * answers 400) is sent none from then on, with a warning
   */
  priority: z.boolean().optional(),
});
export type LlmEndpointConfig = z.infer<typeof LlmEndpointConfigSchema>;
/** An endpoint as a caller writes it (defaults not yet applied). */
export type LlmEndpointInput = z.input<typeof LlmEndpointConfigSchema>;

const EndpointListSchema = z
  .array(LlmEndpointConfigSchema)
  .min(1)
  .superRefine((endpoints, ctx) => {
    const seen = new Set<string>();
    for (const [i, ep] of endpoints.entries()) {
      if (seen.has(ep.url)) ctx.addIssue({ code: "custom", path: [i, "url"], message: `${ep.url} is listed twice` });
      seen.add(ep.url);
    }
  });

/** The endpoint a client gets when it is given none: a local vLLM's default port. */
export const DEFAULT_ENDPOINT = { url: "http://127.0.0.1:8000/v1" };

/** The LLM client's settings; every field has a default. */
export const LlmConfigSchema = z.strictObject({
  endpoints: EndpointListSchema.prefault([DEFAULT_ENDPOINT]),
  /**
   * per attempt, from sending the request to the last byte of the answer, at
   * most; a request with `max_tokens` is given less (see answerTimeoutMs)
   */
  timeoutMs: z.number().int().positive().default(600_000),
  /**
   * an attempt of a request with `max_tokens` must be answered in full within
   * this plus `msPerToken` per token of `max_tokens` (up to `timeoutMs`): the
   * answer is not streamed, so its first byte comes once it is generated, and
   * a server that never answers, or trickles, is given up on after that
   */
  answerTimeoutMs: z.number().int().positive().default(60_000),
  /** the time a token of `max_tokens` adds to `answerTimeoutMs` (100 ms: a heavily loaded server's 10 tokens/s) */
  msPerToken: z.number().nonnegative().default(100),
  /** once the answer has begun, the longest gap between its bytes */
  idleTimeoutMs: z.number().int().positive().default(30_000),
  /**
   * the most bytes an answer may have: with `max_tokens`, 16 bytes a token
   * (at least 1 MiB), up to this; a longer answer is cut off and failed
   */
  maxAnswerBytes: z.number().int().positive().default(8 * 1024 * 1024),
  /** retries after the first attempt, on 429, 5xx, timeouts and network errors */
  retries: z.number().int().nonnegative().default(6),
  /** first backoff step; step n waits a random time in [0, backoffMs * 2^n) */
  backoffMs: z.number().int().nonnegative().default(250),
  maxBackoffMs: z.number().int().nonnegative().default(20_000),
  /** cut an endpoint's concurrency on 429s and timeouts, grow it back on success */
  adaptive: z.boolean().default(true),
  /** send a task's calls to the same endpoint while it is not overloaded (prefix-cache reuse) */
  affinity: z.boolean().default(true),
  /** leave a task's sticky endpoint when its load exceeds the least-loaded one's by this factor */
  stickyOverload: z.number().min(1).default(1.5),
  /**
   * which of the requests waiting for an endpoint go first, in the client's
   * own queue and, where the endpoint takes a `priority`, in the server's:
   * `admission` (default) the oldest task's (the one admitted first), so a
   * long dialogue's later turns do not queue behind every young task's
   * first one; `steps` the task with the most steps done (the furthest
   * along finish first); `fewest-steps` the task with the fewest (tasks
   * move in step, so a job whose tasks are all in flight ends soonest);
   * `none` the order the requests came in
   */
  priority: z.enum(["admission", "steps", "fewest-steps", "none"]).default("admission"),
  /** extra tries `chatJson` makes when a reply fails its schema */
  structuredRetries: z.number().int().nonnegative().default(2),
  /**
   * how long a request waits for an endpoint serving its model to come back
   * when every such endpoint is out (a supervised server restarting, metrics
   * unreachable) or refuses connections after it answered before (a server
   * that died): such failures spend no retries meanwhile, and admission
   * pauses; vLLM may take minutes to load
   */
  waitOnlineMs: z.number().int().nonnegative().default(900_000),
  /** sent as `Authorization: Bearer ...` to endpoints without their own key (for programs; config files name a variable) */
  apiKey: z.string().min(1).optional(),
  /** the environment variable holding the API key of endpoints without their own `apiKeyEnv` */
  apiKeyEnv: envVarName.optional(),
});
export type LlmConfig = z.infer<typeof LlmConfigSchema>;
export type LlmConfigInput = z.input<typeof LlmConfigSchema>;

/**
 * The `llm` section of a node's config: the client's settings, with the
 * endpoints left out when the user lists none (the node's endpoints then
 * come from `--llm` and `--supervise`, not a default URL).
 */
export const LlmSectionSchema = LlmConfigSchema.extend({
  endpoints: EndpointListSchema.optional(),
  // a key written in a config file ends up in backups, diffs and job records
  apiKey: z.never({ error: "an API key does not belong in a config file: put it in an environment variable and name it with apiKeyEnv" }).optional(),
});
export type LlmSection = z.infer<typeof LlmSectionSchema>;

/**
 * Validate and complete an LLM config.
 *
 * @throws ConfigError naming the first bad field, e.g.
 *   `Invalid LLM config: endpoints.0.url: Invalid URL`
 *
 * @example
 * ```ts
 * const config = parseLlmConfig({ endpoints: [{ url: "http://127.0.0.1:8000" }] });
 * config.endpoints[0].url; // "http://127.0.0.1:8000/v1"
 * ```
 */
export function parseLlmConfig(input: unknown): LlmConfig {
  const parsed = LlmConfigSchema.safeParse(input ?? {});
  if (!parsed.success) {
    throw new ConfigError(`Invalid LLM config: ${formatIssues(parsed.error, 1)}`);
  }
  return parsed.data;
}

/**
 * The base URL requests are built on: no trailing slash, and `/v1` added when
 * the URL has no path at all. Other paths are kept, since some hosted APIs
 * serve the OpenAI routes under their own prefix.
 */
export function normalizeBaseUrl(url: string): string {
  let end = url.length;
  while (end > 0 && url.charCodeAt(end - 1) === 47 /* / */) end--;
  const trimmed = url.slice(0, end);
  const path = new URL(trimmed).pathname;
  return path === "/" || path === "" ? `${trimmed}/v1` : trimmed;
}
