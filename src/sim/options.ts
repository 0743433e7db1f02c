import { z } from "zod";
import { ConfigError } from "../errors.ts";
import { formatIssues } from "../util/issues.ts";

const rate = z.number().min(0).max(1);

/** The servers the sim can impersonate; each answers with that server's own protocol surface. */
export const SIM_KINDS = ["vllm", "sglang", "llamacpp", "tgi", "openai"] as const;
/** One of SIM_KINDS. */
export type SimKind = (typeof SIM_KINDS)[number];

/** How the waiting queue is ordered: arrival, or the request's `priority` then arrival (vLLM's --scheduling-policy). */
export const SCHEDULING_POLICIES = ["fcfs", "priority"] as const;
/** The kinds whose servers have a priority scheduler; the others schedule first come, first served. */
export const PRIORITY_KINDS: readonly SimKind[] = ["vllm", "sglang"];

/**
 * Settings of one simulated LLM server. Every field has a default, so `{}`
 * is a valid configuration: a 256-slot server whose ceiling is about 80,000
 * generated tokens per second of wall time.
 */
export const SimOptionsSchema = z
  .strictObject({
    /** sequences that decode at once; more requests wait in FIFO order */
    slots: z.number().int().min(1).max(1_000_000).default(256),
    /** fixed cost of one decode step, virtual ms */
    stepBaseMs: z.number().min(0).default(25),
    /** extra cost of one decode step per running sequence, virtual ms */
    stepPerSeqMs: z.number().min(0).default(0.15),
    /** prompt tokens prefilled per second of virtual time */
    prefillTps: z.number().positive().default(50_000),
    /** wall ms per virtual ms */
    timeScale: z.number().positive().default(0.05),
    /** when above 0, sets timeScale so that the ceiling is this many tokens/s */
    decodeTps: z.number().min(0).default(0),
    /** the one model name served */
    model: z.string().min(1).default("sim-llm"),
    /** median output length, tokens (lognormal) */
    lenMedian: z.number().min(1).default(120),
    /** sigma of the lognormal output length */
    lenSigma: z.number().min(0).default(1.0),
    /** hard cap on output length, tokens */
    maxLen: z.number().int().min(1).default(4096),
    /** chance that a dialogue turn answers correctly when it can */
    accuracy: rate.default(0.7),
    /** chance that a dialogue turn adopts the peer's latest answer */
    agreeRate: rate.default(0.5),
    /** chance that a dialogue turn answers "not sure" */
    unsureRate: rate.default(0.08),
    /** chance of answering with a tool call when tools are offered */
    toolCallRate: rate.default(0.6),
    /** chance that a tool call is malformed */
    badToolCallRate: rate.default(0.05),
    /** share of chat requests answered 500 */
    errorRate: rate.default(0),
    /** share of chat requests answered 429 with Retry-After */
    rateLimitRate: rate.default(0),
    /** 0 = never; else the server stops (the CLI exits with code 3) after this many seconds */
    dieAfterSec: z.number().min(0).default(0),
    /** whether repeated prompt prefixes skip their prefill */
    prefixCache: z.boolean().default(true),
    host: z.string().min(1).default("127.0.0.1"),
    /** 0 = a random free port */
    port: z.number().int().min(0).max(65535).default(0),
    /** which server to impersonate (protocol surface only: capacity, content and skills are the same) */
    kind: z.enum(SIM_KINDS).default("vllm"),
    /**
     * "priority": waiting requests are ordered by their `priority` field
     * (vLLM's --scheduling-policy priority, SGLang's
     * --enable-priority-scheduling); vllm and sglang kinds only
     */
    schedulingPolicy: z.enum(SCHEDULING_POLICIES).default("fcfs"),
    /** tokens of context per sequence (vLLM max_model_len, llama.cpp per-slot n_ctx, ...) */
    contextTokens: z.number().int().min(16).max(100_000_000).default(131_072),
    /** llama.cpp: whether /metrics is on (its --metrics); else it answers 501 */
    metrics: z.boolean().default(true),
    /** llama.cpp: its --jinja; without it requests with tools are refused */
    jinja: z.boolean().default(true),
    /** llama.cpp: HTTP threads (--threads-http), requests handled at once on every route; 0 = slots + 2 */
    httpThreads: z.number().int().min(0).max(1_000_000).default(0),
    /** TGI: --max-concurrent-requests; past it requests get 429 "Model is overloaded" */
    maxConcurrentRequests: z.number().int().min(1).max(10_000_000).default(128),
    /** hosted API: requests per minute (0 = no limit) */
    rpm: z.number().int().min(0).default(0),
    /** hosted API: tokens per minute (0 = no limit) */
    tpm: z.number().int().min(0).default(0),
    /** when set, requests must carry `Authorization: Bearer <apiKey>` (as each server checks it) */
    apiKey: z.string().min(1).optional(),
    /** a reasoning model: answers carry thinking (reasoning_content, as each kind returns it) */
    reasoning: z.boolean().default(false),
    /** whether /metrics also carries the sim:* series (and openai gets a /metrics of them alone) */
    simMetrics: z.boolean().default(true),
    /**
     * scripted replies, tried before the built-in answers: a YAML or JSON
     * file of rules (a relative path is read from the working directory), or
     * the list of rules itself (see script.ts)
     */
    script: z.union([z.string().min(1), z.array(z.unknown())]).optional(),
    /** request bodies larger than this are answered 413 */
    maxBodyBytes: z
      .number()
      .int()
      .min(1024)
      .default(8 * 1024 * 1024),
  })
  .refine((o) => o.stepBaseMs + o.stepPerSeqMs > 0, {
    message: "stepBaseMs + stepPerSeqMs must be above 0",
    path: ["stepBaseMs"],
  })
  .refine((o) => o.errorRate + o.rateLimitRate <= 1, {
    message: "errorRate + rateLimitRate must be at most 1",
    path: ["errorRate"],
  })
  // llama.cpp, TGI and hosted APIs have no priority scheduler to turn on: pretending one would be a server that does not exist
  .refine((o) => o.schedulingPolicy === "fcfs" || PRIORITY_KINDS.includes(o.kind), {
    message: `"priority" is for kinds ${PRIORITY_KINDS.join(" and ")} only (llamacpp, tgi and openai serve first come, first served)`,
    path: ["schedulingPolicy"],
  });

