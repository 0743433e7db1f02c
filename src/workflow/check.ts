import { readsName, varsRead } from "./expr.ts";
import type { Problem } from "./compile.ts";
import { STOPPED_VAR } from "./compile.ts";
import { END, type MessageSpec, type NextSpec, type RoleSpec, type WorkflowFile } from "./schema.ts";
import { templateVarsGuarded, templateVarsRead } from "./template.ts";

/**
 * What a workflow file's graph says before anything runs: roles that
 * cannot be reached, roles from which no way leads to the end, loops with
 * no way out, variables read where no role before has set them, options the
 * file does not have. Each is a problem at the place in the file that shows
 * it.
 */

/** One way out of a role. */
interface Edge {
  to: string;
  cond?: string;
  /** index in `next` when it is a list */
  at?: number;
}

export function edgesOf(next: NextSpec): Edge[] {
  if (typeof next === "string") return [{ to: next }];
  return next.flatMap((n, i) => ("then" in n ? [{ to: n.then, cond: n.if, at: i }] : []));
}

/** True when a role can end the task (successfully): `end` among its ways, or a filter. */
function ends(spec: RoleSpec): boolean {
  return spec.kind === "filter" || edgesOf(spec.next).some((e) => e.to === END);
}

/** Every CEL source and template of a role, with where it is and whether `reply` is in scope. */
function sourcesOf(name: string, spec: RoleSpec): { path: (string | number)[]; src: string; template: boolean; afterRole: boolean }[] {
  const out: { path: (string | number)[]; src: string; template: boolean; afterRole: boolean }[] = [];
  const base = ["roles", name];
  if (spec.kind === "llm") {
    spec.messages.forEach((m: MessageSpec, i) => {
      if ("content" in m) out.push({ path: [...base, "messages", i, "content"], src: m.content, template: true, afterRole: false });
    });
    if (spec.model) out.push({ path: [...base, "model"], src: spec.model, template: true, afterRole: false });
    for (const k of ["max_tokens", "temperature", "top_p", "seed"] as const) {
      const v = spec[k];
      if (typeof v === "string") out.push({ path: [...base, k], src: v, template: false, afterRole: false });
    }
  }
  if (spec.kind === "filter") {
    out.push({ path: [...base, "keep"], src: spec.keep, template: false, afterRole: true });
    if (spec.reason) out.push({ path: [...base, "reason"], src: spec.reason, template: true, afterRole: true });
  }
  if (spec.kind === "ts") for (const [k, v] of Object.entries(spec.config ?? {})) out.push({ path: [...base, "config", k], src: v, template: false, afterRole: false });
  for (const [k, v] of Object.entries(spec.set ?? {})) if (v !== null) out.push({ path: [...base, "set", k], src: v, template: false, afterRole: true });
  if (Array.isArray(spec.next)) {
    spec.next.forEach((n, i) => {
      if (n.if !== undefined) out.push({ path: [...base, "next", i, "if"], src: n.if, template: false, afterRole: true });
      if ("fail" in n) out.push({ path: [...base, "next", i, "fail"], src: n.fail, template: true, afterRole: true });
    });
  }
  return out;
}

/** Variables a role sets. `undefined`: it may set any (a ts role). */
function setsOf(spec: RoleSpec): Set<string> | undefined {
  if (spec.kind === "ts") return undefined;
  const out = new Set(Object.keys(spec.set ?? {}));
  if (spec.kind === "llm" && spec.reply) out.add("text" in spec.reply ? spec.reply.text : spec.reply.into);
  if (spec.kind === "filter") out.add(STOPPED_VAR);
  return out;
}

/** Whether a source reads `vars.NAME` only where it is tested first (`has(vars.NAME)`, `vars.?NAME`, `{% if vars.NAME %}`). */
function guarded(src: string, name: string, template: boolean): boolean {
  if (template) return templateVarsGuarded(src).includes(name);
  return new RegExp(`has\\(\\s*vars\\.${name}\\b`).test(src) || new RegExp(`vars\\.\\?${name}\\b`).test(src) || new RegExp(`["']${name}["']\\s+in\\s+vars\\b`).test(src);
}

/** Roles reachable from `from` along the edges (not `from` itself unless a loop leads back). */
function reach(from: string[], next: (r: string) => string[]): Set<string> {
  const seen = new Set<string>();
  const todo = [...from];
  while (todo.length > 0) {
    const r = todo.pop() as string;
    for (const n of next(r)) {
      if (seen.has(n)) continue;
      seen.add(n);
      todo.push(n);
    }
  }
  return seen;
}

