import { createHash } from "node:crypto";
import { existsSync, readFileSync, statSync } from "node:fs";
import { basename } from "node:path";
import { isMap, isScalar, isSeq, LineCounter, type Node, parseDocument } from "yaml";
import type { z } from "zod";
import { ConfigError } from "../errors.ts";
import type { AnyWorkflow } from "../plugin/api.ts";
import { canonicalJson } from "../util/hash.ts";
import { checkGraph } from "./check.ts";
import { type CompileOptions, compileWorkflow, type Problem } from "./compile.ts";
import { MAX_WORKFLOW_BYTES, RoleSchema, type RoleSpec, type WorkflowFile, WorkflowFileSchema } from "./schema.ts";
import { isRecord } from "../util/record.ts";

/**
 * Loading a workflow definition: from a file (YAML or JSON) or from the
 * JSON a job carries, through the same checks (schema, templates,
 * expressions, graph). Every problem is listed with where it is: the file's
 * line when there is a file, and the path inside the definition.
 */

/** A definition that does not pass its checks: every problem, one per line. */
export class WorkflowError extends ConfigError {
  override name = "WorkflowError";
  constructor(
    /** `writer-critic.yaml:14 roles.critic.next[0].if: ...` */
    readonly problems: string[],
    where: string,
  ) {
    super(`${where}: ${problems.length} problem${problems.length === 1 ? "" : "s"}:\n${problems.map((p) => `  ${p}`).join("\n")}`);
  }
}

/** A definition that passed: the workflow to run and what identifies it. */
export interface LoadedWorkflow {
  workflow: AnyWorkflow;
  /** the definition as given (JSON), what a job carries */
  definition: Record<string, unknown>;
  /** sha256 of the definition's canonical JSON, hex */
  hash: string;
  /** the definition after defaults */
  file: WorkflowFile;
}

/** `roles.critic.next[0].if` */
export function formatPath(path: readonly (string | number)[]): string {
  let out = "";
  for (const p of path) {
    if (typeof p === "number") out += `[${p}]`;
    else out += out === "" ? p : /^[A-Za-z0-9_-]+$/.test(p) ? `.${p}` : `[${JSON.stringify(p)}]`;
  }
  return out || "(top)";
}

/** The name the engine and the bus know a carried workflow by: its name and the start of its hash. */
export function carriedName(name: string, hash: string): string {
  return `${name}@${hash.slice(0, 12)}`;
}

/** The issues of a zod error, unions resolved to the branch that got furthest. */
function zodProblems(err: z.ZodError): Problem[] {
  const out: Problem[] = [];
  const walk = (issues: readonly z.core.$ZodIssue[], base: (string | number)[]) => {
    for (const issue of issues) {
      const path = [...base, ...(issue.path as (string | number)[])];
      if (issue.code === "invalid_union" && issue.errors.length > 0) {
        // The branch whose problems are deepest is the one the author meant.
        const depth = (b: readonly z.core.$ZodIssue[]) => Math.max(...b.map((i) => i.path.length + (i.code === "invalid_type" && i.path.length === 0 ? -1 : 0)));
        const best = [...issue.errors].sort((a, b) => depth(b) - depth(a) || a.length - b.length)[0] ?? [];
        if (best.length > 0 && depth(best) > 0) walk(best, path);
        else out.push({ path, message: issue.message === "Invalid input" ? "does not have any of the accepted shapes" : issue.message });
      } else if (issue.code === "unrecognized_keys") {
        for (const k of issue.keys) out.push({ path: [...path, k], message: "unknown key" });
      } else if (issue.code === "invalid_union" || (issue.code === "invalid_value" && "values" in issue)) {
        out.push({ path, message: issue.message });
      } else if (issue.code === "invalid_type" && issue.message.endsWith("received undefined")) {
        out.push({ path, message: `is missing (${issue.message.replace(/^Invalid input: /, "").replace(/, received undefined$/, "")})` });
      } else out.push({ path, message: issue.message });
    }
  };
  walk(err.issues, []);
  return out;
}

/** Maps paths in a YAML or JSON text to line numbers. */
class Lines {
  readonly #doc;
  readonly #counter = new LineCounter();

  constructor(text: string) {
    this.#doc = parseDocument(text, { lineCounter: this.#counter, uniqueKeys: true });
  }

  get errors(): { line: number; message: string }[] {
    return this.#doc.errors.map((e) => ({ line: e.linePos?.[0]?.line ?? 1, message: e.message.split("\n")[0] ?? e.message }));
  }

  value(): unknown {
    return this.#doc.toJS({ maxAliasCount: 100 });
  }

