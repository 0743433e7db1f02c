import { z } from "zod";
import { PricesSchema } from "../engine/accounting.ts";
import { BudgetSchema } from "../protocol/job.ts";
import { AdmissionSchema } from "../engine/admission.ts";
import { LlmSectionSchema } from "../llm/config.ts";
import { SuperviseSchema } from "../services/supervisor.ts";
import { readConfigFile, validate } from "./load.ts";

export const RoleConfigSchema = z.strictObject({
  /** steps of this role running at once on a node */
  slots: z.number().int().positive(),
});

/** A job's settings, from a config file and the command line. */
export const JobConfigSchema = z.strictObject({
  workflow: z.string().min(1).optional(),
  /** tasks in flight at most */
  concurrency: z.number().int().positive().default(1024),
  /** tasks per seed, ids suffixed #0, #1... when more than one */
  trials: z.number().int().positive().default(1),
  /** the seed of the job's deterministic random numbers */
  seed: z.number().int().default(0),
  /** job id; by default derived from the workflow, config and seed file */
  job: z.string().min(1).optional(),
  /** step limit per task; by default the workflow's own */
  maxSteps: z.number().int().positive().optional(),
  /** tries again of a step that threw something other than an LLM error */
  stepRetries: z.number().int().nonnegative().default(1),
  roles: z.record(z.string(), RoleConfigSchema).default({}),
  /** the workflow's own config, checked against its schema */
  options: z.record(z.string(), z.unknown()).default({}),
  /** the LLM client's settings; endpoints listed here join the supervised ones (`--llm` replaces them) */
  llm: LlmSectionSchema.optional(),
  /** dollars per million tokens, by model: `{ model: { prompt, completion } }`; gives each job's cost */
  prices: PricesSchema.default({}),
  /** the job admits no new tasks once it has used this many tokens or dollars; the run then exits 1 */
  budget: BudgetSchema.optional(),
  /** which tasks start first: `order` file (the default), shuffle, largest or smallest (by `key`, CEL over the seed), over a `window` of seeds read ahead */
  admission: AdmissionSchema.optional(),
  /** local LLM servers this node starts and watches (`--supervise`) */
  supervise: z.array(SuperviseSchema).default([]),
  /** per-task environments (`--env`): driver, capacity, limits; checked when opened */
  env: z.record(z.string(), z.unknown()).optional(),
  /** settings of the in-process simulated LLM (`--llm sim`), its `script` of replies included; checked when it starts */
  sim: z.record(z.string(), z.unknown()).optional(),
  /** workflow files to load besides the built-in ones */
  plugins: z.array(z.string()).default([]),
  log: z.strictObject({ level: z.enum(["trace", "debug", "info", "warn", "error", "fatal", "silent"]) }).optional(),
});
export type JobConfig = z.infer<typeof JobConfigSchema>;

/** Load and validate a job config file (YAML or JSON); errors name the file and key. */
export function loadJobConfig(path: string | undefined): JobConfig {
  const raw = path === undefined ? {} : readConfigFile(path);
  return validate(JobConfigSchema, raw, `config ${path ?? "(defaults)"}`);
}
