/**
 * Structured-output constraints as the workflow gives them, and the
 * rewriting of JSON Schemas and regexes for servers whose grammar converter
 * takes less than JSON Schema allows.
 *
 * llama.cpp turns a JSON Schema into a GBNF grammar with its own converter
 * (common/json-schema-to-grammar.cpp, read at b4748 and at master). Its
 * `pattern` support is a small regex subset: the pattern must be anchored
 * `^...$`; escapes it does not know are copied into the grammar, whose
 * parser then rejects them (`\d`: "unknown escape at \d", see
 * test/fixtures/llama.cpp-b4748/tools-backslash-d-server-log.txt, and the
 * whole constraint is lost); `(?` groups are unsupported (b4748 even takes
 * the `?` for a quantifier of nothing). A `\x` escape followed by a
 * quantifier is split wrongly. Hence the rewriting below: patterns are
 * re-spelled in that subset, or dropped (the string left unconstrained)
 * when they cannot be.
 */
import { z } from "zod";
import { isRecord } from "../../util/record.ts";


/** A structured-output constraint, read from an OpenAI `response_format` or matrixd's `{ type: "regex", pattern }`. */
export type FormatRequest =
  | { type: "json_schema"; name: string; schema: Record<string, unknown>; strict?: boolean }
  | { type: "json_object" }
  | { type: "regex"; pattern: string }
  | { type: "text" }
  /** a format this layer does not know (e.g. vLLM's `structural_tag`): passed on as it is */
  | { type: "other"; format: Record<string, unknown> };

const Schema = z.record(z.string(), z.unknown());
const JsonSchemaFormat = z.object({
  type: z.literal("json_schema"),
  json_schema: z.looseObject({ name: z.string().optional(), schema: Schema, strict: z.boolean().optional() }),
});
/** llama.cpp's own spelling, `{ type: "json_object", schema }` */
const SchemaObjectFormat = z.object({ type: z.literal("json_object"), schema: Schema });
const RegexFormat = z.object({ type: z.literal("regex"), pattern: z.string() });

/** OpenAI takes `[a-zA-Z0-9_-]{1,64}` for a schema name; vLLM and SGLang require one. */
const NAME_RE = /^[A-Za-z0-9_-]{1,64}$/;

/** What a `response_format` asks for. */
export function readFormat(format: Record<string, unknown>): FormatRequest {
  const js = JsonSchemaFormat.safeParse(format);
  if (js.success) {
    const { name, schema, strict } = js.data.json_schema;
    return { type: "json_schema", name: name !== undefined && NAME_RE.test(name) ? name : "output", schema, ...(strict !== undefined ? { strict } : {}) };
  }
  const so = SchemaObjectFormat.safeParse(format);
  if (so.success) return { type: "json_schema", name: "output", schema: so.data.schema };
  const re = RegexFormat.safeParse(format);
  if (re.success) return { type: "regex", pattern: re.data.pattern };
  if (format.type === "json_object") return { type: "json_object" };
  if (format.type === "text") return { type: "text" };
  return { type: "other", format };
}

/** Whether the body already carries tools (some servers take a constraint or tools, not both). */
export function hasTools(body: Record<string, unknown>): boolean {
  return Array.isArray(body.tools) && body.tools.length > 0;
}

/**
 * Whether OpenAI's strict mode takes this schema: an object at the root,
 * every object closed (`additionalProperties: false`) with all its
 * properties required, and none of the keywords strict mode refuses.
 */
export function strictCompatible(schema: Record<string, unknown>): boolean {
  return schema.type === "object" && strictOk(schema);
}

const STRICT_REFUSES = ["allOf", "oneOf", "not", "if", "then", "else", "patternProperties", "dependentSchemas", "dependentRequired"];

function strictOk(s: Record<string, unknown>): boolean {
  if (STRICT_REFUSES.some((k) => k in s)) return false;
  if (s.type === "object" || (Array.isArray(s.type) && s.type.includes("object")) || isRecord(s.properties)) {
    const props = isRecord(s.properties) ? Object.keys(s.properties) : [];
    const required = Array.isArray(s.required) ? s.required : [];
    if (s.additionalProperties !== false || props.some((p) => !required.includes(p))) return false;
  }
  return subschemas(s).every(strictOk);
}

