import type { z } from "zod";
import { SubmitSettingsSchema } from "../cluster/submit.ts";

/**
 * The settings a client may give a job (`config` of a submission): only
 * what belongs to one job, never node settings (LLM endpoints, plugin paths,
 * log level, role slots). The cluster node's own schema, so the API refuses
 * exactly what the node would.
 */
export const JobSettingsSchema = SubmitSettingsSchema;
export type JobSettings = z.infer<typeof JobSettingsSchema>;

/** The keys of JobSettingsSchema: what `matrixd submit --config FILE` sends of a config file. */
export const JOB_SETTING_KEYS: readonly string[] = Object.keys(JobSettingsSchema.shape);
