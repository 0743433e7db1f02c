import { existsSync, readFileSync } from "node:fs";
import { parse as parseYaml } from "yaml";
import { z } from "zod";
import { ConfigError } from "../errors.ts";
import { formatIssues } from "../util/issues.ts";
import { isRecord } from "../util/record.ts";
import type { PreparedRequest } from "./content.ts";
import { uniform } from "./hash.ts";
import { spacedJson } from "./skills/schema.ts";
import type { SkillAnswer } from "./skills/types.ts";
import { type TemplateContext, type Template, compileTemplate, renderTemplate } from "./template.ts";

/**
 * Scripted replies: a list of rules, tried in order before the skills; the
 * first rule whose conditions all hold answers the request. A rule decides
 * from the request alone (its messages, model, hash), never from arrival
 * order, so the same request gets the same reply whatever the concurrency.
 *
 * @example
 * ```yaml
 * - { system: "You are a critic", every: 3, json: { ok: true } }
 * - { match: "/weather in (\\w+)/i", tool_call: { name: get_weather, arguments: { city: "{{1}}" } } }
 * - { match: "boom", error: 500 }
 * ```
 */

/** Which messages `match` reads. */
export const MATCH_IN = ["user", "system", "last", "any"] as const;
type MatchIn = (typeof MATCH_IN)[number];

/** The reply keys, one of which each rule has. */
const REPLY_KEYS = ["text", "json", "tool_call", "error"] as const;

/** `/source/flags` is a regular expression; any other string is matched as it is written. */
const REGEX_FORM = /^\/(.+)\/([a-z]*)$/s;
/** flags that keep a regex stateless (no g or y, whose lastIndex would make matching depend on history) */
const REGEX_FLAGS = /^[imsuv]*$/;

/** A compiled `match`, `system` or `model` value. */
type Pattern = { regex: RegExp; groups: number } | { literal: string };

const SALT_SHARE = 0x5c41;

const PatternSchema = z
  .string()
  .min(1)
  .transform((s, ctx): Pattern => {
    const m = REGEX_FORM.exec(s);
    if (!m) return { literal: s };
    const source = m[1]!;
    const flags = m[2]!;
    if (!REGEX_FLAGS.test(flags)) {
      ctx.addIssue({ code: "custom", message: `regex flags "${flags}": only i, m, s, u, v are allowed (g and y make a match depend on the one before)` });
      return z.NEVER;
    }
    try {
      const regex = new RegExp(source, flags);
      const groups = (new RegExp(`${source}|`, flags).exec("")?.length ?? 1) - 1;
      return { regex, groups };
    } catch (err) {
      ctx.addIssue({ code: "custom", message: `bad regex ${s}: ${err instanceof Error ? err.message : String(err)}` });
      return z.NEVER;
    }
  });

const TemplateSchema = z.string().transform((s, ctx): Template => {
  const t = compileTemplate(s);
  if (typeof t === "string") {
    ctx.addIssue({ code: "custom", message: t });
    return z.NEVER;
  }
  return t;
});

const RuleSchema = z
  .strictObject({
    /** a substring, or `/regex/flags`, of the messages `in` names */
    match: PatternSchema.optional(),
    /** which messages `match` reads (default the last user message) */
    in: z.enum(MATCH_IN).optional(),
    /** a substring, or `/regex/flags`, of a system (or developer) message */
    system: PatternSchema.optional(),
    /** the request's model name, exactly, or `/regex/flags` */
    model: PatternSchema.optional(),
    /** only the n-th reply of a conversation (n = 1 + the assistant messages sent) */
    turn: z.number().int().min(1).optional(),
    /** only replies whose n is a multiple of this: the every-th, 2 × every-th... */
    every: z.number().int().min(1).optional(),
    /** only this share of the requests, picked by the request's content hash */
    share: z.number().min(0).max(1).optional(),
    text: TemplateSchema.optional(),
    json: z.unknown().optional(),
    tool_call: z
      .strictObject({
        name: z.string().min(1),
        /** an object (sent as its JSON text) or the arguments' text itself, JSON or not */
        arguments: z.union([z.record(z.string(), z.unknown()), z.string()]).default({}),
      })
      .optional(),
    /** answer this HTTP status, in the server kind's own error shape */
    error: z.number().int().min(400).max(599).optional(),
    /** the error's message */
    message: z.string().min(1).optional(),
  })
  .superRefine((r, ctx) => {
    const replies = REPLY_KEYS.filter((k) => hasReply(r, k));
    for (const k of replies.slice(1)) ctx.addIssue({ code: "custom", path: [k], message: `cannot go with "${replies[0]}": a rule has one reply` });
    if (r.in !== undefined && r.match === undefined) ctx.addIssue({ code: "custom", path: ["in"], message: `says where "match" looks, but the rule has no "match"` });
    if (r.message !== undefined && r.error === undefined) ctx.addIssue({ code: "custom", path: ["message"], message: `is the message of an "error" reply, and the rule has none` });
    const groups = r.match === undefined ? -1 : "regex" in r.match ? r.match.groups : 0;
    const check = (t: Template, path: (string | number)[]): void => {
      if (t.group > groups) {
        const why = groups < 0 ? `the rule has no "match"` : groups === 0 && t.group > 0 ? `"match" is not a regex with groups` : `"match" has ${groups} group${groups === 1 ? "" : "s"}`;
        ctx.addIssue({ code: "custom", path, message: `uses {{${t.group}}}, but ${why}` });
      }
    };
    if (r.text) check(r.text, ["text"]);
    if ("json" in r) walkStrings(r.json, ["json"], (s, path) => checkString(s, path, ctx, check));
    if (r.tool_call) walkStrings(r.tool_call.arguments, ["tool_call", "arguments"], (s, path) => checkString(s, path, ctx, check));
  });
