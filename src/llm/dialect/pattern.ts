/**
 * JSON Schemas rewritten for llama.cpp's grammar converter
 * (json-schema-to-grammar, b4748), which knows no regex shorthand classes:
 * `"pattern": "^\\d{3}$"` makes it fail with "unknown escape at \d" and the
 * request then goes out without any constraint. The shorthands become
 * explicit classes, inside brackets too.
 */

const OUTSIDE: Record<string, string> = { d: "[0-9]", w: "[A-Za-z0-9_]", s: "[ \\t\\n\\r]", D: "[^0-9]", W: "[^A-Za-z0-9_]", S: "[^ \\t\\n\\r]" };
const INSIDE: Record<string, string> = { d: "0-9", w: "A-Za-z0-9_", s: " \\t\\n\\r" };

/** A regex with `\d`, `\w`, `\s` (and their negations outside brackets) spelled as classes. */
export function rewritePattern(pattern: string): string {
  let out = "";
  let inClass = false;
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === "\\" && i + 1 < pattern.length) {
      const n = pattern[i + 1]!;
      const sub = inClass ? INSIDE[n] : OUTSIDE[n];
      out += sub ?? c + n;
      i++;
      continue;
    }
    if (c === "[" && !inClass) inClass = true;
    else if (c === "]" && inClass) inClass = false;
    out += c;
  }
  return out;
}

/** A deep copy of a JSON Schema with every `pattern` rewritten (see rewritePattern). */
export function rewriteForLlamaCpp(schema: Record<string, unknown>): Record<string, unknown> {
  return walk(schema) as Record<string, unknown>;
}

function walk(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(walk);
  if (typeof v !== "object" || v === null) return v;
  const out: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(v)) out[k] = k === "pattern" && typeof x === "string" ? rewritePattern(x) : walk(x);
  return out;
}
