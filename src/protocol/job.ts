import { z } from "zod";
import { AdmissionSchema } from "../engine/admission.ts";

/**
 * A job's settings and status as the cluster keeps and answers them: the
 * settings a job runs with (stored in its record), the settings a client may
 * give (`config` of a submission), and the status every node reports (`GET
 * /v1/jobs/:id`, read by `matrixd submit` and `matrixd status`).
 */

/**
 * What a job may spend: tokens (prompt + completion) and/or dollars (from
 * `prices`). Once reached, the job admits no new tasks; tasks in flight
 * finish. Tasks never admitted get no row: running the job again with the
 * same output (and a larger budget) picks them up.
 */
export const BudgetSchema = z
  .strictObject({
    tokens: z.number().int().positive().optional(),
    cost: z.number().positive().optional(),
  })
  .refine((b) => b.tokens !== undefined || b.cost !== undefined, { message: "needs tokens or cost" });
export type Budget = z.infer<typeof BudgetSchema>;

/** The settings a job runs with, fixed at submit (the given ones, the defaults for the rest). */
export const JobSettingsSchema = z.object({
  /** tasks in flight at most */
  concurrency: z.number().int().positive(),
  /** tasks per seed, ids suffixed #0, #1... when more than one */
  trials: z.number().int().positive().max(1000),
  /** the seed of the job's deterministic random numbers */
  seed: z.number().int(),
  /** step limit per task; by default the workflow's own */
  maxSteps: z.number().int().positive().optional(),
  /** tries again of a step that threw something other than an LLM error */
  stepRetries: z.number().int().nonnegative(),
  /** the workflow's own config, checked against its schema */
  options: z.record(z.string(), z.unknown()),
  /** the job admits no new task once the cluster has spent this much (tokens, or dollars at the nodes' prices) */
  budget: BudgetSchema.optional(),
  /**
   * `"followed"`: a row leaves NATS once a follower (`matrixd results ID
   * --follow --out FILE`) reports it durably written; only a compact
   * marker of the task stays, so its counts and one row per task hold
   */
  purgeRows: z.enum(["followed"]).optional(),
  /** which tasks start first: file order (the default), a shuffle, or largest / smallest by a key over the seed */
  admission: AdmissionSchema.optional(),
});
export type JobSettings = z.infer<typeof JobSettingsSchema>;

/**
 * The settings a client may give a job (`config` of a submission): any of
 * the job's settings, the job's workflow (which must be the submitted one)
 * and its id. Only what belongs to one job: a node setting (LLM endpoints,
 * plugin paths, log level, role slots) is an unknown key, refused.
 */
export const SubmitSettingsSchema = z.strictObject({
  workflow: z.string().min(1).optional(),
  ...JobSettingsSchema.partial().shape,
  job: z
    .string()
    .regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/, "must be letters, digits, '_', '.', '-' (at most 128)")
    .optional(),
});
export type SubmitSettings = z.infer<typeof SubmitSettingsSchema>;

/** The keys of SubmitSettingsSchema: what `matrixd submit --config FILE` sends of a config file. */
export const SUBMIT_SETTING_KEYS: readonly string[] = Object.keys(SubmitSettingsSchema.shape);

/**
 * Rows over time: per bucket of `width` ms from `start` (epoch ms, a
 * multiple of `width`), the rows stored ok and failed and their tokens.
 * Widths are the base width times a power of two, so two timelines re-bin
 * exactly to the wider one; a timeline keeps at most a few hundred buckets
 * and doubles its width when it would need more (src/engine/timeline.ts).
 */
export const TimelineSchema = z.object({
  start: z.number().int(),
  width: z.number().int().positive(),
  ok: z.array(z.number().int().nonnegative()),
  failed: z.array(z.number().int().nonnegative()),
  tokens: z.array(z.number().int().nonnegative()),
});
export type Timeline = z.infer<typeof TimelineSchema>;

export const JobStateSchema = z.enum(["running", "done", "cancelled"]);
export type JobState = z.infer<typeof JobStateSchema>;

/** One reason rows failed for: how many, and one of those tasks with its whole error. */
export const FailureSchema = z.object({
  reason: z.string(),
  count: z.number().int().positive(),
  task: z.string(),
  error: z.string(),
});
export type Failure = z.infer<typeof FailureSchema>;

/** Failed rows by reason (at most about 20 reasons, the rest under "other reasons"), each with an example. */
export const FailureTallySchema = z.record(z.string(), FailureSchema.omit({ reason: true }));
export type FailureTally = z.infer<typeof FailureTallySchema>;

/** A job as any node reports it. */
export const JobStatusSchema = z.object({
  id: z.string(),
  workflow: z.string(),
  state: JobStateSchema,
  /** tasks in the job (seeds × trials) */
  total: z.number(),
  /** not yet admitted */
  queued: z.number(),
  /** admitted, no row yet */
  running: z.number(),
  ok: z.number(),
  failed: z.number(),
  promptTokens: z.number(),
  completionTokens: z.number(),
  /** rows per second over the job's life so far */
  rate: z.number(),
  createdAt: z.number(),
  updatedAt: z.number(),
  /** node that accepted the job */
  acceptedBy: z.string(),
  /** why the job ended as it did (who cancelled it, or the budget it reached) */
  reason: z.string().optional(),
  /** the job's budget, what the cluster's LLM calls for it used so far, and, once reached, that it admits no new tasks */
  budget: JobSettingsSchema.shape.budget,
  spent: z.object({ tokens: z.number(), cost: z.number() }).optional(),
  budgetReached: z.string().optional(),
  /** set when the job's rows leave NATS once a follower has written them */
  purgeRows: JobSettingsSchema.shape.purgeRows,
  /** set once the job's failed tasks were run again: the last round, and how many tasks it ran again */
  retry: z.object({ round: z.number().int().positive(), tasks: z.number().int().nonnegative() }).optional(),
  /** the workflow's quality metrics over the rows so far */
  metrics: z.record(z.string(), z.number().nullable()).optional(),
  /** the most common reasons of failed rows, most first (at most 10), each with an example task and its error */
  failures: z.array(FailureSchema).optional(),
  /** the rows over time (in the status of one job, not in the list of jobs) */
  timeline: TimelineSchema.optional(),
});
export type JobStatus = z.infer<typeof JobStatusSchema>;

/** What a job's rows add up to: counts, tokens, and per workflow metric the sum and the rows counted. */
export const JobTallySchema = z.object({
  ok: z.number().int().nonnegative(),
  failed: z.number().int().nonnegative(),
  promptTokens: z.number().int().nonnegative(),
  completionTokens: z.number().int().nonnegative(),
  /** per workflow metric: [sum, rows counted] */
  sums: z.record(z.string(), z.tuple([z.number(), z.number().int().nonnegative()])),
  /** failed rows by reason (src/engine/failures.ts) */
  failures: FailureTallySchema.optional(),
  /** the rows over time, by the time each was stored */
  timeline: TimelineSchema.optional(),
});
export type JobTally = z.infer<typeof JobTallySchema>;