/** Keywords whose value is a map of schemas. */
const SCHEMA_MAPS = new Set(["properties", "patternProperties", "$defs", "definitions", "dependentSchemas"]);
/** Keywords whose value is a list of schemas. */
const SCHEMA_LISTS = new Set(["anyOf", "oneOf", "allOf", "prefixItems"]);
/** Keywords whose value is one schema (`items` may also be a list, draft 4). */
const SCHEMA_ONE = new Set(["items", "additionalItems", "additionalProperties", "contains", "not", "if", "then", "else", "propertyNames", "unevaluatedItems", "unevaluatedProperties"]);

/** The subschemas of a schema (not the data in `enum`, `const`, `default`, `examples`). */
function subschemas(s: Record<string, unknown>): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [];
  for (const [k, v] of Object.entries(s)) {
    if (SCHEMA_MAPS.has(k) && isRecord(v)) for (const x of Object.values(v)) if (isRecord(x)) out.push(x);
    if ((SCHEMA_LISTS.has(k) || k === "items") && Array.isArray(v)) for (const x of v) if (isRecord(x)) out.push(x);
    if (SCHEMA_ONE.has(k) && isRecord(v)) out.push(v);
  }
  return out;
}

/** A deep copy of a schema with `fix` applied to it and every subschema, bottom-up. */
function mapSchema(s: Record<string, unknown>, fix: (s: Record<string, unknown>) => Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(s)) {
    if (SCHEMA_MAPS.has(k) && isRecord(v)) {
      out[k] = Object.fromEntries(Object.entries(v).map(([name, x]) => [name, isRecord(x) ? mapSchema(x, fix) : structuredClone(x)]));
    } else if ((SCHEMA_LISTS.has(k) || k === "items") && Array.isArray(v)) {
      out[k] = v.map((x: unknown) => (isRecord(x) ? mapSchema(x, fix) : structuredClone(x)));
    } else if (SCHEMA_ONE.has(k) && isRecord(v)) {
      out[k] = mapSchema(v, fix);
    } else {
      out[k] = structuredClone(v);
    }
  }
  return fix(out);
}

/** Keywords that tell llama.cpp's converter what a schema is, when `type` does not. */
const SHAPE_WORDS = ["$ref", "oneOf", "anyOf", "allOf", "const", "enum", "properties", "additionalProperties", "items", "prefixItems", "pattern"];
const ANY_TYPE = ["object", "array", "string", "number", "boolean", "null"];

/**
 * A deep copy of a JSON Schema that llama.cpp's converter takes: patterns
 * re-spelled in its regex subset (`\d` -> `[0-9]`, also inside brackets,
 * `(?:` -> `(`) or dropped when they cannot be (lookarounds,
 * backreferences, `\b`, unanchored patterns); a `format` that is not a
 * string dropped and draft-4 boolean `exclusiveMinimum`/`exclusiveMaximum`
 * made numbers (it reads both as such and throws); a subschema with
 * neither `type` nor any keyword saying its shape (`{"description": ...}`)
 * given every type, which b4748 refuses as "Unrecognized schema" and which
 * JSON Schema means anyway. The input is not changed.
 */
export function rewriteForLlamaCpp(schema: Record<string, unknown>): Record<string, unknown> {
  return mapSchema(schema, (s) => {
    if (typeof s.pattern === "string") {
      const p = llamaCppPattern(s.pattern);
      if (p === undefined) delete s.pattern;
      else s.pattern = p;
    }
    if ("format" in s && typeof s.format !== "string") delete s.format;
    numericBound(s, "exclusiveMinimum", "minimum");
    numericBound(s, "exclusiveMaximum", "maximum");
    if (!("type" in s) && Object.keys(s).length > 0 && !SHAPE_WORDS.some((k) => k in s)) s.type = [...ANY_TYPE];
    return s;
  });
}

