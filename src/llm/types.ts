import type { LlmError } from "../errors.ts";
import type { Histogram } from "../metrics/histogram.ts";
import type { EndpointInfo } from "../protocol/member.ts";
import type { ToolCall, Usage } from "../protocol/task.ts";
import type { LlmEndpointInput } from "./config.ts";
import type { LoadReport } from "./endpoint.ts";

/** A chat message in the OpenAI chat completions shape. */
export interface ChatMessage {
  role: "system" | "user" | "assistant" | "tool";
  content: string | null;
  name?: string;
  tool_call_id?: string;
  tool_calls?: { id: string; type: "function"; function: { name: string; arguments: string } }[];
}

/** A tool an LLM may call (OpenAI `tools` entry). */
export interface ToolSpec {
  type: "function";
  function: { name: string; description?: string; parameters?: Record<string, unknown> };
}

/** What an agent asks of an LLM. `model` picks among endpoints serving it. */
export interface ChatRequest {
  model?: string;
  messages: ChatMessage[];
  max_tokens?: number;
  temperature?: number;
  top_p?: number;
  seed?: number;
  stop?: string[];
  tools?: ToolSpec[];
  tool_choice?: unknown;
  response_format?: unknown;
}

/** One completed chat call. */
export interface ChatResult {
  text: string;
  /** a reasoning model's thinking (`reasoning_content`), kept apart from the text */
  reasoning?: string;
  toolCalls: ToolCall[];
  finishReason: string;
  usage: Usage;
  /** base URL of the endpoint that answered */
  endpoint: string;
  /** the model asked for (or, when the request named none, the one the endpoint lists first) */
  model: string;
  /** the model name in the server's answer, when it differs (llama.cpp says `gpt-3.5-turbo` whatever it serves) */
  servedModel?: string;
  ms: number;
  /** 1 when the first try succeeded */
  attempts: number;
}

export interface ChatOptions {
  signal?: AbortSignal;
  /** a key (the task id) whose calls should go to the same endpoint when possible */
  affinity?: string;
  /** the task making the call, for the client's `priority` policy: when it was admitted (epoch ms) and its steps done */
  task?: { admitted: number; steps: number };
}

/** How long the answered calls of one model at one endpoint took, ms (one attempt each, from send to answer). */
export interface CallDurations {
  endpoint: string;
  model: string;
  hist: Histogram;
}

/** The one LLM client agents use. */
export interface LlmClient {
  chat(req: ChatRequest, opts?: ChatOptions): Promise<ChatResult>;
  /** the endpoints known, with their live load */
  endpoints(): EndpointInfo[];
  /** the durations of the calls answered, per endpoint and model (for /metrics) */
  callDurations?(): Iterable<CallDurations>;
  close(): Promise<void>;
  /** requests waiting now for an endpoint of their model to come back (admission pauses meanwhile) */
  waitingForEndpoint?(): number;
  /** extra tries `chatJson` makes when a reply fails its schema (from the client's config) */
  readonly structuredRetries?: number;
}

/**
 * The client `createLlmClient` builds: its endpoints change at run time
 * (supervised servers that restart, endpoints other nodes advertise) and
 * take the servers' own load and health. See LlmClientImpl for each method.
 */
export interface ManagedLlmClient extends LlmClient {
  /** make `source`'s endpoints exactly these; the others' stay */
  setEndpoints(endpoints: readonly LlmEndpointInput[], source?: string): void;
  addEndpoint(endpoint: LlmEndpointInput, source?: string): void;
  /** true when the endpoint is gone (no other source lists it) */
  removeEndpoint(url: string, source?: string): boolean;
  /** a server's own running and waiting requests (its /metrics); false for an unknown URL */
  reportLoad(url: string, load: LoadReport): boolean;
  /** whether an endpoint is up; one reported down is never chosen; false for an unknown URL */
  setHealth(url: string, up: boolean): boolean;
  /** find out what new endpoints are (kind, slots, context) and read the polled endpoints' metrics now */
  refreshLoad(): Promise<void>;
  /** `fn` hears once that the first calls all failed with a configuration error, none answered */
  onFatal(fn: (err: LlmError) => void): () => void;
  /** requests waiting now because no endpoint for their model is up */
  waitingForEndpoint(): number;
  /** `fn` hears each endpoint going down and coming back, once per change */
  onStanding(fn: (change: EndpointStanding) => void): () => void;
}

/** An endpoint went down (failing, or reported out) or came back. */
export interface EndpointStanding {
  url: string;
  up: boolean;
  /** why it went down */
  reason?: string;
}

/** One endpoint as this client sees it (the shape members advertise it in). */
export type { EndpointInfo };
