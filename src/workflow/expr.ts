import { Environment } from "@marcbachmann/cel-js";
import { fnv1a } from "../util/hash.ts";
import { isRecord } from "../util/record.ts";
import { excerpt, lastBoxed } from "../util/text.ts";

/**
 * CEL expressions of workflow files (conditions, variables, output and
 * metrics), through cel-js: no code execution, bounded, typed errors.
 *
 * Values cross between JSON and CEL here and only here. JSON has one number
 * type and CEL two: a whole number becomes a CEL `int`, any other a
 * `double`, and both mix in arithmetic and comparisons as they do in JSON
 * (`vars.rounds + 1`, `vars.score >= 3.5`, `4 == 4.0`). Back from CEL, ints
 * become numbers again.
 */

/** An expression that does not compile, or failed when evaluated. */
export class ExprError extends Error {
  override name = "ExprError";
}

/** The names an expression may read; `reply` only in an LLM role's `set` and `next`. */
export const EXPR_NAMES = ["seed", "vars", "options", "history", "task", "reply"] as const;

const LIMITS = { maxAstNodes: 5000, maxDepth: 100, maxListElements: 1000, maxMapEntries: 1000, maxCallArguments: 16 };

/** A regex of an expression's `find`: JS syntax, with `(?i)`, `(?s)`, `(?m)` (or several, e.g. `(?is)`) in front for flags. */
function regexOf(pattern: string, global: boolean): RegExp {
  let flags = global ? "g" : "";
  let src = pattern;
  const lead = /^\(\?([ims]+)\)/.exec(src);
  if (lead) {
    flags += lead[1];
    src = src.slice(lead[0].length);
  }
  const cached = regexCache.get(`${flags}/${src}`);
  if (cached) {
    cached.lastIndex = 0;
    return cached;
  }
  let re: RegExp;
  try {
    re = new RegExp(src, flags);
  } catch (err) {
    throw new ExprError(`bad regex ${JSON.stringify(pattern)}: ${(err as Error).message}`);
  }
  if (regexCache.size > 500) regexCache.clear();
  regexCache.set(`${flags}/${src}`, re);
  return re;
}
const regexCache = new Map<string, RegExp>();

/** The first capture group of a match, else the whole match. */
function captured(m: RegExpExecArray | RegExpMatchArray): string {
  return m.length > 1 ? (m[1] ?? "") : m[0];
}

/** The functions workflow expressions have besides CEL's own (documented in the README). */
function environment(): Environment {
  const num = (v: unknown): number => (typeof v === "bigint" ? Number(v) : (v as number));
  const env = new Environment({ unlistedVariablesAreDyn: true, homogeneousAggregateLiterals: false, enableOptionalTypes: true, limits: LIMITS })
    .registerFunction("hash(string): int", (s: string) => BigInt(fnv1a(s)))
    .registerFunction("string.find(string): string", (s: string, p: string) => {
      const m = regexOf(p, false).exec(s);
      return m ? captured(m) : "";
    })
    .registerFunction("string.findLast(string): string", (s: string, p: string) => {
      let last: RegExpExecArray | undefined;
      for (const m of s.matchAll(regexOf(p, true))) last = m as RegExpExecArray;
      return last ? captured(last) : "";
    })
    .registerFunction("string.findAll(string): list<string>", (s: string, p: string) => [...s.matchAll(regexOf(p, true))].map(captured))
    .registerFunction("string.boxed(): string", (s: string) => lastBoxed(s) ?? "")
    .registerFunction("string.excerpt(int): string", (s: string, n: bigint) => excerpt(s, Number(n)))
    .registerFunction("string.truncate(int): string", (s: string, n: bigint) => s.slice(0, Math.max(0, Number(n))))
    .registerFunction("string.words(): int", (s: string) => BigInt(s.split(/\s+/).filter((w) => w.length > 0).length))
    .registerFunction("json(dyn): string", (v: unknown) => JSON.stringify(fromCel(v)))
    .registerFunction("round(double, int): double", (x: number, d: bigint) => {
      const f = 10 ** Number(d);
      return Math.round(x * f) / f;
    })
    .registerFunction("round(int, int): double", (x: bigint) => Number(x))
    .registerFunction("mean(list): double", (l: unknown[]) => (l.length === 0 ? 0 : l.reduce<number>((a, v) => a + num(v), 0) / l.length))
    .registerFunction("sum(list): double", (l: unknown[]) => l.reduce<number>((a, v) => a + num(v), 0));
  // JSON's one number type: ints and doubles mix.
  const mixed: [string, (a: number, b: number) => unknown][] = [
    ["+", (a, b) => a + b],
    ["-", (a, b) => a - b],
    ["*", (a, b) => a * b],
    ["/", (a, b) => a / b],
  ];
  for (const [op, fn] of mixed) {
    env.registerOperator(`int ${op} double`, (a: bigint, b: number) => fn(Number(a), b));
    env.registerOperator(`double ${op} int`, (a: number, b: bigint) => fn(a, Number(b)));
  }
  // Equality is registered once for both orders, and `!=` follows from it.
  env.registerOperator("int == double", (a: bigint, b: number) => Number(a) === b);
  return env;
}

