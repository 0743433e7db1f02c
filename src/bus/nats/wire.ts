import { z } from "zod";
import { ClaimSchema } from "../../protocol/claim.ts";
import { TaskStateSchema } from "../../protocol/task.ts";

/**
 * The bus's own wire messages: a task state handed between nodes and the
 * notes about admission holds. Each is CBOR (codec.ts), decoded and
 * validated once where it is taken off NATS; anything that fails is counted
 * and dropped.
 */

/**
 * The hold a job's admission keeps on a task: the un-acknowledged seed
 * message. Whoever stores the task's row acks it (any connection may ack a
 * JetStream message by its ack subject) and tells the admitting node.
 */
export const SeedRefSchema = z.object({
  /** node that admitted the task and keeps the seed message alive */
  node: z.string().min(1),
  job: z.string().min(1),
  id: z.string().min(1),
  /** stream sequence of the seed message */
  seq: z.number().int().positive(),
  /** its ack subject */
  ack: z.string().startsWith("$JS.ACK."),
});
export type SeedRef = z.infer<typeof SeedRefSchema>;

/** A task state handed to a role on another node, with the admission hold it carries. */
export const TaskEnvelopeSchema = z.object({
  v: z.literal(1),
  state: TaskStateSchema,
  seed: SeedRefSchema.optional(),
  /** the state's large texts, kept in the object store (their places in `state` hold empty strings) */
  parts: z.array(ClaimSchema).optional(),
  /** epoch ms when it was published, for the hop latency figure */
  sent: z.number(),
});
export type TaskEnvelope = z.infer<typeof TaskEnvelopeSchema>;

/** "The row of this task is stored", sent to the node that admitted it. */
export const DoneNoticeSchema = z.object({
  v: z.literal(1),
  job: z.string().min(1),
  seq: z.number().int().positive(),
});
export type DoneNotice = z.infer<typeof DoneNoticeSchema>;