/** `{minimum: 5, exclusiveMinimum: true}` (draft 4) as `{exclusiveMinimum: 5}` (draft 6). */
function numericBound(s: Record<string, unknown>, exclusive: string, inclusive: string): void {
  const flag = s[exclusive];
  if (typeof flag !== "boolean") return;
  delete s[exclusive];
  if (flag && typeof s[inclusive] === "number") {
    s[exclusive] = s[inclusive];
    delete s[inclusive];
  }
}

/** One piece of a regex in the subset both ECMAScript and llama.cpp's grammars take. */
type Piece =
  | { t: "char"; c: string }
  /** `body` spelled so as to be valid in an ECMAScript class and a GBNF class alike */
  | { t: "class"; negated: boolean; body: string }
  | { t: "any" }
  | { t: "open" }
  | { t: "close" }
  | { t: "alt" }
  | { t: "quant"; q: string }
  | { t: "start" }
  | { t: "end" };

const SHORTHAND: Record<string, string> = { d: "0-9", w: "A-Za-z0-9_", s: " \\t\\n\\r" };
const CONTROL: Record<string, string> = { n: "\n", t: "\t", r: "\r", f: "\f", v: "\v" };
const QUANT_RE = /^\{(\d+)(,(\d*))?\}/;

/**
 * A regex as pieces of the subset, or undefined when it uses anything else
 * (lookarounds, backreferences, `\b`, `\p{...}`, negated shorthands inside
 * brackets, a quantifier of nothing...). Lazy quantifiers lose their `?`:
 * the strings a whole-string pattern matches are the same.
 */
function parseRegex(pattern: string): Piece[] | undefined {
  const cs = Array.from(pattern);
  const out: Piece[] = [];
  let i = 0;
  while (i < cs.length) {
    const c = cs[i] ?? "";
    if (c === "\\") {
      const e = escapeAt(cs, i + 1);
      if (!e) return undefined;
      if (e.shorthand !== undefined) out.push({ t: "class", negated: e.negated, body: e.shorthand });
      else out.push({ t: "char", c: e.char });
      i = e.next;
    } else if (c === "[") {
      const cls = classAt(cs, i + 1);
      if (!cls) return undefined;
      out.push(cls.piece);
      i = cls.next;
    } else if (c === "(") {
      if (cs[i + 1] === "?") {
        if (cs[i + 2] === ":") i += 3;
        else if (cs[i + 2] === "<" && cs[i + 3] !== "=" && cs[i + 3] !== "!") {
          const close = cs.indexOf(">", i + 3);
          if (close < 0) return undefined;
          i = close + 1;
        } else return undefined;
      } else i++;
      out.push({ t: "open" });
    } else if (c === "*" || c === "+" || c === "?" || (c === "{" && QUANT_RE.test(cs.slice(i).join("")))) {
      const q = c === "{" ? (QUANT_RE.exec(cs.slice(i).join(""))?.[0] ?? "") : c;
      const prev = out.at(-1);
      if (!prev || prev.t === "open" || prev.t === "alt" || prev.t === "quant" || prev.t === "start") return undefined;
      out.push({ t: "quant", q });
      i += Array.from(q).length;
      if (cs[i] === "?") i++;
    } else {
      out.push(c === ")" ? { t: "close" } : c === "|" ? { t: "alt" } : c === "." ? { t: "any" } : c === "^" ? { t: "start" } : c === "$" ? { t: "end" } : { t: "char", c });
      i++;
    }
  }
  let depth = 0;
  for (const p of out) {
    if (p.t === "open") depth++;
    if (p.t === "close" && --depth < 0) return undefined;
  }
  return depth === 0 ? out : undefined;
}

type Escape = { next: number } & ({ shorthand: string; negated: boolean; char?: undefined } | { char: string; shorthand?: undefined });

