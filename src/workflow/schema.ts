import { z } from "zod";

/**
 * The workflow file: one zod schema for the whole format (YAML or JSON).
 * The README's "Write a workflow" section documents it with an example.
 * Strings under `messages`, `content`, `model` and `reason` are Jinja
 * templates; `if`, `set`, `keep`, `output`, `metrics` and sampling fields
 * given as strings are CEL expressions.
 */

/** Names of workflows, roles, variables, tools and options. */
const Name = z.string().regex(/^[a-z0-9][a-z0-9-]*$/, "must be lowercase letters, digits and '-'");
const RoleName = z.string().regex(/^[a-z0-9][a-z0-9_-]*$/, "must be lowercase letters, digits, '_' and '-'");
const VarName = z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, "must be letters, digits and '_', not starting with a digit");
const Cel = z.string().min(1, "is an empty expression");
const Jinja = z.string();

/** A JSON Schema (the subset in jsonschema.ts); checked there. */
const JsonSchema = z.union([z.record(z.string(), z.unknown()), z.boolean()]);

/** Where a role goes next: a role, `end`, or conditions tried in order (the first that holds wins). */
export const NextSchema = z.union([
  RoleName,
  z
    .array(
      z.union([
        z.strictObject({ if: Cel.optional(), then: RoleName }),
        z.strictObject({ if: Cel.optional(), fail: Jinja.min(1) }),
      ]),
    )
    .min(1),
]);
export type NextSpec = z.infer<typeof NextSchema>;

/** The role name that ends the task. */
export const END = "end";

/** Variables a role sets, in order (later ones see earlier ones in `vars`); null removes one. */
const SetSchema = z.record(VarName, z.union([Cel, z.null()]));

/** A number, or a CEL expression that gives one. */
const NumberOrCel = z.union([z.number(), Cel]);

/** One message of an LLM request: a templated message, or the dialogue so far. */
export const MessageSchema = z.union([
  z.strictObject({ role: z.enum(["system", "user", "assistant"]), content: Jinja }),
  z.strictObject({
    /**
     * The turns of these roles so far, in order: those of `assistant` (by
     * default the role running) as assistant messages, the others as user
     * messages; tool calls and tool results as the chat API carries them.
     */
    history: z.strictObject({ roles: z.array(RoleName).min(1), assistant: z.array(RoleName).optional() }),
  }),
]);
export type MessageSpec = z.infer<typeof MessageSchema>;

const RetrySchema = {
  /** extra tries when a reply does not fit (default: the client's, else 2); the problem is told to the model */
  retries: NumberOrCel.optional(),
  /** after the last try: `fail` the task (default), or `continue` with `reply.error` set and `into` unset */
  invalid: z.enum(["fail", "continue"]).optional(),
};

/** What an LLM reply becomes. */
export const ReplySchema = z.union([
  z.strictObject({ text: VarName, trim: z.boolean().optional() }),
  z.strictObject({ json: JsonSchema, into: VarName, name: VarName.optional(), ...RetrySchema }),
  z.strictObject({ regex: z.string().min(1), into: VarName, ...RetrySchema }),
  z.strictObject({ choice: z.array(z.string().min(1)).min(1), into: VarName, ...RetrySchema }),
]);
export type ReplySpec = z.infer<typeof ReplySchema>;

const Common = {
  description: z.string().optional(),
  set: SetSchema.optional(),
};

export const LlmRoleSchema = z.strictObject({
  kind: z.literal("llm"),
  ...Common,
  model: Jinja.optional(),
  messages: z.array(MessageSchema).min(1),
  /** tools (of the file's `tools`) the model may call */
  tools: z.array(VarName).optional(),
  max_tokens: NumberOrCel.optional(),
  temperature: NumberOrCel.optional(),
  top_p: NumberOrCel.optional(),
  seed: NumberOrCel.optional(),
  stop: z.array(z.string()).optional(),
  reply: ReplySchema.optional(),
  next: NextSchema,
});

