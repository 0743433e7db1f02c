/**
 * The OpenAI chat completions wire format: the request body sent, the answer
 * accepted, and how failures are described.
 */
import { z } from "zod";

import type { ToolCall } from "../protocol/task.ts";

import type { Dialect } from "./dialect/types.ts";

import type { ChatRequest, ToolSpec } from "./types.ts";

import { formatIssues } from "../util/issues.ts";
import { isRecord } from "../util/record.ts";


/**
 * The JSON body of `POST /chat/completions`, in the endpoint's dialect:
 * structured output in the field its server honours (with the schema
 * rewritten where its grammar converter chokes), tools as it takes them,
 * the completion cap under the name it wants. Without a dialect (a server
 * not yet known), structured output is spelled both the OpenAI and the
 * vLLM way.
 */
export function buildChatBody(req: ChatRequest, model: string | undefined, dialect?: Dialect, priority?: number): string {
  const body: Record<string, unknown> = {};
  if (model !== undefined) body.model = model;
  body.messages = req.messages;
  if (req.max_tokens !== undefined) body[dialect?.maxTokensField ?? "max_tokens"] = req.max_tokens;
  if (req.temperature !== undefined) body.temperature = req.temperature;
  if (req.top_p !== undefined) body.top_p = req.top_p;
  if (req.seed !== undefined) body.seed = req.seed;
  if (req.stop !== undefined) body.stop = req.stop;
  if (req.tools !== undefined) body.tools = dialect ? req.tools.map((t) => toolFor(t, dialect)) : req.tools;
  if (req.tool_choice !== undefined) body.tool_choice = req.tool_choice;
  const format = req.response_format;
  if (dialect && isRecord(format)) {
    dialect.applyFormat(body, formatFor(format, dialect));
  } else if (isRecord(format) && format.type === "regex" && typeof format.pattern === "string") {
    body.guided_regex = format.pattern;
  } else if (format !== undefined) {
    body.response_format = format;
    if (isRecord(format) && format.type === "json_schema" && isRecord(format.json_schema)) {
      body.guided_json = format.json_schema.schema;
    }
  }
  if (priority !== undefined) body.priority = priority;
  body.stream = false;
  return JSON.stringify(body);
}

/** Tools as a dialect takes them, made once per tool object and kind (workflows reuse theirs). */
const toolCache = new WeakMap<ToolSpec, Map<string, ToolSpec>>();

function toolFor(tool: ToolSpec, dialect: Dialect): ToolSpec {
  let byKind = toolCache.get(tool);
  const known = byKind?.get(dialect.kind);
  if (known) return known;
  const fn = tool.function;
  const fixed: ToolSpec = {
    type: "function",
    function: {
      name: fn.name,
      // llama.cpp answers 500 for a tool without one
      ...(fn.description !== undefined ? { description: fn.description } : dialect.toolsNeedDescription ? { description: fn.name } : {}),
      ...(fn.parameters !== undefined ? { parameters: dialect.rewriteSchema(fn.parameters) } : {}),
    },
  };
  if (!byKind) toolCache.set(tool, (byKind = new Map()));
  byKind.set(dialect.kind, fixed);
  return fixed;
}

/** A response format with its JSON Schema rewritten for the dialect. */
function formatFor(format: Record<string, unknown>, dialect: Dialect): Record<string, unknown> {
  const js = format.json_schema;
  if (format.type === "json_schema" && isRecord(js) && isRecord(js.schema)) {
    return { ...format, json_schema: { ...js, schema: dialect.rewriteSchema(js.schema) } };
  }
  if (isRecord(format.schema)) return { ...format, schema: dialect.rewriteSchema(format.schema) };
  return format;
}

const WireToolCallSchema = z.object({
  id: z.string().optional(),
  function: z.object({
    name: z.string(),
    // some servers (Ollama) send the arguments as an object
    arguments: z.union([z.string(), z.record(z.string(), z.unknown())]).optional(),
  }),
});

const CompletionSchema = z.object({
  model: z.string().optional(),
  choices: z
    .array(
      z.object({
        message: z.object({
          content: z.string().nullish(),
          // vLLM, SGLang and llama.cpp (--reasoning-format) name it reasoning_content; recent vLLM also reasoning
          reasoning_content: z.string().nullish(),
          reasoning: z.string().nullish(),
          tool_calls: z.array(WireToolCallSchema).nullish(),
        }),
        finish_reason: z.string().nullish(),
      }),
    )
    .min(1),
  usage: z
    .object({
      prompt_tokens: z.number().nonnegative(),
      completion_tokens: z.number().nonnegative(),
      completion_tokens_details: z.object({ reasoning_tokens: z.number().nonnegative().nullish() }).nullish(),
    })
    .nullish(),
});

/** A chat completion as the client uses it. */
export interface Completion {
  text: string;
  reasoning: string | undefined;
  toolCalls: ToolCall[];
  finishReason: string;
  model: string | undefined;
  prompt: number;
  completion: number;
  /** reasoning tokens, of the completion, when the server says */
  reasoningTokens: number | undefined;
}

/** The parsed answer, or what was wrong with it. */
export type ParsedCompletion = { ok: true; value: Completion } | { ok: false; problem: string };

const NO_TOOL_CALLS: ToolCall[] = [];