let shared: Environment | undefined;

/** A value as CEL takes it: whole numbers become ints; `undefined` fields are left out. */
export function toCel(v: unknown): unknown {
  if (typeof v === "number") return Number.isInteger(v) && Number.isSafeInteger(v) ? BigInt(v) : v;
  if (Array.isArray(v)) return v.map(toCel);
  if (isRecord(v)) {
    const out: Record<string, unknown> = {};
    for (const k in v) {
      const x = v[k];
      if (x !== undefined) out[k] = toCel(x);
    }
    return out;
  }
  return v;
}

/** A CEL value as JSON holds it: ints become numbers (a string past 2^53), maps objects. */
export function fromCel(v: unknown): unknown {
  if (typeof v === "bigint") return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v.toString();
  if (Array.isArray(v)) return v.map(fromCel);
  if (v instanceof Map) {
    const out: Record<string, unknown> = {};
    for (const [k, x] of v) out[String(k)] = fromCel(x);
    return out;
  }
  if (v instanceof Uint8Array) return Buffer.from(v).toString("base64");
  if (isRecord(v)) {
    const out: Record<string, unknown> = {};
    for (const k in v) out[k] = fromCel(v[k]);
    return out;
  }
  if (typeof v === "number" && !Number.isFinite(v)) return null;
  return v;
}

/** The message of a cel-js error, on one line, without its source excerpt (the caller names the expression). */
function firstLine(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).split("\n")[0] ?? "";
}

/** Variables an expression reads: `vars.NAME` (and `vars["NAME"]`). */
export function varsRead(source: string): string[] {
  const out = new Set<string>();
  for (const m of source.matchAll(/\bvars\s*(?:\.\??\s*([A-Za-z_][A-Za-z0-9_]*)|\[\s*["']([^"']+)["']\s*\])/g)) out.add((m[1] ?? m[2]) as string);
  return [...out];
}

/** Whether an expression reads a name (`seed`, `reply`...) at all. */
export function readsName(source: string, name: string): boolean {
  return new RegExp(`(^|[^.\\w])${name}\\b`).test(source);
}

/** A compiled CEL expression. */
export class Expr {
  readonly #eval: (ctx: Record<string, unknown>) => unknown;

  private constructor(
    readonly source: string,
    fn: (ctx: Record<string, unknown>) => unknown,
  ) {
    this.#eval = fn;
  }

  /** Compile an expression; throws ExprError naming what does not parse. */
  static compile(source: string): Expr {
    shared ??= environment();
    try {
      return new Expr(source, shared.parse(source) as unknown as (ctx: Record<string, unknown>) => unknown);
    } catch (err) {
      throw new ExprError(`does not compile: ${firstLine(err)}`);
    }
  }

  /**
   * Evaluate over a context already in CEL form (see `toCel`); returns JSON.
   * Throws ExprError with the expression and the values of the variables it reads.
   */
  eval(ctx: Record<string, unknown>): unknown {
    let out: unknown;
    try {
      out = this.#eval(ctx);
    } catch (err) {
      throw new ExprError(`${JSON.stringify(this.source)}: ${firstLine(err)}${this.#values(ctx)}`);
    }
    if (out instanceof Promise) throw new ExprError(`${JSON.stringify(this.source)}: evaluates asynchronously`);
    return fromCel(out);
  }

  /** A condition: must give a bool. */
  test(ctx: Record<string, unknown>): boolean {
    const v = this.eval(ctx);
    if (typeof v !== "boolean") throw new ExprError(`${JSON.stringify(this.source)}: gave ${describeValue(v)}, not a bool${this.#values(ctx)}`);
    return v;
  }

  /** The values of the variables the expression reads, shortened, to say what it was given. */
  #values(ctx: Record<string, unknown>): string {
    const vars = isRecord(ctx.vars) ? ctx.vars : {};
    const shown = varsRead(this.source).map((k) => `vars.${k} = ${k in vars ? short(JSON.stringify(fromCel(vars[k]))) : "(unset)"}`);
    return shown.length > 0 ? ` (${shown.join(", ")})` : "";
  }
}

function short(s: string | undefined, max = 120): string {
  if (s === undefined) return "undefined";
  return s.length > max ? `${s.slice(0, max)}...` : s;
}

/** A value's kind and a short view of it, for errors. */
export function describeValue(v: unknown): string {
  const kind = v === null ? "null" : Array.isArray(v) ? "a list" : typeof v === "object" ? "a map" : `a ${typeof v}`;
  return `${kind} ${short(JSON.stringify(v), 60)}`;
}
