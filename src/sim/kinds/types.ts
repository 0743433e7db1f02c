import type { AnswerView, Composed } from "../content.ts";
import type { EngineCounters } from "../engine.ts";
import type { ServerCounters } from "../metrics.ts";
import type { ResolvedSimOptions, SimKind } from "../options.ts";
import type { ChatBody } from "../request.ts";

/**
 * The protocol surface of one server kind (vLLM, SGLang, llama.cpp, TGI, a
 * hosted OpenAI-style API): its routes, the fields it reads, its refusals in
 * its own words and shapes, and the bodies of its answers. The capacity
 * model, the content and the skills are the same whatever the kind; the
 * server picks one surface when it starts, so nothing on the hot path asks
 * which kind it is.
 */

/** Everything an answer's body is made of. */
export interface ReplyInfo {
  id: string;
  created: number;
  /** the model name the answer carries */
  model: string;
  /** prompt tokens as the server counted them */
  promptTokens: number;
  cachedTokens: number;
  composed: Composed;
  /** the tool call's id, as this kind makes them */
  toolCallId: string;
  /** whether the request asked for usage at the end of the stream */
  includeUsage: boolean;
  /** wall ms from arrival to the end, set when the answer is done (llama.cpp's timings) */
  elapsedMs?: number;
}

/**
 * Writes the SSE text of one streamed answer in a kind's shape. Each method
 * returns what to send ("" for nothing); the stream decides what comes when.
 */
export interface StreamEncoder {
  /** before the first token (the role delta, where the kind sends one) */
  open(): string;
  /** a piece of the thinking; `first`/`last` mark its ends (for kinds that inline it in tags) */
  reasoning(piece: string, first: boolean, last: boolean): string;
  /** a piece of the answer's text */
  content(piece: string): string;
  /** the first delta of the tool call (its id and name) */
  toolName(): string;
  /** a piece of the tool call's arguments */
  toolArgs(piece: string): string;
  /** the end: the finish chunk, the usage when sent, and the end marker */
  close(): string;
}

/** The live figures a kind's info and metrics routes show. */
export interface SimLive {
  o: ResolvedSimOptions;
  /** the port listened on (known once the server is up) */
  port: number;
  /** epoch ms */
  startedAt: number;
  ceilingTps: number;
  engine(): EngineCounters;
  server: ServerCounters;
  prefix: { readonly queries: number; readonly hits: number };
  /** HTTP requests being handled and waiting for a thread (llama.cpp's pool) */
  http: { busy: number; waiting: number };
}

/** Lets a streaming answer keep its HTTP thread until it ends (llama.cpp's pool). */
export interface Lease {
  /** the handler keeps the thread past its return; it calls release() itself */
  hold(): void;
  /** gives the thread back; idempotent */
  release(): void;
}

/** A request handler. */
export type Handler = (req: Request, lease: Lease) => Response | Promise<Response>;

/** What a kind makes of a valid request it will answer. */
export interface Admission extends AnswerView {
  /** the model name its answers carry */
  model: string;
  /** prompt tokens as the server counts them (llama.cpp cuts over-long prompts) */
  promptTokens: number;
  /** headers of the answer (a hosted API's rate limits) */
  headers?: Record<string, string>;
  /** the engine's queue key under the "priority" policy (lower runs first), from the kind's own request field */
  priority?: number;
}

/** Refusals every kind has; each kind words and shapes them its own way. */
export type Refusal =
  | { why: "json"; detail: string }
  | { why: "schema"; message: string; param: string | null; missing: boolean }
  | { why: "size"; max: number }
  | { why: "route"; method: string; path: string; known: boolean }
  | { why: "injected"; status: 500 | 429 }
  /** a rule of the sim script answers this status and message */
  | { why: "scripted"; status: number; message: string }
  | { why: "stopping" }
  | { why: "dropped" }
  | { why: "gone" };

/** One kind's protocol surface; see the file comment. */
export interface KindSurface {
  readonly kind: SimKind;
  /** GET routes besides chat completions: health, models, metrics, info */
  readonly routes: Readonly<Record<string, Handler>>;
  readonly jsonHeaders: Readonly<Record<string, string>>;
  readonly sseHeaders: Readonly<Record<string, string>>;
  /** the check before anything else on every route (an API key): a refusal, or undefined */
  gate?(req: Request, path: string): Response | undefined;
  /** one of the common refusals, in the kind's shape */
  refuse(r: Refusal): Response;
  /** refusals of the raw JSON body that the kind makes before the common schema */
  screen(raw: unknown): Response | undefined;
  /** a refusal of a valid request (model, context, tools...), or what to answer */
  admit(body: ChatBody, promptTokens: number): Response | Admission;
  /** with the "priority" policy: how far (in queue keys) a waiting request must outrank a running one to preempt it; absent = never */
  readonly preemptGap?: number;
  /** the id of the n-th answer */
  replyId(n: number): string;
  /** the id of a tool call, from the request hash (so the same request calls with the same id) */
  toolCallId(hash: number): string;
  /** the non-streamed answer's body */
  completion(r: ReplyInfo): string;
  /** the streamed answer's writer */
  stream(r: ReplyInfo): StreamEncoder;
  /** notes an answered request (for kinds whose metrics keep per-request histograms) */
  done?(r: ReplyInfo, seconds: number): void;
  /** wraps every handler (llama.cpp's HTTP thread pool); absent = called as is */
  wrap?(h: Handler): (req: Request) => Promise<Response>;
}