export const CodeRoleSchema = z.strictObject({ kind: z.literal("code"), ...Common, set: SetSchema, next: NextSchema });

export const FilterRoleSchema = z.strictObject({
  kind: z.literal("filter"),
  ...Common,
  /** the task goes on while this holds; otherwise it ends `ok`, with `stopped` set */
  keep: Cel,
  /** why it stopped (a template), kept as `vars.stopped.reason` */
  reason: Jinja.optional(),
  next: NextSchema,
});

export const ToolRoleSchema = z.strictObject({ kind: z.literal("tool"), ...Common, next: NextSchema });

export const TsRoleSchema = z.strictObject({
  kind: z.literal("ts"),
  ...Common,
  /** a workflow this node has (built in or from --plugin) */
  workflow: Name,
  /** its role to run */
  role: RoleName,
  /** that workflow's config: CEL over `options`, checked with its schema (default: its defaults) */
  config: z.record(z.string(), Cel).optional(),
  next: NextSchema,
});

export const RoleSchema = z.discriminatedUnion("kind", [LlmRoleSchema, CodeRoleSchema, FilterRoleSchema, ToolRoleSchema, TsRoleSchema]);
export type RoleSpec = z.infer<typeof RoleSchema>;
export type LlmRoleSpec = z.infer<typeof LlmRoleSchema>;
export type ToolRoleSpec = z.infer<typeof ToolRoleSchema>;
export type TsRoleSpec = z.infer<typeof TsRoleSchema>;

/** A tool the model may call, and the command that runs it in the task's environment. */
export const ToolSchema = z.strictObject({
  description: z.string().min(1),
  /** its arguments (JSON Schema subset), checked before the command runs */
  parameters: JsonSchema.optional(),
  /** argv run in the environment's work folder, the arguments as JSON on stdin; stdout is the result */
  command: z.array(z.string().min(1)).min(1),
  timeout_ms: z.number().int().positive().optional(),
});
export type ToolDef = z.infer<typeof ToolSchema>;

/** The task's environment, for `tool` roles (the node needs `--env`). */
export const EnvSchema = z.strictObject({
  image: z.string().min(1).optional(),
  /** files written into the work folder when the environment is taken: path -> template */
  files: z.record(z.string().min(1), Jinja).optional(),
  memoryMb: z.number().int().min(8).optional(),
  timeoutMs: z.number().int().positive().optional(),
});

/** An option's default: a JSON scalar (its type is the option's type; null takes a string or null) or a list or map. */
const OptionDefault = z.union([z.string(), z.number(), z.boolean(), z.null(), z.array(z.unknown()), z.record(z.string(), z.unknown())]);

export const WorkflowFileSchema = z.strictObject({
  name: Name,
  description: z.string().default(""),
  /** JSON Schema (subset) of a seed row; `id` is allowed as for every workflow */
  seed: JsonSchema.optional(),
  /** the job's options with their defaults; a job's `options` override them, checked */
  options: z.record(VarName, OptionDefault).default({}),
  /** a new task's variables */
  vars: z.record(VarName, z.unknown()).default({}),
  start: RoleName,
  roles: z.record(RoleName, RoleSchema).refine((r) => Object.keys(r).length > 0, "needs at least one role"),
  tools: z.record(VarName, ToolSchema).optional(),
  env: EnvSchema.optional(),
  /** the row's output: CEL over seed, vars, history, options, task */
  output: z.record(z.string().min(1), Cel).default({}),
  /** the row's metrics (CEL); the dataset reports each one's mean over ok rows, the first as the headline */
  metrics: z.record(z.string().min(1), Cel).default({}),
  /** steps after which a task fails (default 200) */
  maxSteps: z.number().int().positive().max(100_000).optional(),
});
export type WorkflowFile = z.infer<typeof WorkflowFileSchema>;

/** The largest workflow definition taken, as text (a file) or as JSON (a job's definition). */
export const MAX_WORKFLOW_BYTES = 256 * 1024;
