import type { ReplyInfo, StreamEncoder } from "./types.ts";

/**
 * The OpenAI chat completion shape in the variants vLLM, SGLang and the
 * hosted API write it: the same skeleton, with each server's own extra
 * fields. A kind describes its variant once; bodies and chunks are then
 * built from strings made up front, since this runs for every streamed
 * token.
 */

/** What differs between the OpenAI-shaped servers. */
export interface OpenAIVariant {
  /** extra fields of the message, after role and content (e.g. `refusal: null`) */
  messageExtra: Readonly<Record<string, unknown>>;
  /** the thinking's fields in a message or delta: vLLM `reasoning` + `reasoning_content`, SGLang `reasoning_content`; none = not shown */
  reasoningFields: string[];
  /** extra fields of a choice after finish_reason (e.g. `"stop_reason":null`), with a leading comma */
  choiceExtra(r: ReplyInfo): string;
  /** the same as an object, for the non-streamed answer */
  choiceFields(r: ReplyInfo): Record<string, unknown> | undefined;
  /** the same for the choices of the chunks before the last */
  deltaChoiceExtra: string;
  /** extra top-level fields after usage */
  bodyExtra: Readonly<Record<string, unknown>>;
  /** extra top-level fields of every chunk, after model, with a leading comma */
  chunkExtra: string;
  /** the usage object */
  usage(r: ReplyInfo): Record<string, unknown>;
  /** the first delta of a stream */
  openDelta: string;
  /** `"usage":null` in every chunk: always (SGLang), when usage was asked for (the hosted API), or never */
  nullUsage: "always" | "asked" | "never";
}

/**
 * The non-streamed answer, one JSON.stringify of one object: a flat string,
 * cheaper for the response to send than one built up piece by piece.
 * `emptyToolCalls` is what `tool_calls` says when there is no call (undefined: absent).
 */
export function openaiCompletion(v: OpenAIVariant, r: ReplyInfo, emptyToolCalls: null | undefined): string {
  const c = r.composed;
  const t = c.toolCall;
  const message: Record<string, unknown> = { role: "assistant", content: c.text, ...v.messageExtra };
  if (t) message.tool_calls = [{ id: r.toolCallId, type: "function", function: { name: t.name, arguments: t.arguments } }];
  else if (emptyToolCalls === null) message.tool_calls = null;
  for (const f of v.reasoningFields) message[f] = c.reasoning;
  const choice = { index: 0, message, logprobs: null, finish_reason: c.finishReason, ...v.choiceFields(r) };
  return JSON.stringify({ id: r.id, object: "chat.completion", created: r.created, model: r.model, choices: [choice], usage: v.usage(r), ...v.bodyExtra });
}

/** The streamed answer's writer. */
export function openaiStream(v: OpenAIVariant, r: ReplyInfo): StreamEncoder {
  const usageNull = v.nullUsage === "always" || (v.nullUsage === "asked" && r.includeUsage) ? `,"usage":null` : "";
  const top = `"id":${JSON.stringify(r.id)},"object":"chat.completion.chunk","created":${r.created},"model":${JSON.stringify(r.model)}${v.chunkExtra}`;
  const head = `data: {${top},"choices":[{"index":0,"delta":`;
  const tail = `,"logprobs":null,"finish_reason":null${v.deltaChoiceExtra}}]${usageNull}}\n\n`;
  const send = (delta: string): string => head + delta + tail;
  const t = r.composed.toolCall;
  return {
    open: () => send(v.openDelta),
    reasoning(piece) {
      if (v.reasoningFields.length === 0 || !piece) return "";
      const p = JSON.stringify(piece);
      return send(`{${v.reasoningFields.map((f) => `"${f}":${p}`).join(",")}}`);
    },
    content: (piece) => send(`{"content":${JSON.stringify(piece)}}`),
    toolName: () =>
      t ? send(`{"tool_calls":[${JSON.stringify({ index: 0, id: r.toolCallId, type: "function", function: { name: t.name, arguments: "" } })}]}`) : "",
    toolArgs: (piece) => send(`{"tool_calls":[{"index":0,"function":{"arguments":${JSON.stringify(piece)}}}]}`),
    close() {
      const c = r.composed;
      let out = `${head}{},"logprobs":null,"finish_reason":${JSON.stringify(c.finishReason)}${v.choiceExtra(r)}}]${usageNull}}\n\n`;
      if (r.includeUsage) out += `data: {${top},"choices":[],"usage":${JSON.stringify(v.usage(r))}}\n\n`;
      return out + "data: [DONE]\n\n";
    },
  };
}
