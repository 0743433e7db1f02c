import type { z } from "zod";
import { LlmError } from "../errors.ts";
import type { Usage } from "../protocol/task.ts";
import type { ChatMessage, ChatOptions, ChatRequest, ChatResult, LlmClient } from "./types.ts";
import { snippet } from "./wire.ts";
import { formatIssues } from "../util/issues.ts";

/** Options of {@link chatJson}. */
export interface ChatJsonOptions extends ChatOptions {
  /** extra tries when a reply fails the schema; default: the client's `structuredRetries`, else 2 */
  retries?: number;
}

/** A validated structured reply. */
export interface ChatJsonResult<T> {
  value: T;
  /** the call that produced the valid reply */
  result: ChatResult;
  /** tokens of every try, the invalid ones included */
  usage: Usage;
  /** calls made, 1 when the first reply was valid */
  tries: number;
}

/**
 * Every try's reply failed the schema. The replies were answered all the
 * same, so their tokens are spent: `usage` sums every try and `result` is the
 * last reply, for the caller to record what the calls cost.
 */
export class StructuredReplyError extends LlmError {
  override name = "StructuredReplyError";
  constructor(
    message: string,
    /** tokens of every try */
    readonly usage: Usage,
    /** calls made */
    readonly tries: number,
    /** the last (invalid) reply */
    readonly result: ChatResult,
  ) {
    super(message, undefined, result.endpoint, false);
  }
}

/** The parsed reply or what is wrong with it. */
export type JsonReply<T> = { ok: true; value: T } | { ok: false; problem: string };

const FENCE = /```[A-Za-z]*[ \t]*\r?\n?([\s\S]*?)\r?\n?[ \t]*```/;

/**
 * Parse a reply as JSON (a ```json fence around it is fine) and validate it.
 *
 * @example
 * ```ts
 * parseJsonReply('```json\n{"a":1}\n```', z.object({ a: z.number() })); // { ok: true, value: { a: 1 } }
 * ```
 */
export function parseJsonReply<T>(text: string, schema: z.ZodType<T>): JsonReply<T> {
  const fenced = FENCE.exec(text);
  const body = (fenced?.[1] ?? text).trim();
  let json: unknown;
  try {
    json = JSON.parse(body);
  } catch (err) {
    return { ok: false, problem: `not JSON (${err instanceof Error ? err.message : String(err)}): ${snippet(text)}` };
  }
  const parsed = schema.safeParse(json);
  if (parsed.success) return { ok: true, value: parsed.data };
  return { ok: false, problem: formatIssues(parsed.error) };
}

/**
 * A chat call whose reply must be JSON matching `schema`. Put the schema in
 * `req.response_format` too (`{ type: "json_schema", json_schema: { name, schema } }`)
 * so servers with guided decoding keep to it. An invalid reply is answered
 * with what was wrong and asked again, up to `retries` times.
 *
 * @throws StructuredReplyError (an LlmError) naming the validation problem
 *   when every try failed, with the tokens of all tries; or the client's own
 *   error when a call fails
 *
 * @example
 * ```ts
 * const Verdict = z.object({ correct: z.boolean() });
 * const { value } = await chatJson(llm, { messages }, Verdict, { affinity: taskId });
 * ```
 */
export async function chatJson<T>(
  client: LlmClient,
  req: ChatRequest,
  schema: z.ZodType<T>,
  opts: ChatJsonOptions = {},
): Promise<ChatJsonResult<T>> {
  const retries = opts.retries ?? client.structuredRetries ?? 2;
  let usage: Usage = { prompt: 0, completion: 0 };
  let current = req;
  for (let tries = 1; ; tries++) {
    const result = await client.chat(current, opts);
    usage = sumUsage(usage, result.usage);
    const reply = parseJsonReply(result.text, schema);
    if (reply.ok) return { value: reply.value, result, usage, tries };
    const cut = result.finishReason === "length" ? " (the reply was cut off at max_tokens)" : "";
    if (tries > retries) {
      throw new StructuredReplyError(
        `LLM reply from ${result.endpoint} failed its schema after ${tries} ${tries === 1 ? "try" : "tries"}: ${reply.problem}${cut}`,
        usage,
        tries,
        result,
      );
    }
    // telling the model what was wrong gives it a different prompt, so a
    // deterministic server does not repeat the same reply
    const feedback: ChatMessage[] = [
      { role: "assistant", content: result.text },
      { role: "user", content: `That reply was not valid: ${reply.problem}${cut}. Answer again with only the JSON value.` },
    ];
    current = { ...req, messages: [...req.messages, ...feedback] };
  }
}

/** Two calls' tokens together; reasoning tokens are kept when either call reported them. */
export function sumUsage(a: Usage, b: Usage): Usage {
  const out: Usage = { prompt: a.prompt + b.prompt, completion: a.completion + b.completion };
  if (a.reasoning !== undefined || b.reasoning !== undefined) out.reasoning = (a.reasoning ?? 0) + (b.reasoning ?? 0);
  return out;
}

/** The calls of one structured step that were answered: their tokens, how many, the last reply. */
export interface AnsweredCalls {
  usage: Usage;
  tries: number;
  last: ChatResult;
}

/**
 * A task's LLM (anything with `chat`) as `chatJson` wants it, remembering
 * whether a call itself failed, which is an LLM outage, as opposed to
 * replies that never fit the schema; and what the calls before an outage
 * answered, so their tokens still reach the row.
 */
export function recordingClient(llm: { chat(req: ChatRequest): Promise<ChatResult> }): {
  client: LlmClient;
  callError: () => unknown;
  answered: () => AnsweredCalls | undefined;
} {
  let callError: unknown;
  let answered: AnsweredCalls | undefined;
  const client: LlmClient = {
    chat: async (req) => {
      let res: ChatResult;
      try {
        res = await llm.chat(req);
      } catch (err) {
        callError = err;
        throw err;
      }
      answered = { usage: answered ? sumUsage(answered.usage, res.usage) : res.usage, tries: (answered?.tries ?? 0) + 1, last: res };
      return res;
    },
    endpoints: () => [],
    close: async () => {},
  };
  return { client, callError: () => callError, answered: () => answered };
}
