import { z } from "zod";
import { isRecord } from "../util/record.ts";

/**
 * The JSON Schema subset of workflow files (a seed row's shape, a
 * structured reply's shape), turned into zod so a value is checked with the
 * same messages as everywhere else. The schema itself is sent as written to
 * servers with guided decoding.
 *
 * Kept: `type` (one or a list), `properties`, `required`,
 * `additionalProperties` (a boolean), `items`, `minItems`, `maxItems`,
 * `minLength`, `maxLength`, `pattern`, `enum`, `const`, `minimum`,
 * `maximum`, `exclusiveMinimum`, `exclusiveMaximum`, `anyOf`, and the
 * annotations `$schema`, `title`, `description`, `default`, `examples`.
 */

/** A problem of a schema, at a path inside it. */
export interface SchemaProblem {
  path: (string | number)[];
  message: string;
}

const TYPES = ["object", "string", "number", "integer", "boolean", "array", "null"] as const;
type JsonType = (typeof TYPES)[number];

const KEYWORDS = new Set([
  "type",
  "properties",
  "required",
  "additionalProperties",
  "items",
  "minItems",
  "maxItems",
  "minLength",
  "maxLength",
  "pattern",
  "enum",
  "const",
  "minimum",
  "maximum",
  "exclusiveMinimum",
  "exclusiveMaximum",
  "anyOf",
  "$schema",
  "title",
  "description",
  "default",
  "examples",
]);

/**
 * Turn a JSON Schema (subset) into zod. Problems (unknown keywords, wrong
 * types of keywords) are pushed to `problems`, at paths under `at`; the
 * schema then accepts anything where it is wrong.
 *
 * `objects`: how an object with no `additionalProperties` treats other
 * keys: "loose" keeps them (seed rows), "strip" drops them.
 */
export function toZod(schema: unknown, problems: SchemaProblem[], at: (string | number)[] = [], objects: "loose" | "strip" = "loose"): z.ZodType {
  const bad = (path: (string | number)[], message: string): z.ZodType => {
    problems.push({ path: [...at, ...path], message });
    return z.unknown();
  };
  if (schema === true || (isRecord(schema) && Object.keys(schema).length === 0)) return z.unknown();
  if (!isRecord(schema)) return bad([], "a schema must be an object");
  for (const k of Object.keys(schema)) if (!KEYWORDS.has(k)) bad([k], `unsupported schema keyword "${k}" (supported: ${[...KEYWORDS].join(", ")})`);

  if (schema.anyOf !== undefined) {
    if (!Array.isArray(schema.anyOf) || schema.anyOf.length === 0) return bad(["anyOf"], "must be a non-empty list of schemas");
    const options = schema.anyOf.map((s, i) => toZod(s, problems, [...at, "anyOf", i], objects));
    return options.length === 1 ? (options[0] as z.ZodType) : z.union(options as [z.ZodType, z.ZodType, ...z.ZodType[]]);
  }
  if (schema.const !== undefined) return z.literal(schema.const as string | number | boolean | null);
  if (schema.enum !== undefined) {
    if (!Array.isArray(schema.enum) || schema.enum.length === 0) return bad(["enum"], "must be a non-empty list");
    const literals = schema.enum.map((v) => z.literal(v as string | number | boolean | null));
    return literals.length === 1 ? (literals[0] as z.ZodType) : z.union(literals as unknown as [z.ZodType, z.ZodType, ...z.ZodType[]]);
  }

  const t = schema.type;
  const types: JsonType[] = [];
  for (const one of Array.isArray(t) ? t : t === undefined ? [] : [t]) {
    if (typeof one !== "string" || !TYPES.includes(one as JsonType)) return bad(["type"], `unknown type ${JSON.stringify(one)} (one of ${TYPES.join(", ")})`);
    types.push(one as JsonType);
  }
  if (types.length === 0) {
    if (schema.properties !== undefined) types.push("object");
    else if (schema.items !== undefined) types.push("array");
    else return z.unknown();
  }
  const made = types.map((ty) => typed(ty, schema, problems, at, objects));
  return made.length === 1 ? (made[0] as z.ZodType) : z.union(made as [z.ZodType, z.ZodType, ...z.ZodType[]]);
}