/** The problems of a definition's graph and names (on top of what compiling found). */
export function checkGraph(def: WorkflowFile): Problem[] {
  const problems: Problem[] = [];
  const roles = def.roles;
  const names = Object.keys(roles);
  const out = (r: string) => (roles[r] ? edgesOf(roles[r].next).map((e) => e.to).filter((t) => t in roles) : []);
  const into = new Map<string, string[]>();
  for (const r of names) for (const t of out(r)) into.set(t, [...(into.get(t) ?? []), r]);

  if (!(def.start in roles)) return problems;
  const reached = reach([def.start], out);
  reached.add(def.start);
  for (const r of names) if (!reached.has(r)) problems.push({ path: ["roles", r], message: `role "${r}" cannot be reached from start (${def.start})` });

  // Roles that lead to the end: those that end, and every role that leads to one.
  const ending = names.filter((r) => ends(roles[r] as RoleSpec));
  const canEnd = reach(ending, (r) => into.get(r) ?? []);
  for (const r of ending) canEnd.add(r);
  // A way to a role that does not exist is a problem already; the end may lie beyond it.
  const broken = names.some((r) => edgesOf((roles[r] as RoleSpec).next).some((e) => e.to !== END && !(e.to in roles)));
  const stuck = broken ? [] : names.filter((r) => reached.has(r) && !canEnd.has(r));
  if (stuck.length > 0) {
    // A set of roles that only lead to each other: a loop with no way out.
    const loop = stuck.filter((r) => reach([r], out).has(r));
    for (const r of stuck) {
      const msg = loop.includes(r)
        ? `no way leads from role "${r}" to the end: ${loop.join(", ")} form a loop with no way out${def.maxSteps === undefined ? " (and no maxSteps)" : ""}`
        : `no way leads from role "${r}" to the end`;
      problems.push({ path: ["roles", r, "next"], message: msg });
    }
  }

  // Variables: what is set before each role (by `vars` or any role that can come before it).
  const initial = new Set(Object.keys(def.vars));
  const before = new Map<string, Set<string> | undefined>();
  for (const r of names) {
    const ancestors = reach([r], (x) => into.get(x) ?? []);
    let known: Set<string> | undefined = new Set(initial);
    for (const a of ancestors) {
      const s = setsOf(roles[a] as RoleSpec);
      if (s === undefined) {
        known = undefined;
        break;
      }
      for (const v of s) known.add(v);
    }
    before.set(r, known);
  }
  const optionNames = new Set(Object.keys(def.options));
  const checkOptions = (path: (string | number)[], src: string) => {
    for (const m of src.matchAll(/\boptions\s*\.\s*([A-Za-z_][A-Za-z0-9_]*)/g)) {
      const o = m[1] as string;
      if (!optionNames.has(o)) problems.push({ path, message: `reads options.${o}, which the file's options do not have (${[...optionNames].join(", ") || "none"})` });
    }
  };
  for (const r of names) {
    const spec = roles[r] as RoleSpec;
    const known = before.get(r);
    const own = setsOf(spec);
    for (const s of sourcesOf(r, spec)) {
      checkOptions(s.path, s.src);
      if (!s.template && readsName(s.src, "reply") && !(spec.kind === "llm" && s.path.includes("set"))) {
        problems.push({ path: s.path, message: "reads `reply`, which only an LLM role's `set` has (keep what is needed with `into` or `set`)" });
      }
      if (known === undefined) continue;
      const setHere = s.afterRole && own ? own : new Set<string>();
      for (const v of s.template ? templateVarsRead(s.src) : varsRead(s.src)) {
        if (known.has(v) || setHere.has(v) || guarded(s.src, v, s.template)) continue;
        problems.push({ path: s.path, message: `reads vars.${v} before any role or \`vars\` sets it` });
      }
    }
  }
  const everSet = new Set(initial);
  let anyTs = false;
  for (const r of names) {
    const s = setsOf(roles[r] as RoleSpec);
    if (s === undefined) anyTs = true;
    else for (const v of s) everSet.add(v);
  }
  for (const [what, map] of [["output", def.output], ["metrics", def.metrics]] as const) {
    for (const [k, src] of Object.entries(map)) {
      checkOptions([what, k], src);
      if (anyTs) continue;
      for (const v of varsRead(src)) if (!everSet.has(v) && !guarded(src, v, false)) problems.push({ path: [what, k], message: `reads vars.${v}, which no role and no \`vars\` set` });
    }
  }
  for (const [p, src] of Object.entries(def.env?.files ?? {})) checkOptions(["env", "files", p], src);
  return problems;
}

/** The graph as text: one line per role, its kind and where it goes. */
export function graphText(def: WorkflowFile): string {
  const lines = [`${def.name}: start -> ${def.start}`];
  for (const [name, spec] of Object.entries(def.roles)) {
    const ways = typeof spec.next === "string" ? [spec.next] : spec.next.map((n) => ("then" in n ? `${n.then}${n.if ? ` if ${n.if}` : ""}` : `fail${n.if ? ` if ${n.if}` : ""}`));
    if (spec.kind === "filter") ways.unshift(`end unless ${spec.keep}`);
    lines.push(`  ${name} (${spec.kind}) -> ${ways.join(" | ")}`);
  }
  return lines.join("\n");
}

/** The graph in Graphviz's language. */
export function graphDot(def: WorkflowFile): string {
  const q = (s: string) => JSON.stringify(s);
  const lines = [`digraph ${q(def.name)} {`, "  rankdir=LR;", `  start [shape=point]; ${q(END)} [shape=doublecircle];`, `  start -> ${q(def.start)};`];
  for (const [name, spec] of Object.entries(def.roles)) {
    lines.push(`  ${q(name)} [label=${q(`${name}\n(${spec.kind})`)}${spec.kind === "llm" ? ", shape=box" : ""}];`);
    for (const e of edgesOf(spec.next)) lines.push(`  ${q(name)} -> ${q(e.to)}${e.cond ? ` [label=${q(e.cond)}]` : ""};`);
    if (spec.kind === "filter") lines.push(`  ${q(name)} -> ${q(END)} [label=${q(`!(${spec.keep})`)}, style=dashed];`);
  }
  lines.push("}");
  return lines.join("\n");
}
