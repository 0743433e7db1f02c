import { z } from "zod";

/** Tokens used by one LLM call. */
export const UsageSchema = z.object({
  prompt: z.number().int().nonnegative(),
  completion: z.number().int().nonnegative(),
  /** of the completion, tokens a reasoning model spent thinking, when the server says */
  reasoning: z.number().int().nonnegative().optional(),
});
export type Usage = z.infer<typeof UsageSchema>;

/** One tool call made by an LLM turn (OpenAI shape, flattened). */
export const ToolCallSchema = z.object({
  id: z.string(),
  name: z.string(),
  arguments: z.string(),
});
export type ToolCall = z.infer<typeof ToolCallSchema>;

/** One step's visible result: who spoke, what, and what it cost. */
export const TurnSchema = z.object({
  role: z.string(),
  text: z.string(),
  /** a reasoning model's thinking; kept with the turn, not sent back to the model unless the workflow does */
  reasoning: z.string().optional(),
  toolCalls: z.array(ToolCallSchema).optional(),
  toolCallId: z.string().optional(),
  usage: UsageSchema.optional(),
  endpoint: z.string().optional(),
  model: z.string().optional(),
  node: z.string().optional(),
  /** epoch ms when the step started */
  at: z.number(),
  /** how long the step took, ms */
  ms: z.number().nonnegative(),
});
export type Turn = z.infer<typeof TurnSchema>;

export const ProvenanceSchema = z.object({
  nodes: z.array(z.string()),
  endpoints: z.array(z.string()),
  models: z.array(z.string()),
});
export type Provenance = z.infer<typeof ProvenanceSchema>;

export const TimingsSchema = z.object({
  /** epoch ms the task was admitted */
  admitted: z.number(),
  /** epoch ms the last step ended */
  updated: z.number(),
});

/**
 * The task state: the one message that travels from role to role. It holds
 * everything a node needs to run the task's next step, so any node can.
 */
export const TaskStateSchema = z.object({
  v: z.literal(1),
  job: z.string().min(1),
  id: z.string().min(1),
  trial: z.number().int().nonnegative(),
  workflow: z.string().min(1),
  /** the role that runs next; null once the workflow is done */
  next: z.string().min(1).nullable(),
  seed: z.record(z.string(), z.unknown()),
  history: z.array(TurnSchema),
  /** workflow variables, owned by the workflow's rule and agents */
  vars: z.record(z.string(), z.unknown()),
  /** retries spent per role (errors the engine retried) */
  attempts: z.record(z.string(), z.number().int().nonnegative()),
  /** steps run so far (for the step limit) */
  steps: z.number().int().nonnegative(),
  timings: TimingsSchema,
  provenance: ProvenanceSchema,
  /** set when the task failed; next is then null */
  error: z.string().optional(),
  /** the node the task must stay on (it holds something local there, such as an environment) */
  pin: z.string().min(1).optional(),
});
export type TaskState = z.infer<typeof TaskStateSchema>;

/** One dataset row: exactly one per task. */
export interface OutputRow {
  id: string;
  job: string;
  workflow: string;
  trial: number;
  seed: unknown;
  status: "ok" | "failed";
  error?: string;
  output: unknown;
  history: Turn[];
  metrics: Record<string, unknown>;
  usage: Usage;
  timings: { admitted: number; finished: number; ms: number };
  provenance: Provenance & {
    attempts: Record<string, number>;
    steps: number;
    version: string;
    config_hash: string;
    /** sha256 of the workflow file's definition, for a workflow from a file */
    workflow_hash?: string;
  };
}

/** Schema for rows read back (resume, results streaming): only what is relied on. */
export const OutputRowHeadSchema = z.looseObject({
  id: z.string().min(1),
  status: z.enum(["ok", "failed"]),
  metrics: z.record(z.string(), z.unknown()).optional(),
  usage: UsageSchema.optional(),
});
export type OutputRowHead = z.infer<typeof OutputRowHeadSchema>;
