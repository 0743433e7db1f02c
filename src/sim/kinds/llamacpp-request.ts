import type { ResolvedSimOptions } from "../options.ts";

import type { ChatBody } from "../request.ts";

import type { OutputConstraint } from "../skills/types.ts";

import { extra, schemaValue } from "./common.ts";
import { isRecord } from "../../util/record.ts";

/**
 * How llama.cpp b4748 reads a chat request (examples/server/utils.hpp,
 * oaicompat_completion_params_parse, and common/chat.cpp): the checks that
 * throw (the server answers them 500), the structured-output fields it
 * honours, the grammar its tools' schemas make, and its prompt truncation.
 */

/** The message of the first check b4748 throws on, in its order; undefined when it takes the request. */
export function llamacppRefusal(raw: Record<string, unknown>, o: ResolvedSimOptions): string | undefined {
  const tools = raw.tools;
  const hasTools = Array.isArray(tools) && tools.length > 0;
  if (hasTools) {
    // streamed tool calls came to llama-server later (2025-05)
    if (raw.stream === true) return "Cannot use tools with stream";
    if (!o.jinja) return "tools param requires --jinja flag";
  }
  if (!o.jinja && raw.tool_choice != null) return "Unsupported param: tool_choice";
  if (raw.json_schema != null && typeof raw.grammar === "string" && raw.grammar !== "") return "Cannot use both json_schema and grammar";
  if (isRecord(raw.response_format)) {
    const t = raw.response_format.type;
    const type = typeof t === "string" ? t : "";
    if (type !== "" && type !== "text" && type !== "json_object" && type !== "json_schema") {
      return `response_format type must be one of "text" or "json_object", but got: ${type}`;
    }
  }
  if (hasTools) {
    const bad = toolsRefusal(tools as unknown[]);
    if (bad) return `Failed to parse tools: ${bad}; tools = ${JSON.stringify(tools, null, 2)}`;
  }
  if (raw.n != null && raw.n !== 1) return "Only one completion choice is allowed";
  return undefined;
}

/** nlohmann::json's `at()` on a missing key. */
function missing(key: string): string {
  return `[json.exception.out_of_range.403] key '${key}' not found`;
}

/** Why the tools do not parse (every function needs name, description and parameters), or undefined. */
function toolsRefusal(tools: unknown[]): string | undefined {
  for (const tool of tools) {
    if (!isRecord(tool) || !("type" in tool)) return `Missing tool type: ${JSON.stringify(tool)}`;
    if (tool.type !== "function") return `Unsupported tool type: ${JSON.stringify(tool)}`;
    if (!("function" in tool)) return `Missing tool function: ${JSON.stringify(tool)}`;
    const f = tool.function;
    if (!isRecord(f)) return "[json.exception.type_error.304] cannot use at() with " + (Array.isArray(f) ? "array" : typeof f);
    for (const key of ["name", "description", "parameters"]) if (!(key in f)) return missing(key);
  }
  return undefined;
}

/**
 * The first regex escape of a JSON schema's `pattern` that this build's
 * grammar cannot take (`\d`, `\w`, `\s` and their capitals are copied into
 * the GBNF as is, where they are unknown escapes), with the rest of the
 * pattern from there; undefined when every pattern converts.
 */
export function badPatternEscape(schema: unknown, depth = 0): string | undefined {
  if (depth > 32) return undefined;
  if (Array.isArray(schema)) {
    for (const s of schema) {
      const bad = badPatternEscape(s, depth + 1);
      if (bad) return bad;
    }
    return undefined;
  }
  if (!isRecord(schema)) return undefined;
  const p = schema.pattern;
  if (typeof p === "string") {
    const m = /\\[dwsDWS]/.exec(p);
    if (m) return p.slice(m.index).replace(/\$$/, "");
  }
  for (const v of Object.values(schema)) {
    const bad = badPatternEscape(v, depth + 1);
    if (bad) return bad;
  }
  return undefined;
}

/**
 * The constraint b4748 enforces: a top-level `json_schema`, or
 * `response_format: {type: "json_object", schema?}`. Its branch for
 * `{type: "json_schema", json_schema: {schema}}` assigns a variable that
 * shadows the one it means, so that shape constrains nothing
 * (json-schema-openai-shape.json). A schema with no usable shape is `{}`:
 * any JSON value, which the sim answers with an object.
 */
export function llamacppConstraint(body: ChatBody): OutputConstraint | undefined {
  const top = extra(body, "json_schema");
  if (top != null) {
    const schema = schemaValue(top);
    return schema && Object.keys(schema).length > 0 ? { type: "json_schema", schema } : { type: "json_object" };
  }
  const rf = isRecord(body.response_format) ? body.response_format : undefined;
  if (rf?.type === "json_object") {
    const schema = schemaValue(rf.schema);
    return schema && Object.keys(schema).length > 0 ? { type: "json_schema", schema } : { type: "json_object" };
  }
  return undefined;
}

/**
 * A prompt of `n` tokens cut as b4748 does when it is at least the slot's
 * context (with context shift on, its default): keep `n_keep` tokens (0
 * unless the request says), drop whole blocks of half the rest from after
 * them, so that what is left ends the same and fits.
 */
export function truncatedPrompt(n: number, nCtx: number, nKeepAsked: unknown): number {
  let nKeep = typeof nKeepAsked === "number" && Number.isInteger(nKeepAsked) ? nKeepAsked : 0;
  if (nKeep < 0) nKeep = n;
  nKeep = Math.min(nCtx - 4, nKeep);
  const nLeft = nCtx - nKeep;
  const block = Math.max(1, Math.floor(nLeft / 2));
  const erased = Math.floor((n - nKeep - block) / block);
  return n - erased * block;
}