type RuleInput = z.output<typeof RuleSchema>;

/** Whether a rule has this reply; `json: null` is one (it replies `null`). */
function hasReply(r: Partial<Record<(typeof REPLY_KEYS)[number], unknown>>, k: (typeof REPLY_KEYS)[number]): boolean {
  return k in r && (k === "json" || r[k] !== undefined);
}

function checkString(s: string, path: (string | number)[], ctx: z.RefinementCtx, check: (t: Template, path: (string | number)[]) => void): void {
  const t = compileTemplate(s);
  if (typeof t === "string") ctx.addIssue({ code: "custom", path, message: t });
  else check(t, path);
}

/** Calls `f` with every string inside a JSON value (object keys excluded) and its path. */
function walkStrings(v: unknown, path: (string | number)[], f: (s: string, path: (string | number)[]) => void): void {
  if (typeof v === "string") f(v, path);
  else if (Array.isArray(v)) v.forEach((x, i) => walkStrings(x, [...path, i], f));
  else if (isRecord(v)) for (const [k, x] of Object.entries(v)) walkStrings(x, [...path, k], f);
}

/** A JSON value with the templates of its strings filled in. */
function fillStrings(v: unknown, ctx: TemplateContext): unknown {
  if (typeof v === "string") {
    const t = compileTemplate(v);
    return typeof t === "string" ? v : renderTemplate(t, ctx);
  }
  if (Array.isArray(v)) return v.map((x) => fillStrings(x, ctx));
  if (isRecord(v)) return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, fillStrings(x, ctx)]));
  return v;
}

/** Whether a JSON value has a string with a placeholder. */
function hasPlaceholder(v: unknown): boolean {
  let found = false;
  walkStrings(v, [], (s) => {
    const t = compileTemplate(s);
    if (typeof t !== "string" && !t.plain) found = true;
  });
  return found;
}

/** What a rule answers: a composed answer (which the capacity model then decodes), or an error status. */
export type ScriptedReply = { rule: number; answer: SkillAnswer } | { rule: number; error: { status: number; message: string } };

interface Rule {
  /** 1-based, as the rule's number in messages and metrics */
  index: number;
  match: Pattern | undefined;
  in: MatchIn;
  system: Pattern | undefined;
  model: Pattern | undefined;
  turn: number | undefined;
  every: number | undefined;
  share: number | undefined;
  reply(ctx: TemplateContext): ScriptedReply;
}

function compileRule(r: RuleInput, index: number): Rule {
  let reply: Rule["reply"];
  if (r.text !== undefined) {
    const t = r.text;
    reply = (ctx) => ({ rule: index, answer: { kind: "exact", text: renderTemplate(t, ctx) } });
  } else if (r.tool_call !== undefined) {
    const { name, arguments: args } = r.tool_call;
    const fixed = hasPlaceholder(args) ? undefined : typeof args === "string" ? args : spacedJson(args);
    reply = (ctx) => {
      let text = fixed;
      if (text === undefined) {
        const filled = fillStrings(args, ctx);
        text = typeof filled === "string" ? filled : spacedJson(filled);
      }
      return { rule: index, answer: { kind: "tool", name, arguments: text } };
    };
  } else if (r.error !== undefined) {
    const error = { status: r.error, message: r.message ?? `Scripted error: rule #${index} of the sim script.` };
    reply = () => ({ rule: index, error });
  } else {
    const value = r.json;
    const fixed = hasPlaceholder(value) ? undefined : spacedJson(value);
    reply = (ctx) => ({ rule: index, answer: { kind: "exact", text: fixed ?? spacedJson(fillStrings(value, ctx)) } });
  }
  return {
    index,
    match: r.match,
    in: r.in ?? "user",
    system: r.system,
    model: r.model,
    turn: r.turn,
    every: r.every,
    share: r.share,
    reply,
  };
}