/** Parse the body of a 2xx answer; anything that is not a chat completion is a problem. */
export function parseCompletion(text: string): ParsedCompletion {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return { ok: false, problem: `not JSON: ${snippet(text)}` };
  }
  const parsed = CompletionSchema.safeParse(json);
  if (!parsed.success) {
    return { ok: false, problem: `not a chat completion (${formatIssues(parsed.error, 1)}): ${snippet(text)}` };
  }
  const data = parsed.data;
  const choice = data.choices[0];
  if (choice === undefined) return { ok: false, problem: `no choices: ${snippet(text)}` };
  const wireCalls = choice.message.tool_calls;
  let toolCalls = NO_TOOL_CALLS;
  if (wireCalls && wireCalls.length > 0) {
    toolCalls = wireCalls.map((c) => {
      const args = c.function.arguments;
      return {
        // llama.cpp sends id "" and TGI "0": the dataset's call ids must still be unique
        id: c.id && !NUMBERING.test(c.id) ? c.id : newCallId(),
        name: c.function.name,
        arguments: args === undefined ? "{}" : typeof args === "string" ? args : JSON.stringify(args),
      };
    });
  }
  return {
    ok: true,
    value: {
      text: choice.message.content ?? "",
      reasoning: choice.message.reasoning_content || choice.message.reasoning || undefined,
      toolCalls,
      finishReason: choice.finish_reason ?? (toolCalls.length > 0 ? "tool_calls" : "stop"),
      model: data.model,
      prompt: Math.round(data.usage?.prompt_tokens ?? 0),
      completion: Math.round(data.usage?.completion_tokens ?? 0),
      reasoningTokens: data.usage?.completion_tokens_details?.reasoning_tokens ?? undefined,
    },
  };
}

/** Tool-call "ids" that are only a server's numbering of its calls (TGI's "0"). */
const NUMBERING = /^\d{1,3}$/;

/** A tool-call id for a server that gave none: `call_` and 24 random hex digits, as OpenAI's look. */
export function newCallId(): string {
  return `call_${crypto.randomUUID().replaceAll("-", "").slice(0, 24)}`;
}

/** The model names of a `GET /models` answer (`{ data: [{ id }] }`). */
export const ModelListSchema = z.object({ data: z.array(z.object({ id: z.string().min(1) })) });

/**
 * Milliseconds a `Retry-After` header asks to wait: delay-seconds or an HTTP
 * date. `undefined` when absent or unreadable.
 */
export function parseRetryAfter(value: string | null, nowEpochMs = Date.now()): number | undefined {
  if (value === null) return undefined;
  const s = value.trim();
  if (s === "") return undefined;
  if (/^\d+(\.\d+)?$/.test(s)) return Number(s) * 1000;
  const at = Date.parse(s);
  return Number.isNaN(at) ? undefined : Math.max(0, at - nowEpochMs);
}

/** Longest server message kept in an error (llama.cpp repeats the whole tools list in some). */
const MESSAGE_CHARS = 300;

/**
 * The server's own words from an error answer, shortened: OpenAI's
 * `error.message` (vLLM, llama.cpp), SGLang's `message`, TGI's `error`,
 * else the body's start; "" for an empty body.
 */
export function serverMessage(text: string): string {
  const words = rawServerMessage(text);
  return words.length > MESSAGE_CHARS ? `${words.slice(0, MESSAGE_CHARS)}...` : words;
}

function rawServerMessage(text: string): string {
  if (text.trim() === "") return "";
  try {
    const json: unknown = JSON.parse(text);
    if (isRecord(json)) {
      const err = json.error;
      if (isRecord(err) && typeof err.message === "string") return err.message;
      if (typeof err === "string") return err;
      if (typeof json.message === "string") return json.message;
      if (typeof json.detail === "string") return json.detail;
    }
  } catch {
    // not JSON: the text itself is the message
  }
  return snippet(text);
}

/** A failed connection in a few words ("connection refused"). */
export function describeNetworkError(err: unknown): string {
  if (err instanceof Error) {
    const code = "code" in err && typeof err.code === "string" ? err.code : "";
    if (/refused/i.test(code) || /ECONNREFUSED/.test(err.message)) return "connection refused";
    if (/reset|ECONNRESET/i.test(code)) return "connection reset";
    if (/closed/i.test(code)) return "connection closed";
    return code && !err.message.includes(code) ? `${code}: ${err.message}` : err.message || code || err.name;
  }
  return String(err);
}

/** The first ~200 characters of a body, on one line. */
export function snippet(text: string): string {
  const flat = text.length > 200 ? `${text.slice(0, 200)}...` : text;
  return JSON.stringify(flat);
}

/**
 * A rough token count for rate limiting before the answer says the truth:
 * about four characters a token for the prompt, plus the completion budget.
 */
export function estimateTokens(req: ChatRequest, defaultCompletion = 256): number {
  return Math.ceil(promptChars(req) / 4) + (req.max_tokens ?? defaultCompletion);
}

/** The characters of a request's messages: their texts and tool calls. */
function promptChars(req: ChatRequest): number {
  let chars = 0;
  for (const m of req.messages) {
    if (m.content) chars += m.content.length;
    if (m.tool_calls) for (const c of m.tool_calls) chars += c.function.arguments.length + c.function.name.length;
  }
  return chars;
}

/**
 * A prompt's tokens counted low (five characters a token, where English
 * text takes about four), so that a prompt refused for its length surely
 * is too long.
 */
export function promptTokensAtLeast(req: ChatRequest): number {
  return Math.floor(promptChars(req) / 5);
}
