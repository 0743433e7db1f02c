/**
 * The placeholders of a scripted reply's text: `{{n}}` (the reply's number
 * in its conversation), `{{model}}` (the request's model name) and `{{0}}`
 * to `{{9}}` (the whole match and the groups of the rule's `match`). Any
 * other `{{...}}` is an error when the script is loaded, so a typo never
 * goes out as reply text.
 */

/** What a reply's placeholders are filled with. */
export interface TemplateContext {
  n: number;
  model: string;
  /** the match of the rule's `match` (index 0) and its groups; empty without `match` */
  groups: readonly (string | undefined)[];
}

type Part = string | { name: "n" | "model" } | { group: number };

/** A compiled template. */
export interface Template {
  readonly parts: readonly Part[];
  /** the highest group number it uses, -1 for none */
  readonly group: number;
  /** the text itself when it has no placeholder */
  readonly plain: string | undefined;
}

const PLACEHOLDER = /\{\{\s*([^{}]*?)\s*\}\}/g;

/** Compiles a template; a string is the error (an unknown placeholder). */
export function compileTemplate(s: string): Template | string {
  if (!s.includes("{{")) return { parts: [s], group: -1, plain: s };
  const parts: Part[] = [];
  let group = -1;
  let at = 0;
  for (const m of s.matchAll(PLACEHOLDER)) {
    const name = m[1]!;
    let part: Part;
    if (name === "n" || name === "model") part = { name };
    else if (/^\d$/.test(name)) {
      part = { group: Number(name) };
      group = Math.max(group, part.group);
    } else return `unknown placeholder {{${name}}}: the known ones are {{n}}, {{model}} and {{0}} to {{9}}`;
    if (m.index > at) parts.push(s.slice(at, m.index));
    parts.push(part);
    at = m.index + m[0].length;
  }
  if (at < s.length) parts.push(s.slice(at));
  return { parts, group, plain: parts.length === 1 && typeof parts[0] === "string" ? parts[0] : undefined };
}

/** The template's text with its placeholders filled in. */
export function renderTemplate(t: Template, ctx: TemplateContext): string {
  if (t.plain !== undefined) return t.plain;
  let out = "";
  for (const p of t.parts) {
    if (typeof p === "string") out += p;
    else if ("group" in p) out += ctx.groups[p.group] ?? "";
    else out += p.name === "n" ? String(ctx.n) : ctx.model;
  }
  return out;
}