/** Options as a caller writes them (all optional). */
export type SimOptions = z.input<typeof SimOptionsSchema>;

/**
 * Options after defaults, with `timeScale` already derived from `decodeTps`
 * when that is set and `httpThreads` filled in (never 0).
 */
export type ResolvedSimOptions = z.output<typeof SimOptionsSchema>;

/** Decode rate with every slot busy, tokens per second of virtual time. */
function virtualCeiling(o: Pick<ResolvedSimOptions, "slots" | "stepBaseMs" | "stepPerSeqMs">): number {
  return (o.slots * 1000) / (o.stepBaseMs + o.stepPerSeqMs * o.slots);
}

/**
 * The most tokens per second of wall time a server with these options can
 * generate: every slot busy, no prefill.
 */
export function ceilingTps(o: Pick<ResolvedSimOptions, "slots" | "stepBaseMs" | "stepPerSeqMs" | "timeScale">): number {
  return virtualCeiling(o) / o.timeScale;
}

/**
 * Applies defaults and checks ranges; throws ConfigError naming the first bad
 * field. `decodeTps`, when set, replaces `timeScale`.
 */
export function resolveSimOptions(opts: SimOptions = {}): ResolvedSimOptions {
  const parsed = SimOptionsSchema.safeParse(opts);
  if (!parsed.success) {
    throw new ConfigError(`Bad sim-llm option ${formatIssues(parsed.error, 1)}`);
  }
  const o = { ...parsed.data };
  // llama.cpp's --threads-http default is max(parallel + 2, cores - 1); the sim takes parallel + 2
  if (o.httpThreads === 0) o.httpThreads = o.slots + 2;
  if (o.decodeTps > 0) o.timeScale = virtualCeiling(o) / o.decodeTps;
  return o;
}
