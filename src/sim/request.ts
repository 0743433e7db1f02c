import { z } from "zod";

/**
 * The chat completions request body, as far as the simulated server reads
 * it. Objects are loose: clients send fields this server ignores (top_p,
 * user, logprobs...), and vLLM accepts them too.
 */

const TextPartSchema = z.looseObject({ type: z.string(), text: z.string().optional() });

const MessageToolCallSchema = z.looseObject({
  id: z.string().optional(),
  type: z.string().optional(),
  function: z.looseObject({ name: z.string(), arguments: z.string() }),
});

export const SimMessageSchema = z.looseObject({
  role: z.enum(["system", "developer", "user", "assistant", "tool"]),
  content: z.union([z.string(), z.array(TextPartSchema), z.null()]).optional(),
  name: z.string().optional(),
  tool_call_id: z.string().optional(),
  tool_calls: z.array(MessageToolCallSchema).nullable().optional(),
});
export type SimMessage = z.infer<typeof SimMessageSchema>;

export const SimToolSchema = z.looseObject({
  type: z.literal("function"),
  function: z.looseObject({
    name: z.string().min(1),
    description: z.string().optional(),
    parameters: z.record(z.string(), z.unknown()).optional(),
  }),
});
export type SimTool = z.infer<typeof SimToolSchema>;

const ToolChoiceSchema = z.union([
  z.enum(["none", "auto", "required"]),
  z.looseObject({ type: z.literal("function"), function: z.looseObject({ name: z.string() }) }),
]);

/**
 * Only its `type` is common ground: each server kind reads (or rejects) the
 * rest of `response_format` its own way, TGI's `{type: "json", value}` as
 * much as OpenAI's `{type: "json_schema", json_schema}`.
 */
const ResponseFormatSchema = z.looseObject({ type: z.string() });

const positiveInt = z.number().int().positive().nullable().optional();

export const ChatBodySchema = z.looseObject({
  model: z.string().nullable().optional(),
  messages: z.array(SimMessageSchema).min(1),
  max_tokens: positiveInt,
  max_completion_tokens: positiveInt,
  temperature: z.number().min(0).max(2).nullable().optional(),
  top_p: z.number().min(0).max(1).nullable().optional(),
  seed: z.number().int().nullable().optional(),
  stop: z.union([z.string(), z.array(z.string()).max(16)]).nullable().optional(),
  tools: z.array(SimToolSchema).nullable().optional(),
  tool_choice: ToolChoiceSchema.nullable().optional(),
  response_format: ResponseFormatSchema.nullable().optional(),
  stream: z.boolean().nullable().optional(),
  stream_options: z.looseObject({ include_usage: z.boolean().nullable().optional() }).nullable().optional(),
  n: z.literal(1).nullable().optional(),
});
export type ChatBody = z.infer<typeof ChatBodySchema>;

/** The text of a message's content, whatever its shape. */
export function messageText(m: SimMessage): string {
  const c = m.content;
  if (typeof c === "string") return c;
  if (!c) return "";
  let out = "";
  for (const part of c) if (typeof part.text === "string") out += out ? "\n" + part.text : part.text;
  return out;
}

/** The request's own output cap, if it set one. */
export function maxTokensOf(body: ChatBody): number | undefined {
  return body.max_completion_tokens ?? body.max_tokens ?? undefined;
}

/** The stop strings as a list. */
export function stopsOf(body: ChatBody): string[] {
  const s = body.stop;
  if (s == null) return [];
  return (typeof s === "string" ? [s] : s).filter((x) => x.length > 0);
}

/** `field.path: message` for the first schema issue, the way a 400 names what is wrong. */
export function describeIssue(err: z.ZodError): { message: string; param: string | null } {
  const issue = err.issues[0];
  if (!issue) return { message: "Invalid request body", param: null };
  const param = issue.path.length > 0 ? issue.path.map(String).join(".") : null;
  return { message: param ? `${param}: ${issue.message}` : issue.message, param };
}
