import type { ChatBody } from "../request.ts";

import { maxTokensOf, messageText } from "../request.ts";

import type { OutputConstraint } from "../skills/types.ts";
import { isRecord } from "../../util/record.ts";


/** Small helpers the kinds share. */

/** A JSON answer with these headers. */
export function jsonAnswer(body: unknown, status: number, headers: Readonly<Record<string, string>>): Response {
  return new Response(JSON.stringify(body), { status, headers: headers as Record<string, string> });
}

/** A field of the request body the common schema does not name (each kind's own extensions). */
export function extra(body: ChatBody, key: string): unknown {
  return body[key];
}

/** A JSON schema given as an object or as JSON text; undefined when it is neither. */
export function schemaValue(v: unknown): Record<string, unknown> | undefined {
  if (isRecord(v)) return v;
  if (typeof v !== "string") return undefined;
  try {
    const parsed: unknown = JSON.parse(v);
    return isRecord(parsed) ? parsed : undefined;
  } catch {
    return undefined;
  }
}

/** `response_format: {type: "json_schema", json_schema: {schema}}` or `{type: "json_object"}`, the OpenAI shape. */
export function openaiResponseFormat(body: ChatBody): OutputConstraint | undefined {
  const rf = body.response_format;
  if (!isRecord(rf)) return undefined;
  if (rf.type === "json_object") return { type: "json_object" };
  if (rf.type !== "json_schema") return undefined;
  const js = rf.json_schema;
  const schema = isRecord(js) ? schemaValue(js.schema) : undefined;
  return schema ? { type: "json_schema", schema } : { type: "json_object" };
}

/** The request's output cap, under whichever name it came. */
export function maxTokens(body: ChatBody): number | undefined {
  return maxTokensOf(body);
}

/** All message text of the request, for checks that look at it as a whole. */
export function allText(body: ChatBody): string {
  let out = "";
  for (const m of body.messages) out += messageText(m) + "\n";
  return out;
}

/**
 * A request field declared `int` in a pydantic model (vLLM's and SGLang's
 * protocol.py), read as pydantic's lax mode reads JSON: integers, floats
 * without a fraction, numeric strings and booleans pass; anything else is
 * the message of pydantic's error, for a 400 that names the field.
 */
export function pydanticInt(v: unknown): { value: number } | { error: string } {
  if (typeof v === "boolean") return { value: v ? 1 : 0 };
  if (typeof v === "number") {
    if (Number.isInteger(v)) return { value: v };
    return { error: Number.isFinite(v) ? "Input should be a valid integer, got a number with a fractional part" : "Input should be a finite number" };
  }
  if (typeof v === "string") {
    const t = v.trim();
    if (/^[+-]?\d+$/.test(t)) return { value: Number(t) };
    return { error: "Input should be a valid integer, unable to parse string as an integer" };
  }
  return { error: "Input should be a valid integer" };
}