/** The escape after a backslash at `at`; undefined for one outside the subset. */
function escapeAt(cs: string[], at: number): Escape | undefined {
  const n = cs[at];
  if (n === undefined) return undefined;
  const lower = n.toLowerCase();
  if (SHORTHAND[lower] !== undefined && "dwsDWS".includes(n)) return { shorthand: SHORTHAND[lower] ?? "", negated: n !== lower, next: at + 1 };
  const control = CONTROL[n];
  if (control !== undefined) return { char: control, next: at + 1 };
  if (n === "x" || n === "u") {
    const len = n === "x" ? 2 : 4;
    const hex = cs.slice(at + 1, at + 1 + len).join("");
    if (!new RegExp(`^[0-9A-Fa-f]{${len}}$`).test(hex)) return undefined;
    const code = Number.parseInt(hex, 16);
    // a lone surrogate cannot be written into a grammar
    if (code >= 0xd800 && code <= 0xdfff) return undefined;
    return { char: String.fromCodePoint(code), next: at + 1 + len };
  }
  // an escaped punctuation character is that character; letters and digits are classes, anchors or backreferences
  if (/^[\x21-\x2F\x3A-\x40\x5B-\x60\x7B-\x7E ]$/.test(n)) return { char: n, next: at + 1 };
  return undefined;
}

/** A bracket class from just after `[`; undefined when it cannot be spelled in the subset. */
function classAt(cs: string[], at: number): { piece: Piece; next: number } | undefined {
  let i = at;
  const negated = cs[i] === "^";
  if (negated) i++;
  let body = "";
  let dash = false;
  let empty = true;
  const item = (): { char?: string; shorthand?: string } | undefined => {
    const c = cs[i];
    if (c === undefined) return undefined;
    if (c !== "\\") {
      i++;
      return { char: c };
    }
    const e = escapeAt(cs, i + 1);
    // a negated shorthand inside brackets has no spelling in a GBNF class
    if (!e || (e.shorthand !== undefined && e.negated)) return undefined;
    i = e.next;
    if (e.shorthand !== undefined) return { shorthand: e.shorthand };
    // `\b` in a class is a backspace; escapeAt refuses it outside
    return { char: e.char };
  };
  while (cs[i] !== "]") {
    if (i >= cs.length) return undefined;
    if (cs[i] === "\\" && cs[i + 1] === "b") {
      body += classChar("\b");
      i += 2;
      empty = false;
      continue;
    }
    const a = item();
    if (!a) return undefined;
    empty = false;
    if (a.shorthand !== undefined) {
      body += a.shorthand;
      continue;
    }
    const from = a.char ?? "";
    if (cs[i] === "-" && cs[i + 1] !== "]" && cs[i + 1] !== undefined) {
      i++;
      const b = item();
      if (!b) return undefined;
      if (b.shorthand !== undefined) {
        // `[a-\d]`: a literal dash between them
        body += classChar(from) + b.shorthand;
        dash = true;
        continue;
      }
      const to = b.char ?? "";
      if ((from.codePointAt(0) ?? 0) > (to.codePointAt(0) ?? 0)) return undefined;
      body += `${classChar(from)}-${classChar(to)}`;
    } else if (from === "-") dash = true;
    else body += classChar(from);
  }
  if (empty) return undefined;
  // a literal dash goes last, where both grammars read it as itself
  return { piece: { t: "class", negated, body: body + (dash ? "-" : "") }, next: i + 1 };
}

/** A character inside a class, spelled the same for ECMAScript and GBNF. */
function classChar(c: string): string {
  if (c === "\\" || c === "]" || c === "[") return `\\${c}`;
  if (c === "\n") return "\\n";
  if (c === "\t") return "\\t";
  if (c === "\r") return "\\r";
  if (c === "^" || c === "-" || (c.codePointAt(0) ?? 0) < 0x20) return hex(c);
  return c;
}

function hex(c: string): string {
  return `\\x${(c.codePointAt(0) ?? 0).toString(16).toUpperCase().padStart(2, "0")}`;
}

/** Regex metacharacters, escaped when meant literally. */
const REGEX_META = new Set(["^", "$", ".", "[", "]", "(", ")", "|", "{", "}", "*", "+", "?", "\\"]);

