import { ARG_WORDS } from "../words.ts";

import type { Rng } from "../../util/hash.ts";
import { isRecord } from "../../util/record.ts";


/**
 * Values made up from a JSON schema (the subset tool parameters and
 * response formats use), and JSON written with spaces so that its
 * whitespace-separated words make a plausible token count.
 */

/** Where made-up values come from. */
export interface ValueSource {
  rng: Rng;
  /** words from the conversation, to fill string arguments plausibly */
  words: readonly string[];
}

const MAX_DEPTH = 6;

/** A value that fits `schema`, drawn from `src`. */
export function valueFor(schema: unknown, src: ValueSource, depth = 0): unknown {
  if (!isRecord(schema) || depth > MAX_DEPTH) return wordFrom(src);
  if ("const" in schema) return schema.const;
  if (Array.isArray(schema.enum) && schema.enum.length > 0) return schema.enum[src.rng.below(schema.enum.length)];
  for (const key of ["anyOf", "oneOf", "allOf"] as const) {
    const alts = schema[key];
    if (Array.isArray(alts)) {
      const first = alts.find((a) => !(isRecord(a) && a.type === "null"));
      if (first !== undefined) return valueFor(first, src, depth + 1);
    }
  }
  let type = schema.type;
  if (Array.isArray(type)) type = type.find((t) => t !== "null") ?? "null";
  if (type === undefined && isRecord(schema.properties)) type = "object";
  switch (type) {
    case "string":
      return wordFrom(src);
    case "integer":
    case "number":
      return numberIn(schema, src);
    case "boolean":
      return src.rng.below(2) === 1;
    case "null":
      return null;
    case "array": {
      const n = typeof schema.minItems === "number" && schema.minItems > 1 ? Math.min(schema.minItems, 5) : 1;
      const out: unknown[] = [];
      for (let i = 0; i < n; i++) out.push(valueFor(schema.items, src, depth + 1));
      return out;
    }
    case "object":
      return objectFor(schema, src, depth);
    default:
      return wordFrom(src);
  }
}

/** An object with every required property and about half of the optional ones. */
export function objectFor(schema: Record<string, unknown>, src: ValueSource, depth = 0): Record<string, unknown> {
  const props = isRecord(schema.properties) ? schema.properties : {};
  const required = new Set(Array.isArray(schema.required) ? schema.required.filter((r) => typeof r === "string") : []);
  const out: Record<string, unknown> = {};
  for (const [key, sub] of Object.entries(props)) {
    if (required.has(key) || src.rng.below(2) === 1) out[key] = valueFor(sub, src, depth + 1);
  }
  return out;
}

/** Names of the required properties of an object schema. */
export function requiredOf(schema: unknown): string[] {
  if (!isRecord(schema) || !Array.isArray(schema.required)) return [];
  return schema.required.filter((r): r is string => typeof r === "string");
}

function wordFrom(src: ValueSource): string {
  if (src.words.length > 0 && src.rng.below(2) === 1) return src.words[src.rng.below(src.words.length)]!;
  return ARG_WORDS[src.rng.below(ARG_WORDS.length)]!;
}

function numberIn(schema: Record<string, unknown>, src: ValueSource): number {
  const lo = typeof schema.minimum === "number" ? Math.ceil(schema.minimum) : 1;
  const hi = typeof schema.maximum === "number" ? Math.floor(schema.maximum) : Math.max(lo, 1) + 19;
  if (hi < lo) return lo;
  return lo + src.rng.below(hi - lo + 1);
}

/** Plain words (letters, digits, `_`, `-`; two or more) of a text, for string arguments. */
export function plainWords(text: string, limit = 64): string[] {
  const out: string[] = [];
  for (const w of text.split(/\s+/)) {
    const clean = w.replace(/^[^\p{L}\p{N}]+|[^\p{L}\p{N}]+$/gu, "");
    if (clean.length >= 2 && /^[\p{L}\p{N}_-]+$/u.test(clean)) out.push(clean);
    if (out.length >= limit) break;
  }
  return out;
}

/** JSON with a space after every `:` and `,` (valid JSON; spaces make its word count a token count). */
export function spacedJson(v: unknown): string {
  if (v === null || typeof v !== "object") return JSON.stringify(v) ?? "null";
  if (Array.isArray(v)) return "[" + v.map(spacedJson).join(", ") + "]";
  const parts: string[] = [];
  for (const [k, x] of Object.entries(v)) if (x !== undefined) parts.push(JSON.stringify(k) + ": " + spacedJson(x));
  return "{" + parts.join(", ") + "}";
}
