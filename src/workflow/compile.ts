import { z } from "zod";
import { describe, LlmError } from "../errors.ts";
import type { Env, EnvService, EnvSpec } from "../env/types.ts";
import { chatJson, recordingClient, StructuredReplyError, sumUsage } from "../llm/structured.ts";
import type { ChatMessage, ChatRequest, LlmClient, ToolSpec } from "../llm/types.ts";
import type { AgentContext, AnyWorkflow, Metric, Role, StepResult, TurnInput } from "../plugin/api.ts";
import type { TaskState, Turn, Usage } from "../protocol/task.ts";
import { numeric } from "../engine/metrics.ts";
import { formatIssues } from "../util/issues.ts";
import { isRecord } from "../util/record.ts";
import { describeValue, Expr, ExprError, toCel } from "./expr.ts";
import { type SchemaProblem, toZod } from "./jsonschema.ts";
import { END, type LlmRoleSpec, type MessageSpec, type NextSpec, type RoleSpec, type ToolDef, type TsRoleSpec, type WorkflowFile } from "./schema.ts";
import { Template, TemplateError } from "./template.ts";

/**
 * Turns a workflow file (validated by WorkflowFileSchema) into a workflow
 * the engine runs like any other. Every template and expression is compiled
 * here, once; what does not compile is a problem at its path in the file.
 */

/** A problem of a definition, at a path inside it (`roles.critic.next.0.if`). */
export interface Problem {
  path: (string | number)[];
  message: string;
}

export interface CompileOptions {
  /** the workflows a `ts` role may name (this node's built-in and plugin ones) */
  workflows?: (name: string) => AnyWorkflow | undefined;
  /** the name the engine and the bus know the workflow by (default: the file's name) */
  name?: string;
}

/** The variable a filter sets when it stops a task: `{ role, reason }`. */
export const STOPPED_VAR = "stopped";
/** Where a task keeps the id of its environment (tool roles). */
const ENV_VAR = "_env";

/** What templates and expressions see of a task, built once per step. */
class Scope {
  #cel: Record<string, unknown> | undefined;
  #plain: Record<string, unknown> | undefined;

  constructor(
    readonly state: Readonly<TaskState>,
    readonly options: unknown,
    readonly reply?: Record<string, unknown>,
  ) {}

