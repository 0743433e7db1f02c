import { z } from "zod";
import { JobSettingsSchema } from "../protocol/job.ts";
import { JobTallySchema } from "../protocol/job.ts";

/**
 * The records the cluster keeps in NATS: seeds as submitted, jobs, per-node
 * counters, and members (MemberSchema, src/protocol/member.ts). Each is CBOR
 * (codec.ts) and is decoded and validated once, where it is read; anything
 * that fails is counted and dropped.
 */

/** One task of a job as stored at submit: a seed (validated then) and its trial. */
export const SeedMessageSchema = z.object({
  v: z.literal(1),
  job: z.string().min(1),
  /** task id: the seed's id, suffixed `#trial` when the job has several trials */
  id: z.string().min(1),
  trial: z.number().int().nonnegative(),
  /** 1-based position of the seed in the submitted batch (none for a task run again from its failed row) */
  line: z.number().int().positive().optional(),
  seed: z.record(z.string(), z.unknown()),
});
export type SeedMessage = z.infer<typeof SeedMessageSchema>;

/**
 * A job as stored in the jobs bucket. `submitting` while its seeds are being
 * stored (nodes may already admit them), `running` once all are, `done` once
 * every task has its row, `cancelled` on request.
 */
export const JobRecordSchema = z.object({
  v: z.literal(1),
  id: z.string().min(1),
  workflow: z.string().min(1),
  state: z.enum(["submitting", "running", "done", "cancelled"]),
  total: z.number().int().nonnegative(),
  /** the role new tasks start at (admission pulls seeds when it has a free slot) */
  entry: z.string().min(1),
  settings: JobSettingsSchema,
  createdAt: z.number(),
  updatedAt: z.number(),
  acceptedBy: z.string(),
  /** exact counts, set when the job is done */
  final: JobTallySchema.optional(),
  reason: z.string().optional(),
  /** seeds streamed in: no task is admitted before the last one is stored and the job is running */
  streamed: z.boolean().optional(),
  /** set while, and after, the job's failed tasks run again (`retry-failed`) */
  retry: z
    .object({
      /** 1 for the first time the failed tasks run again, 2 for the next... rows stored meanwhile say it */
      round: z.number().int().positive(),
      /** the node that asked for it and stores the seeds */
      by: z.string(),
      at: z.number(),
      /** the failed rows whose tasks run again */
      tasks: z.number().int().nonnegative(),
      /** every seed is stored (until then a coordinator stores them if the node storing them is gone) */
      seeded: z.boolean(),
      /** what the rows that are not run again add up to: the job's figures are these plus this round's rows */
      base: JobTallySchema,
    })
    .optional(),
  /** set once the cluster's spending reached the job's budget: no new task is admitted */
  budgetReached: z.string().optional(),
  /**
   * The workflow definition the job carries (a workflow file, as JSON), for
   * a job whose workflow is not one of the nodes' own: every node compiles
   * it (once per hash) and hosts its roles. `workflow` is then its carried
   * name, `NAME@` and the first 12 hex digits of `definitionHash`. At most
   * MAX_WORKFLOW_BYTES (256 KiB) of JSON; the whole record, definition
   * included, must fit in one NATS message (max_payload, 1 MiB by default).
   */
  definition: z.record(z.string(), z.unknown()).optional(),
  /** sha256 (hex) of the definition's canonical JSON; a node runs the definition only when its own hash agrees */
  definitionHash: z
    .string()
    .regex(/^[0-9a-f]{64}$/, "must be 64 hex digits")
    .optional(),
});
export type JobRecord = z.infer<typeof JobRecordSchema>;
export type JobRecordState = JobRecord["state"];

/** What one node has stored of one job, written by that node alone. */
export const NodeCountersSchema = JobTallySchema.extend({
  v: z.literal(1),
  node: z.string(),
  at: z.number(),
  /** the job's retry round these counts are of (rows stored while its failed tasks ran again); none for the first run */
  round: z.number().int().positive().optional(),
  /** what this node's LLM calls for the job have used so far, call by call (rows count only finished tasks) */
  spent: z.object({ tokens: z.number().nonnegative(), cost: z.number().nonnegative() }).optional(),
});
export type NodeCounters = z.infer<typeof NodeCountersSchema>;
