/** The LLM client: endpoints, retries, adaptive concurrency, structured output. */
export {
  LlmConfigSchema,
  LlmEndpointConfigSchema,
  normalizeBaseUrl,
  parseLlmConfig,
  type LlmConfig,
  type LlmConfigInput,
  type LlmEndpointConfig,
} from "./config.ts";
export { LlmAbortError, LlmClientImpl, createLlmClient, type FetchLike, type LlmClientOptions } from "./client.ts";
export { chatJson, parseJsonReply, type ChatJsonOptions, type ChatJsonResult, type JsonReply } from "./structured.ts";
export { parseRetryAfter } from "./wire.ts";
export type { ChatMessage, ChatOptions, ChatRequest, ChatResult, EndpointInfo, LlmClient, ToolSpec } from "./types.ts";