  /** For Jinja: plain values. */
  plain(): Record<string, unknown> {
    const s = this.state;
    this.#plain ??= {
      seed: s.seed,
      vars: s.vars,
      options: this.options,
      history: s.history,
      task: { id: s.id, trial: s.trial, steps: s.steps, job: s.job },
      reply: this.reply,
    };
    return this.#plain;
  }

  /** For CEL: whole numbers as ints (see expr.ts). */
  cel(): Record<string, unknown> {
    if (this.#cel) return this.#cel;
    const { history, ...rest } = this.plain();
    const cel = toCel(rest) as Record<string, unknown>;
    // The history is most of a long task's state and most expressions never read it: converted on first use.
    let converted: unknown;
    Object.defineProperty(cel, "history", { enumerable: true, get: () => (converted ??= toCel(history)) });
    this.#cel = cel;
    return cel;
  }

  /** Variables changed (`set`): only they are converted again. */
  changed(): void {
    if (this.#cel) this.#cel.vars = toCel(this.state.vars);
  }
}

/** Collects problems while compiling; `at` names where in the file. */
class Compiler {
  readonly problems: Problem[] = [];

  constructor(
    readonly def: WorkflowFile,
    readonly opts: CompileOptions,
  ) {}

  problem(path: (string | number)[], message: string): void {
    this.problems.push({ path, message });
  }

  expr(path: (string | number)[], source: string): Expr | undefined {
    try {
      return Expr.compile(source);
    } catch (err) {
      this.problem(path, err instanceof ExprError ? err.message : describe(err));
      return undefined;
    }
  }

  template(path: (string | number)[], source: string): Template | undefined {
    try {
      return Template.compile(source);
    } catch (err) {
      this.problem(path, err instanceof TemplateError ? err.message : describe(err));
      return undefined;
    }
  }

  schema(path: (string | number)[], schema: unknown, objects: "loose" | "strip"): z.ZodType {
    const found: SchemaProblem[] = [];
    const out = toZod(schema, found, path, objects);
    for (const p of found) this.problem(p.path, p.message);
    return out;
  }
}

/** The job options of a file: each default's type is the option's type (null takes a string or null). */
function optionsSchema(defaults: Record<string, unknown>): z.ZodType<Record<string, unknown>> {
  const shape: Record<string, z.ZodType> = {};
  for (const [k, d] of Object.entries(defaults)) {
    let t: z.ZodType;
    if (d === null) t = z.union([z.string(), z.null()]);
    else if (typeof d === "string") t = z.string();
    else if (typeof d === "boolean") t = z.boolean();
    else if (typeof d === "number") t = Number.isInteger(d) ? z.number().int() : z.number();
    else if (Array.isArray(d)) t = z.array(z.unknown());
    else t = z.record(z.string(), z.unknown());
    shape[k] = t.default(d as never);
  }
  return z.strictObject(shape) as unknown as z.ZodType<Record<string, unknown>>;
}

/** What comes after a role: its `next`, compiled. */
type NextRule = { cond?: Expr; then?: string; fail?: Template };

function compileNext(c: Compiler, path: (string | number)[], next: NextSpec): NextRule[] {
  if (typeof next === "string") return [{ then: next }];
  const rules: NextRule[] = [];
  next.forEach((n, i) => {
    const cond = n.if === undefined ? undefined : c.expr([...path, i, "if"], n.if);
    if ("then" in n) rules.push({ cond, then: n.then });
    else rules.push({ cond, fail: c.template([...path, i, "fail"], n.fail) });
  });
  return rules;
}

/** Evaluate a role's `set`, in order: each assignment sees the ones before it in `vars`. */
function compileSet(c: Compiler, path: (string | number)[], set: Record<string, string | null> | undefined): (scope: Scope, vars: Record<string, unknown>) => void {
  const steps: [string, Expr | null][] = [];
  for (const [k, src] of Object.entries(set ?? {})) {
    if (src === null) steps.push([k, null]);
    else {
      const e = c.expr([...path, k], src);
      if (e) steps.push([k, e]);
    }
  }
  if (steps.length === 0) return () => {};
  return (scope, vars) => {
    for (const [k, e] of steps) {
      const value = e === null ? undefined : e.eval(scope.cel());
      vars[k] = value;
      const live = scope.state.vars as Record<string, unknown>;
      // Later assignments read this one: the scope's vars are the state's plus what was set.
      if (value === undefined) delete live[k];
      else live[k] = value;
      scope.changed();
    }
  };
}

/** A number field of a request: a literal, or CEL. */
function compileNumber(c: Compiler, path: (string | number)[], v: number | string | undefined): ((scope: Scope) => number | undefined) | undefined {
  if (v === undefined) return undefined;
  if (typeof v === "number") return () => v;
  const e = c.expr(path, v);
  if (!e) return undefined;
  return (scope) => {
    const out = e.eval(scope.cel());
    if (out === null) return undefined;
    if (typeof out !== "number") throw new ExprError(`${JSON.stringify(v)}: gave ${describeValue(out)}, not a number`);
    return out;
  };
}

/** The messages of the dialogue so far, from the point of view of `self`. */
function historyMessages(history: readonly Turn[], roles: readonly string[], assistant: readonly string[]): ChatMessage[] {
  const out: ChatMessage[] = [];
  for (const t of history) {
    if (!roles.includes(t.role)) continue;
    if (t.toolCallId !== undefined) {
      out.push({ role: "tool", tool_call_id: t.toolCallId, content: t.text });
      continue;
    }
    const mine = assistant.includes(t.role);
    const m: ChatMessage = { role: mine ? "assistant" : "user", content: t.text };
    if (mine && t.toolCalls?.length) {
      m.tool_calls = t.toolCalls.map((tc) => ({ id: tc.id, type: "function", function: { name: tc.name, arguments: tc.arguments } }));
      if (t.text === "") m.content = null;
    }
    out.push(m);
  }
  return out;
}

function compileMessages(c: Compiler, path: (string | number)[], roleName: string, specs: MessageSpec[]): (scope: Scope) => ChatMessage[] {
  const parts: ((scope: Scope, out: ChatMessage[]) => void)[] = [];
  specs.forEach((m, i) => {
    if ("history" in m) {
      const assistant = m.history.assistant ?? [roleName];
      const roles = m.history.roles;
      parts.push((scope, out) => out.push(...historyMessages(scope.state.history, roles, assistant)));
      return;
    }
    const t = c.template([...path, i, "content"], m.content);
    if (!t) return;
    const role = m.role;
    parts.push((scope, out) => out.push({ role, content: t.render(scope.plain()) }));
  });
  return (scope) => {
    const out: ChatMessage[] = [];
    for (const p of parts) p(scope, out);
    return out;
  };
}

/** A regex or choice reply: the text checked, the value it gives. */
type Check = (text: string) => { ok: true; value: unknown } | { ok: false; problem: string };

/**
 * A chat call whose reply must pass `check`, asked again with the problem
 * (as `chatJson` does for JSON) up to `retries` times.
 */
async function chatChecked(llm: LlmClient, req: ChatRequest, check: Check, retries: number, what: string) {
  let usage: Usage = { prompt: 0, completion: 0 };
  let current = req;
  for (let tries = 1; ; tries++) {
    const result = await llm.chat(current);
    usage = sumUsage(usage, result.usage);
    const got = check(result.text.trim());
    if (got.ok) return { value: got.value, result, usage, tries };
    if (tries > retries) {
      throw new StructuredReplyError(`LLM reply from ${result.endpoint} is not ${what} after ${tries} ${tries === 1 ? "try" : "tries"}: ${got.problem}`, usage, tries, result);
    }
    current = {
      ...req,
      messages: [...req.messages, { role: "assistant", content: result.text }, { role: "user", content: `That reply was not valid: ${got.problem}. Answer again with only ${what}.` }],
    };
  }
}

function escapeRegex(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");
}


function compileLlmRole(c: Compiler, name: string, spec: LlmRoleSpec, tools: Record<string, ToolDef>): Role {
  const path = ["roles", name];
  const model = spec.model === undefined ? undefined : c.template([...path, "model"], spec.model);
  const messages = compileMessages(c, [...path, "messages"], name, spec.messages);
  const maxTokens = compileNumber(c, [...path, "max_tokens"], spec.max_tokens);
  const temperature = compileNumber(c, [...path, "temperature"], spec.temperature);
  const topP = compileNumber(c, [...path, "top_p"], spec.top_p);
  const seed = compileNumber(c, [...path, "seed"], spec.seed);
  const set = compileSet(c, [...path, "set"], spec.set);
  const toolSpecs: ToolSpec[] = [];
  (spec.tools ?? []).forEach((t, i) => {
    const def = tools[t];
    if (!def) c.problem([...path, "tools", i], `no tool "${t}" in the file's tools (${Object.keys(tools).join(", ") || "none"})`);
    else toolSpecs.push({ type: "function", function: { name: t, description: def.description, parameters: isRecord(def.parameters) ? def.parameters : { type: "object", properties: {} } } });
  });
  const reply = spec.reply;
  let json: z.ZodType | undefined;
  let check: Check | undefined;
  let format: unknown;
  let what = "";
  if (reply && "json" in reply) {
    json = c.schema([...path, "reply", "json"], reply.json, "strip");
    format = { type: "json_schema", json_schema: { name: reply.name ?? reply.into, schema: reply.json } };
  } else if (reply && "regex" in reply) {
    let re: RegExp | undefined;
    try {
      re = new RegExp(reply.regex);
    } catch (err) {
      c.problem([...path, "reply", "regex"], `bad regex: ${(err as Error).message}`);
    }
    format = { type: "regex", pattern: reply.regex };
    what = `text matching /${reply.regex}/`;
    check = (text) => {
      const m = re?.exec(text);
      if (!m) return { ok: false, problem: `${JSON.stringify(text.slice(0, 80))} does not match /${reply.regex}/` };
      return { ok: true, value: m.length > 1 ? (m[1] ?? "") : m[0] };
    };
  } else if (reply && "choice" in reply) {
    const choices = reply.choice;
    format = { type: "regex", pattern: `(${choices.map(escapeRegex).join("|")})` };
    what = `one of ${choices.join(", ")}`;
    check = (text) => {
      const hit = choices.find((o) => o === text) ?? choices.find((o) => o.toLowerCase() === text.replace(/[.!"'`*]+$/g, "").trim().toLowerCase());
      return hit === undefined ? { ok: false, problem: `${JSON.stringify(text.slice(0, 80))} is not one of ${choices.join(", ")}` } : { ok: true, value: hit };
    };
  }
  const retries = reply && "into" in reply ? compileNumber(c, [...path, "reply", "retries"], reply.retries) : undefined;
  const invalid = reply && "into" in reply ? (reply.invalid ?? "fail") : "fail";

  const request = (scope: Scope): ChatRequest => {
    const req: ChatRequest = { messages: messages(scope) };
    const m = model?.render(scope.plain()).trim();
    if (m) req.model = m;
    const mt = maxTokens?.(scope);
    if (mt !== undefined) req.max_tokens = mt;
    const te = temperature?.(scope);
    if (te !== undefined) req.temperature = te;
    const tp = topP?.(scope);
    if (tp !== undefined) req.top_p = tp;
    const sd = seed?.(scope);
    if (sd !== undefined) req.seed = sd;
    if (spec.stop) req.stop = spec.stop;
    if (toolSpecs.length > 0) req.tools = toolSpecs;
    if (format !== undefined) req.response_format = format;
    return req;
  };

  return {
    kind: "llm",
    model: model
      ? (config) => {
          try {
            return model.render({ options: config }).trim() || undefined;
          } catch {
            return undefined;
          }
        }
      : undefined,
    async run(state, ctx) {
      const scope = new Scope(state, ctx.config);
      const req = request(scope);
      const vars: Record<string, unknown> = {};
      let turn: TurnInput;
      let replyScope: Record<string, unknown>;
      if (json || check) {
        const into = (reply as { into: string }).into;
        const { client, callError, answered } = recordingClient(ctx.llm);
        const tries = retries?.(scope);
        try {
          const got = json ? await chatJson(client, req, json, { retries: tries }) : await chatChecked(client, req, check as Check, tries ?? 2, what);
          turn = { text: got.result.text.trim(), llm: { ...got.result, usage: got.usage, attempts: got.tries } };
          vars[into] = got.value;
          replyScope = { text: got.result.text, value: got.value, tries: got.tries };
        } catch (err) {
          const spent = answered();
          if (err instanceof StructuredReplyError) {
            turn = { text: err.result.text.trim(), llm: { ...err.result, usage: err.usage, attempts: err.tries } };
            if (invalid === "fail") return { turns: [turn], fail: err.message };
            replyScope = { text: err.result.text, error: err.message, tries: err.tries };
          } else if (err === callError() && err instanceof LlmError && spent && !ctx.signal.aborted) {
            // An outage after refused replies: the task fails, its tokens kept.
            return { turns: [{ text: spent.last.text.trim(), llm: { ...spent.last, usage: spent.usage, attempts: spent.tries } }], fail: describe(err) };
          } else throw err;
        }
      } else {
        const res = await ctx.llm.chat(req);
        const trim = reply && "text" in reply && reply.trim === true;
        const text = trim ? res.text.trim() : res.text;
        turn = { text, llm: res };
        if (res.toolCalls.length > 0) turn.toolCalls = res.toolCalls;
        if (reply && "text" in reply) vars[reply.text] = text;
        // As for the other replies, `reply.text` is the reply as it came; `trim` trims the turn and the variable.
        replyScope = { text: res.text, tool_calls: res.toolCalls.map((t) => ({ id: t.id, name: t.name, arguments: t.arguments })) };
      }
      const result: StepResult = { turns: [turn], vars };
      // `set` sees the reply and the variables just set.
      const view = { ...state, vars: { ...state.vars, ...vars } } as TaskState;
      set(new Scope(view, ctx.config, replyScope), vars);
      return result;
    },
  };
}

function compileCodeRole(c: Compiler, name: string, spec: RoleSpec & { kind: "code" }): Role {
  const set = compileSet(c, ["roles", name, "set"], spec.set);
  return {
    kind: "cpu",
    async run(state, ctx) {
      const vars: Record<string, unknown> = {};
      set(new Scope({ ...state, vars: { ...state.vars } } as TaskState, ctx.config), vars);
      return { vars };
    },
  };
}

function compileFilterRole(c: Compiler, name: string, spec: RoleSpec & { kind: "filter" }): Role {
  const path = ["roles", name];
  const set = compileSet(c, [...path, "set"], spec.set);
  const keep = c.expr([...path, "keep"], spec.keep);
  const reason = spec.reason === undefined ? undefined : c.template([...path, "reason"], spec.reason);
  return {
    kind: "cpu",
    async run(state, ctx) {
      const vars: Record<string, unknown> = {};
      const scope = new Scope({ ...state, vars: { ...state.vars } } as TaskState, ctx.config);
      set(scope, vars);
      if (!keep || keep.test(scope.cel())) return { vars };
      const why = reason?.render(scope.plain()) ?? `${spec.keep} is false`;
      vars[STOPPED_VAR] = { role: name, reason: why };
      return { vars };
    },
  };
}

/** The environment service among the node's services, if it has one. */
function envOf(ctx: AgentContext): EnvService | undefined {
  const s = ctx.services.env as Partial<EnvService> | undefined;
  return s && typeof s.acquire === "function" && typeof s.find === "function" ? (s as EnvService) : undefined;
}

function compileToolRole(c: Compiler, name: string, tools: Record<string, ToolDef>): Role {
  const def = c.def;
  const argSchemas = new Map<string, z.ZodType>();
  for (const [t, d] of Object.entries(tools)) argSchemas.set(t, d.parameters === undefined ? z.unknown() : c.schema(["tools", t, "parameters"], d.parameters, "loose"));
  const files = Object.entries(def.env?.files ?? {}).flatMap(([p, src]) => {
    const t = c.template(["env", "files", p], src);
    return t ? [[p, t] as const] : [];
  });
  if (Object.keys(tools).length === 0) c.problem(["roles", name], "a tool role needs the file's `tools`");
  return {
    kind: "env",
    async run(state, ctx) {
      const envs = envOf(ctx);
      if (!envs) return { fail: "no environment service on this node (run with --env docker or --env bwrap)" };
      const last = state.history[state.history.length - 1];
      const calls = last?.toolCalls ?? [];
      if (calls.length === 0) return { fail: `the last turn (${last?.role ?? "none"}) made no tool call` };
      const vars: Record<string, unknown> = {};
      let env: Env | undefined;
      const held = state.vars[ENV_VAR];
      if (typeof held === "string") {
        env = envs.find(held);
        if (!env) return { fail: `environment ${held} is not held by node ${ctx.node}` };
      } else {
        const scope = new Scope(state, ctx.config);
        const spec: EnvSpec = { files: Object.fromEntries(files.map(([p, t]) => [p, t.render(scope.plain())])) };
        if (def.env?.image) spec.image = def.env.image;
        if (def.env?.memoryMb) spec.memoryMb = def.env.memoryMb;
        if (def.env?.timeoutMs) spec.timeoutMs = def.env.timeoutMs;
        env = await envs.acquire(state.id, spec, ctx.signal);
        vars[ENV_VAR] = env.id;
      }
      const turns: TurnInput[] = [];
      for (const call of calls) turns.push({ text: await runTool(env, tools, argSchemas, call.name, call.arguments), toolCallId: call.id });
      return { turns, vars, pin: true };
    },
  };
}

async function runTool(env: Env, tools: Record<string, ToolDef>, schemas: Map<string, z.ZodType>, name: string, args: string): Promise<string> {
  const def = tools[name];
  if (!def) return `error: unknown tool "${name}" (tools: ${Object.keys(tools).join(", ")})`;
  let parsed: unknown;
  try {
    parsed = args.trim() === "" ? {} : JSON.parse(args);
  } catch (err) {
    return `error: the arguments are not JSON (${(err as Error).message})`;
  }
  const ok = (schemas.get(name) ?? z.unknown()).safeParse(parsed);
  if (!ok.success) return `error: bad arguments: ${formatIssues(ok.error)}`;
  const res = await env.exec(def.command, { stdin: JSON.stringify(parsed), timeoutMs: def.timeout_ms });
  if (res.timedOut) return `error: ${name} timed out`;
  if (res.exitCode !== 0) return `error (exit ${res.exitCode}): ${(res.stderr || res.stdout).trim().slice(0, 2000)}`;
  return res.stdout.trim();
}

function compileTsRole(c: Compiler, name: string, spec: TsRoleSpec): Role | undefined {
  const path = ["roles", name];
  const wf = c.opts.workflows?.(spec.workflow);
  if (!wf) {
    c.problem([...path, "workflow"], `no workflow "${spec.workflow}" on this node (a ts role names a built-in workflow or one loaded with --plugin)`);
    return undefined;
  }
  const role = wf.roles[spec.role];
  if (!role) {
    c.problem([...path, "role"], `workflow "${spec.workflow}" has no role "${spec.role}" (roles: ${Object.keys(wf.roles).join(", ")})`);
    return undefined;
  }
  const exprs = Object.entries(spec.config ?? {}).flatMap(([k, src]) => {
    const e = c.expr([...path, "config", k], src);
    return e ? [[k, e] as const] : [];
  });
  // That workflow's config, from the job's options, once per job (its options object).
  const configs = new WeakMap<object, unknown>();
  const configOf = (options: unknown): unknown => {
    const key = isRecord(options) ? options : {};
    if (configs.has(key)) return configs.get(key);
    const cel = toCel({ options }) as Record<string, unknown>;
    const raw = Object.fromEntries(exprs.map(([k, e]) => [k, e.eval(cel)]));
    const parsed = wf.configSchema.safeParse(raw);
    if (!parsed.success) throw new ExprError(`config of workflow "${spec.workflow}": ${formatIssues(parsed.error)}`);
    configs.set(key, parsed.data);
    return parsed.data;
  };
  const set = compileSet(c, [...path, "set"], spec.set);
  return {
    kind: role.kind,
    model: role.model ? (options) => role.model?.(configOf(options)) : undefined,
    async run(state, ctx) {
      const result = await role.run(state, { ...ctx, config: configOf(ctx.config) });
      if (!spec.set) return result;
      const vars = { ...(result.vars ?? {}) };
      set(new Scope({ ...state, vars: { ...state.vars, ...vars } } as TaskState, ctx.config), vars);
      return { ...result, vars };
    },
  };
}

/**
 * The dataset figures of a workflow file: for each of its `metrics:` names,
 * the mean over ok rows of that metric (a number, or a boolean as 1 and 0).
 */
export function fileMetrics(names: readonly string[]): Metric[] {
  return names.map((name) => ({ name, of: (m, status) => (status === "ok" ? numeric(m, name) : undefined) }));
}

/** The result of compiling: the workflow, or the problems that keep it from running. */
export type Compiled = { workflow: AnyWorkflow; problems: [] } | { workflow?: undefined; problems: Problem[] };

/** Compile a validated definition. Problems are listed, all of them; none means it runs. */
export function compileWorkflow(def: WorkflowFile, opts: CompileOptions = {}): Compiled {
  const c = new Compiler(def, opts);
  const tools = def.tools ?? {};
  const roles: Record<string, Role> = {};
  const nexts = new Map<string, NextRule[]>();
  for (const [name, spec] of Object.entries(def.roles)) {
    let role: Role | undefined;
    if (spec.kind === "llm") role = compileLlmRole(c, name, spec, tools);
    else if (spec.kind === "code") role = compileCodeRole(c, name, spec);
    else if (spec.kind === "filter") role = compileFilterRole(c, name, spec);
    else if (spec.kind === "tool") role = compileToolRole(c, name, tools);
    else role = compileTsRole(c, name, spec);
    if (role) roles[name] = role;
    nexts.set(name, compileNext(c, ["roles", name, "next"], spec.next));
    for (const [i, rule] of (nexts.get(name) ?? []).entries()) {
      if (rule.then !== undefined && rule.then !== END && !(rule.then in def.roles)) {
        const where = typeof spec.next === "string" ? ["roles", name, "next"] : ["roles", name, "next", i, "then"];
        c.problem(where, `no role "${rule.then}" (roles: ${Object.keys(def.roles).join(", ")}; or end)`);
      }
    }
  }
  if (!(def.start in def.roles)) c.problem(["start"], `no role "${def.start}" (roles: ${Object.keys(def.roles).join(", ")})`);

  const seedSchema = def.seed === undefined ? z.looseObject({}) : c.schema(["seed"], def.seed, "loose");
  const configSchema = optionsSchema(def.options);
  const outputs = Object.entries(def.output).flatMap(([k, src]) => {
    const e = c.expr(["output", k], src);
    return e ? [[k, e] as const] : [];
  });
  const metricExprs = Object.entries(def.metrics).flatMap(([k, src]) => {
    const e = c.expr(["metrics", k], src);
    return e ? [[k, e] as const] : [];
  });
  const maxStepsExpr = typeof def.maxSteps === "string" ? c.expr(["maxSteps"], def.maxSteps) : undefined;
  if (c.problems.length > 0) return { problems: c.problems };

  const filters = new Set(Object.entries(def.roles).flatMap(([n, r]) => (r.kind === "filter" ? [n] : [])));
  const startVars = def.vars;
  const hasEnv = Object.values(def.roles).some((r) => r.kind === "tool");

  const metrics = fileMetrics(metricExprs.map(([k]) => k));

  const evalAll = (entries: readonly (readonly [string, Expr])[], scope: Scope, failed: boolean, what: string): Record<string, unknown> => {
    const out: Record<string, unknown> = {};
    for (const [k, e] of entries) {
      try {
        out[k] = e.eval(scope.cel());
      } catch (err) {
        // A failed task's variables may be half set: what cannot be read is null.
        if (failed) out[k] = null;
        else throw new ExprError(`${what}.${k}: ${describe(err)}`);
      }
    }
    return out;
  };

  const workflow: AnyWorkflow = {
    name: opts.name ?? def.name,
    description: def.description,
    seedSchema,
    configSchema,
    roles,
    start: () => ({ next: def.start, vars: structuredClone(startVars) }),
    next(state, config, ran) {
      const rules = nexts.get(ran);
      if (!rules) throw new Error(`no role "${ran}"`);
      const stopped = state.vars[STOPPED_VAR];
      if (filters.has(ran) && isRecord(stopped) && stopped.role === ran) return null;
      const scope = new Scope(state, config);
      for (const r of rules) {
        if (r.cond && !r.cond.test(scope.cel())) continue;
        if (r.fail) throw new Error(r.fail.render(scope.plain()));
        return r.then === END ? null : (r.then as string);
      }
      throw new Error(`none of the conditions of roles.${ran}.next holds`);
    },
    output(state, config) {
      const scope = new Scope(state, config);
      const failed = state.error !== undefined;
      const output = evalAll(outputs, scope, failed, "output");
      const stopped = state.vars[STOPPED_VAR];
      if (isRecord(stopped) && typeof stopped.role === "string" && filters.has(stopped.role) && !(STOPPED_VAR in def.output)) output[STOPPED_VAR] = stopped.role;
      const metrics = evalAll(metricExprs, scope, failed, "metrics");
      // null: no value for this row (a stage it never reached), as a workflow in code leaves the key out
      for (const k in metrics) if (metrics[k] === null) delete metrics[k];
      return { output, metrics };
    },
    maxSteps: (config) => {
      if (!maxStepsExpr) return typeof def.maxSteps === "number" ? def.maxSteps : 200;
      const n = maxStepsExpr.eval(toCel({ options: config }) as Record<string, unknown>);
      if (typeof n !== "number" || !Number.isInteger(n) || n < 1) throw new ExprError(`maxSteps ${JSON.stringify(def.maxSteps)}: gave ${describeValue(n)}, not a whole number above 0`);
      return n;
    },
    metrics,
  };
  if (hasEnv) {
    workflow.cleanup = async (state: Readonly<TaskState>, ctx: AgentContext) => {
      if (typeof state.vars[ENV_VAR] === "string") await envOf(ctx)?.releaseOwner(state.id);
    };
  }
  return { workflow, problems: [] };
}
