/**
 * The OpenAI chat completions wire format: the request body sent, the answer
 * accepted, and how failures are described.
 */
import { z } from "zod";
import type { ToolCall } from "../protocol/task.ts";
import type { ChatRequest } from "./types.ts";

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/**
 * The JSON body of `POST /chat/completions`. Structured output is also
 * spelled the vLLM way: a `json_schema` response format is kept (OpenAI and
 * recent vLLM read it) and repeated as `guided_json`; a `regex` format, which
 * only vLLM knows, is sent as `guided_regex` alone.
 */
export function buildChatBody(req: ChatRequest, model: string | undefined): string {
  const body: Record<string, unknown> = {};
  if (model !== undefined) body.model = model;
  body.messages = req.messages;
  if (req.max_tokens !== undefined) body.max_tokens = req.max_tokens;
  if (req.temperature !== undefined) body.temperature = req.temperature;
  if (req.top_p !== undefined) body.top_p = req.top_p;
  if (req.seed !== undefined) body.seed = req.seed;
  if (req.stop !== undefined) body.stop = req.stop;
  if (req.tools !== undefined) body.tools = req.tools;
  if (req.tool_choice !== undefined) body.tool_choice = req.tool_choice;
  const format = req.response_format;
  if (isRecord(format) && format.type === "regex" && typeof format.pattern === "string") {
    body.guided_regex = format.pattern;
  } else if (format !== undefined) {
    body.response_format = format;
    if (isRecord(format) && format.type === "json_schema" && isRecord(format.json_schema)) {
      body.guided_json = format.json_schema.schema;
    }
  }
  body.stream = false;
  return JSON.stringify(body);
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
    })
    .nullish(),
});

/** A chat completion as the client uses it. */
export interface Completion {
  text: string;
  toolCalls: ToolCall[];
  finishReason: string;
  model: string | undefined;
  prompt: number;
  completion: number;
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
    const issue = parsed.error.issues[0];
    const where = issue && issue.path.length > 0 ? `${issue.path.join(".")}: ` : "";
    return { ok: false, problem: `not a chat completion (${where}${issue?.message ?? "invalid"}): ${snippet(text)}` };
  }
  const data = parsed.data;
  const choice = data.choices[0];
  if (choice === undefined) return { ok: false, problem: `no choices: ${snippet(text)}` };
  const wireCalls = choice.message.tool_calls;
  let toolCalls = NO_TOOL_CALLS;
  if (wireCalls && wireCalls.length > 0) {
    toolCalls = wireCalls.map((c, i) => {
      const args = c.function.arguments;
      return {
        id: c.id ?? `call_${i}`,
        name: c.function.name,
        arguments: args === undefined ? "{}" : typeof args === "string" ? args : JSON.stringify(args),
      };
    });
  }
  return {
    ok: true,
    value: {
      text: choice.message.content ?? "",
      toolCalls,
      finishReason: choice.finish_reason ?? (toolCalls.length > 0 ? "tool_calls" : "stop"),
      model: data.model,
      prompt: Math.round(data.usage?.prompt_tokens ?? 0),
      completion: Math.round(data.usage?.completion_tokens ?? 0),
    },
  };
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

/** The server's own words from an error answer: OpenAI's `error.message`, else the body's start. */
export function serverMessage(text: string): string {
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
  let chars = 0;
  for (const m of req.messages) {
    if (m.content) chars += m.content.length;
    if (m.tool_calls) for (const c of m.tool_calls) chars += c.function.arguments.length + c.function.name.length;
  }
  return Math.ceil(chars / 4) + (req.max_tokens ?? defaultCompletion);
}
