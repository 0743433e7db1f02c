import { z } from "zod";

/**
 * The settings a client may give a job (`config` of a submission). Only what
 * belongs to one job: node-level settings of a config file (LLM endpoints,
 * plugins to load from a path, log level, role slots) are not taken from a
 * remote client. No defaults here: what the client leaves out, the node
 * decides.
 */
export const JobSettingsSchema = z.strictObject({
  /** must name the submitted workflow when given */
  workflow: z.string().min(1).optional(),
  /** the workflow's own config, checked against its schema */
  options: z.record(z.string(), z.unknown()).optional(),
  /** tasks per seed, ids suffixed #0, #1... when more than one */
  trials: z.number().int().positive().max(1000).optional(),
  /** the seed of the job's deterministic random numbers */
  seed: z.number().int().optional(),
  /** step limit per task */
  maxSteps: z.number().int().positive().optional(),
  /** tasks of this job in flight at most */
  concurrency: z.number().int().positive().optional(),
  /** tries again of a step that threw something other than an LLM error */
  stepRetries: z.number().int().nonnegative().optional(),
  /** the job id; by default the node makes one */
  job: z
    .string()
    .regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/, "must be letters, digits, '_', '.', '-' (at most 128)")
    .optional(),
});
export type JobSettings = z.infer<typeof JobSettingsSchema>;

/** The keys of JobSettingsSchema: what `matrixd submit --config FILE` sends of a config file. */
export const JOB_SETTING_KEYS: readonly string[] = Object.keys(JobSettingsSchema.shape);