/** A character outside a class, in a form llama.cpp's converter copies rightly into a GBNF literal. */
function regexChar(c: string): string {
  if (REGEX_META.has(c)) return `\\${c}`;
  if (c === "\n") return "\\n";
  if (c === "\t") return "\\t";
  if (c === "\r") return "\\r";
  if ((c.codePointAt(0) ?? 0) < 0x20) return hex(c);
  return c;
}

/**
 * A JSON Schema `pattern` re-spelled in the regex subset llama.cpp's
 * converter takes; undefined when it has no such spelling (the caller
 * drops it). Only whole-string patterns (`^...$`) are kept: the converter
 * refuses others, and a search pattern padded with `.*` would let the
 * model write a bare `"` into the JSON string.
 */
export function llamaCppPattern(pattern: string): string | undefined {
  const pieces = parseRegex(pattern);
  if (!pieces || pieces[0]?.t !== "start" || pieces.at(-1)?.t !== "end") return undefined;
  const inner = pieces.slice(1, -1);
  if (inner.some((p) => p.t === "start" || p.t === "end")) return undefined;
  let out = "^";
  inner.forEach((p, k) => {
    if (p.t === "char") {
      const spelled = regexChar(p.c);
      // the converter joins an escaped character to the literal before it, so that a quantifier would take both
      const plain = spelled === p.c && p.c !== '"';
      out += !plain && inner[k + 1]?.t === "quant" ? `(${spelled})` : spelled;
    } else out += spellRegex(p);
  });
  return `${out}$`;
}

function spellRegex(p: Exclude<Piece, { t: "char" }>): string {
  switch (p.t) {
    case "class":
      return `[${p.negated ? "^" : ""}${p.body}]`;
    case "any":
      return ".";
    case "open":
      return "(";
    case "close":
      return ")";
    case "alt":
      return "|";
    case "quant":
      return p.q;
    case "start":
      return "^";
    case "end":
      return "$";
  }
}

/** A character inside a GBNF string literal. */
function gbnfChar(c: string): string {
  if (c === '"' || c === "\\") return `\\${c}`;
  if (c === "\n") return "\\n";
  if (c === "\t") return "\\t";
  if (c === "\r") return "\\r";
  if ((c.codePointAt(0) ?? 0) < 0x20) return hex(c);
  return c;
}

/**
 * A GBNF grammar (`root ::= ...`) for llama.cpp's `grammar` field that
 * matches what a regex matches as a whole; undefined when the regex is
 * outside the subset, anchors in its middle or has an empty alternative or
 * group (which GBNF spells differently). `.` is any character but a line
 * break, as in ECMAScript.
 */
export function regexToGbnf(pattern: string): string | undefined {
  const pieces = parseRegex(pattern);
  if (!pieces) return undefined;
  let body = pieces;
  if (body[0]?.t === "start") body = body.slice(1);
  if (body.at(-1)?.t === "end") body = body.slice(0, -1);
  if (body.length === 0 || body.some((p) => p.t === "start" || p.t === "end")) return undefined;
  const parts: string[] = [];
  let literal = "";
  const flush = () => {
    if (literal !== "") parts.push(`"${literal}"`);
    literal = "";
  };
  for (let k = 0; k < body.length; k++) {
    const p = body[k];
    const next = body[k + 1]?.t;
    if (!p) continue;
    const prev = body[k - 1]?.t;
    if ((p.t === "alt" || p.t === "close") && (prev === undefined || prev === "open" || prev === "alt")) return undefined;
    if (p.t === "alt" && (next === undefined || next === "close")) return undefined;
    if (p.t === "char") {
      // a quantifier takes the one character before it
      if (next === "quant") {
        flush();
        parts.push(`"${gbnfChar(p.c)}"`);
      } else literal += gbnfChar(p.c);
      continue;
    }
    flush();
    if (p.t === "class") parts.push(`[${p.negated ? "^" : ""}${p.body}]`);
    else if (p.t === "any") parts.push("[^\\n\\r]");
    else if (p.t === "quant") parts[parts.length - 1] = `${parts.at(-1) ?? ""}${p.q}`;
    else parts.push(spellRegex(p));
  }
  flush();
  return `root ::= ${parts.join(" ")}`;
}