function num(schema: Record<string, unknown>, key: string, problems: SchemaProblem[], at: (string | number)[], int = false): number | undefined {
  const v = schema[key];
  if (v === undefined) return undefined;
  if (typeof v !== "number" || (int && (!Number.isInteger(v) || v < 0))) {
    problems.push({ path: [...at, key], message: int ? "must be a whole number >= 0" : "must be a number" });
    return undefined;
  }
  return v;
}

function typed(ty: JsonType, s: Record<string, unknown>, problems: SchemaProblem[], at: (string | number)[], objects: "loose" | "strip"): z.ZodType {
  switch (ty) {
    case "null":
      return z.null();
    case "boolean":
      return z.boolean();
    case "string": {
      let out = z.string();
      const min = num(s, "minLength", problems, at, true);
      const max = num(s, "maxLength", problems, at, true);
      if (min !== undefined) out = out.min(min);
      if (max !== undefined) out = out.max(max);
      if (s.pattern !== undefined) {
        if (typeof s.pattern !== "string") problems.push({ path: [...at, "pattern"], message: "must be a string" });
        else {
          try {
            out = out.regex(new RegExp(s.pattern, "u"));
          } catch (err) {
            problems.push({ path: [...at, "pattern"], message: `bad regex: ${(err as Error).message}` });
          }
        }
      }
      return out;
    }
    case "number":
    case "integer": {
      let out = ty === "integer" ? z.number().int() : z.number();
      const min = num(s, "minimum", problems, at);
      const max = num(s, "maximum", problems, at);
      const xmin = num(s, "exclusiveMinimum", problems, at);
      const xmax = num(s, "exclusiveMaximum", problems, at);
      if (min !== undefined) out = out.min(min);
      if (max !== undefined) out = out.max(max);
      if (xmin !== undefined) out = out.gt(xmin);
      if (xmax !== undefined) out = out.lt(xmax);
      return out;
    }
    case "array": {
      let out = z.array(s.items === undefined ? z.unknown() : toZod(s.items, problems, [...at, "items"], objects));
      const min = num(s, "minItems", problems, at, true);
      const max = num(s, "maxItems", problems, at, true);
      if (min !== undefined) out = out.min(min);
      if (max !== undefined) out = out.max(max);
      return out;
    }
    case "object": {
      const props = s.properties ?? {};
      if (!isRecord(props)) {
        problems.push({ path: [...at, "properties"], message: "must be a map of schemas" });
        return z.record(z.string(), z.unknown());
      }
      const required = s.required ?? [];
      if (!Array.isArray(required) || required.some((r) => typeof r !== "string")) {
        problems.push({ path: [...at, "required"], message: "must be a list of property names" });
      }
      const req = new Set(Array.isArray(required) ? required.map(String) : []);
      for (const r of req) if (!(r in props)) problems.push({ path: [...at, "required"], message: `"${r}" is required but not in properties` });
      const shape: Record<string, z.ZodType> = {};
      for (const [k, sub] of Object.entries(props)) {
        const zs = toZod(sub, problems, [...at, "properties", k], objects);
        shape[k] = req.has(k) ? zs : zs.optional();
      }
      const extra = s.additionalProperties;
      if (extra !== undefined && typeof extra !== "boolean") {
        problems.push({ path: [...at, "additionalProperties"], message: "must be true or false" });
      }
      if (extra === false) return z.strictObject(shape);
      if (extra === true || objects === "loose") return z.looseObject(shape);
      return z.object(shape);
    }
  }
}

/** The properties a schema of an object names (for the checks of what expressions read). */
export function propertyNames(schema: unknown): string[] | undefined {
  if (!isRecord(schema) || !isRecord(schema.properties)) return undefined;
  return Object.keys(schema.properties);
}