  /** The line of the deepest node on the path that exists. */
  line(path: readonly (string | number)[]): number | undefined {
    let node: unknown = this.#doc.contents;
    let found: Node | undefined = node as Node | undefined;
    for (const p of path) {
      if (isMap(node)) {
        const pair = node.items.find((it) => isScalar(it.key) && String(it.key.value) === String(p));
        if (!pair) break;
        found = (pair.key as Node) ?? found;
        node = pair.value;
        if (pair.value && !isMap(pair.value) && !isSeq(pair.value)) found = pair.value as Node;
      } else if (isSeq(node) && typeof p === "number") {
        node = node.items[p];
        if (!node) break;
        found = node as Node;
      } else break;
    }
    const at = found?.range?.[0];
    return at === undefined ? undefined : this.#counter.linePos(at).line;
  }
}

/**
 * The problems of the roles that have the right shape, in a definition
 * that does not: so that all problems are listed at once, not the schema's
 * first and the templates' next time.
 */
function partProblems(raw: unknown, opts: CompileOptions): Problem[] {
  if (!isRecord(raw) || !isRecord(raw.roles)) return [];
  const roles: Record<string, RoleSpec> = {};
  for (const [name, r] of Object.entries(raw.roles)) {
    const one = RoleSchema.safeParse(r);
    if (one.success) roles[name] = one.data;
  }
  const first = Object.keys(roles)[0];
  if (first === undefined) return [];
  const options = WorkflowFileSchema.shape.options.safeParse(raw.options);
  const part = WorkflowFileSchema.safeParse({ name: "part", start: first, roles, options: options.success ? options.data : {} });
  if (!part.success) return [];
  // Ways to roles left out here are not problems of their own.
  return compileWorkflow(part.data, opts).problems.filter((p) => p.path[0] === "roles" && !p.message.startsWith("no role "));
}

/** Check and compile a definition; throws WorkflowError with every problem. */
function compileChecked(raw: unknown, where: string, lineOf: ((path: readonly (string | number)[]) => number | undefined) | undefined, opts: CompileOptions): LoadedWorkflow {
  const label = (p: Problem) => {
    const line = lineOf?.(p.path);
    return `${line !== undefined ? `${where}:${line} ` : ""}${formatPath(p.path)}: ${p.message}`;
  };
  const parsed = WorkflowFileSchema.safeParse(raw);
  if (!parsed.success) throw new WorkflowError([...zodProblems(parsed.error), ...partProblems(raw, opts)].map(label), where);
  const file = parsed.data;
  const definition = raw as Record<string, unknown>;
  const hash = createHash("sha256").update(canonicalJson(definition)).digest("hex");
  const compiled = compileWorkflow(file, { ...opts, name: opts.name ?? carriedName(file.name, hash) });
  const problems = [...compiled.problems, ...checkGraph(file)];
  if (problems.length > 0 || !compiled.workflow) throw new WorkflowError(problems.map(label), where);
  return { workflow: compiled.workflow, definition, hash, file };
}

/** Whether a `--workflow` value names a file rather than a workflow. */
export function isWorkflowFile(arg: string): boolean {
  return /\.(ya?ml|json)$/i.test(arg);
}

/** Parse a definition's text (YAML or JSON); `where` names it in problems (a file name). */
export function parseWorkflowText(text: string, where: string, opts: CompileOptions = {}): LoadedWorkflow {
  if (Buffer.byteLength(text) > MAX_WORKFLOW_BYTES) throw new WorkflowError([`is ${Buffer.byteLength(text)} bytes, over the limit of ${MAX_WORKFLOW_BYTES}`], where);
  const lines = new Lines(text);
  const errs = lines.errors;
  if (errs.length > 0) throw new WorkflowError(errs.map((e) => `${where}:${e.line} ${e.message}`), where);
  return compileChecked(lines.value(), where, (p) => lines.line(p), opts);
}

/** Load a workflow file. */
export function loadWorkflowFile(path: string, opts: CompileOptions = {}): LoadedWorkflow {
  if (!existsSync(path)) throw new ConfigError(`workflow file ${path} does not exist`);
  const size = statSync(path).size;
  if (size > MAX_WORKFLOW_BYTES) throw new WorkflowError([`is ${size} bytes, over the limit of ${MAX_WORKFLOW_BYTES}`], basename(path));
  return parseWorkflowText(readFileSync(path, "utf8"), basename(path), opts);
}

/** Check and compile a definition a job carries (JSON); problems name paths in it. */
export function loadDefinition(raw: unknown, opts: CompileOptions = {}): LoadedWorkflow {
  const size = Buffer.byteLength(JSON.stringify(raw) ?? "");
  if (size > MAX_WORKFLOW_BYTES) throw new WorkflowError([`is ${size} bytes, over the limit of ${MAX_WORKFLOW_BYTES}`], "workflow definition");
  return compileChecked(raw, "workflow definition", undefined, opts);
}