/** The groups of a pattern's match in `text` (the whole match first), or undefined. */
function find(p: Pattern, text: string): (string | undefined)[] | undefined {
  if ("literal" in p) return text.includes(p.literal) ? [p.literal] : undefined;
  const m = p.regex.exec(text);
  return m ? [...m] : undefined;
}

/** The first match of `p` in the messages `which` names. */
function findIn(p: Pattern, prep: PreparedRequest, which: MatchIn): (string | undefined)[] | undefined {
  const ms = prep.body.messages;
  const texts = prep.texts;
  switch (which) {
    case "user":
      for (let i = ms.length - 1; i >= 0; i--) if (ms[i]!.role === "user") return find(p, texts[i]!);
      return undefined;
    case "last":
      return find(p, texts[texts.length - 1] ?? "");
    case "system":
      for (let i = 0; i < ms.length; i++) {
        const role = ms[i]!.role;
        if (role !== "system" && role !== "developer") continue;
        const g = find(p, texts[i]!);
        if (g) return g;
      }
      return undefined;
    case "any":
      for (const t of texts) {
        const g = find(p, t);
        if (g) return g;
      }
      return undefined;
  }
}

/** A loaded script: its rules, compiled and checked. */
export class SimScript {
  private constructor(
    private readonly rules: readonly Rule[],
    /** the file it came from, or a name for inline rules */
    readonly source: string,
  ) {}

  /** Rules in the script. */
  get size(): number {
    return this.rules.length;
  }

  /**
   * The reply of the first rule that matches, or undefined (the skills then
   * answer). `model` is the request's model name, or the served one when the
   * request names none.
   */
  reply(prep: PreparedRequest, model: string): ScriptedReply | undefined {
    if (this.rules.length === 0) return undefined;
    let n = 1;
    for (const m of prep.body.messages) if (m.role === "assistant") n++;
    for (const r of this.rules) {
      if (r.turn !== undefined && n !== r.turn) continue;
      if (r.every !== undefined && n % r.every !== 0) continue;
      if (r.model !== undefined && !("literal" in r.model ? r.model.literal === model : r.model.regex.test(model))) continue;
      if (r.share !== undefined && !(uniform(prep.hash, SALT_SHARE + r.index) < r.share)) continue;
      if (r.system !== undefined && !findIn(r.system, prep, "system")) continue;
      let groups: (string | undefined)[] = [];
      if (r.match !== undefined) {
        const g = findIn(r.match, prep, r.in);
        if (!g) continue;
        groups = g;
      }
      return r.reply({ n, model, groups });
    }
    return undefined;
  }

  /**
   * Checks and compiles a script: a file (YAML, or JSON by its `.json`
   * name; a relative path is read from the working directory) holding a
   * list of rules, or the list itself. Throws ConfigError naming the file,
   * the rule (counted from 1) and the key.
   */
  static load(source: string | readonly unknown[]): SimScript {
    const where = typeof source === "string" ? `sim script ${source}` : "sim script (inline)";
    const raw = typeof source === "string" ? readScript(source) : source;
    if (!Array.isArray(raw)) throw new ConfigError(`${where}: must be a list of rules, got ${raw === null ? "nothing" : typeof raw}`);
    const rules: Rule[] = [];
    raw.forEach((item: unknown, i: number) => {
      const at = `${where}: rule #${i + 1}`;
      if (!isRecord(item)) throw new ConfigError(`${at}: must be a mapping of keys (match, text, json...), got ${item === null ? "nothing" : Array.isArray(item) ? "a list" : typeof item}`);
      const parsed = RuleSchema.safeParse(item);
      if (!parsed.success) throw new ConfigError(`${at}: ${formatIssues(parsed.error)}`);
      if (!REPLY_KEYS.some((k) => hasReply(parsed.data, k))) throw new ConfigError(`${at}: has no reply: give one of ${REPLY_KEYS.join(", ")}`);
      rules.push(compileRule(parsed.data, i + 1));
    });
    return new SimScript(rules, typeof source === "string" ? source : "(inline)");
  }
}

function readScript(path: string): unknown {
  if (!existsSync(path)) throw new ConfigError(`sim script ${path} does not exist`);
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    throw new ConfigError(`sim script ${path} cannot be read: ${err instanceof Error ? err.message : String(err)}`);
  }
  try {
    return path.endsWith(".json") ? JSON.parse(text) : (parseYaml(text) ?? null);
  } catch (err) {
    throw new ConfigError(`sim script ${path} cannot be parsed: ${(err instanceof Error ? err.message : String(err)).split("\n")[0]}`);
  }
}
