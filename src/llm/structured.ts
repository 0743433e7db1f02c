import type { z } from "zod";
import { LlmError } from "../errors.ts";
import type { Usage } from "../protocol/task.ts";
import type { ChatMessage, ChatOptions, ChatRequest, ChatResult, LlmClient } from "./types.ts";
import { snippet } from "./wire.ts";

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
  const problem = parsed.error.issues
    .slice(0, 3)
    .map((i) => `${i.path.length > 0 ? i.path.join(".") : "(root)"}: ${i.message}`)
    .join("; ");
  return { ok: false, problem };
}

/**
 * A chat call whose reply must be JSON matching `schema`. Put the schema in
 * `req.response_format` too (`{ type: "json_schema", json_schema: { name, schema } }`)
 * so servers with guided decoding keep to it. An invalid reply is answered
 * with what was wrong and asked again, up to `retries` times.
 *
 * @throws LlmError naming the validation problem when every try failed, or
 *   the client's own LlmError when a call fails
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
  let prompt = 0;
  let completion = 0;
  let current = req;
  for (let tries = 1; ; tries++) {
    const result = await client.chat(current, opts);
    prompt += result.usage.prompt;
    completion += result.usage.completion;
    const reply = parseJsonReply(result.text, schema);
    if (reply.ok) return { value: reply.value, result, usage: { prompt, completion }, tries };
    const cut = result.finishReason === "length" ? " (the reply was cut off at max_tokens)" : "";
    if (tries > retries) {
      throw new LlmError(
        `LLM reply from ${result.endpoint} failed its schema after ${tries} ${tries === 1 ? "try" : "tries"}: ${reply.problem}${cut}`,
        undefined,
        result.endpoint,
        false,
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
