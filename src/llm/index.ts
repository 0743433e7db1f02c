/** The LLM client: endpoints, retries, adaptive concurrency, structured output. */
export {
  LlmConfigSchema,
  LlmEndpointConfigSchema,
  normalizeBaseUrl,
  parseLlmConfig,
  type LlmConfig,
  type LlmConfigInput,
  type LlmEndpointConfig,
  type LlmEndpointInput,
} from "./config.ts";
export type { LoadReport } from "./endpoint.ts";
export { LlmAbortError, LlmClientImpl, createLlmClient, type FetchLike, type LlmClientOptions } from "./client.ts";
export { chatJson, parseJsonReply, StructuredReplyError, sumUsage, type ChatJsonOptions, type ChatJsonResult, type JsonReply } from "./structured.ts";
export { parseRetryAfter } from "./wire.ts";
export type { ChatMessage, ChatOptions, ChatRequest, ChatResult, EndpointInfo, LlmClient, ManagedLlmClient, ToolSpec } from "./types.ts";
export { QUEUE_FACTOR, llmCapacity } from "./capacity.ts";
