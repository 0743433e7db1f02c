import { validate } from "../config/load.ts";
import { canonicalJson, hashHex } from "../util/hash.ts";
import type { AnyWorkflow } from "../plugin/api.ts";

/** What a node needs to know about a job to run its tasks' steps. */
export interface JobRuntime {
  id: string;
  workflow: AnyWorkflow;
  /** the workflow's config, validated by its schema */
  config: unknown;
  /** steps after which a task fails */
  maxSteps: number;
  /** times a step that threw (not an LLM error) is tried again */
  stepRetries: number;
  /** seed of the job's deterministic random numbers */
  seed: number;
  configHash: string;
  /** sha256 of the workflow file's definition, for a workflow from a file (kept in every row's provenance) */
  workflowHash?: string;
}

/** Finds the runtime of a job by id; undefined when the job is unknown or cancelled. */
export type JobResolver = (jobId: string) => JobRuntime | undefined | Promise<JobRuntime | undefined>;

/** Compile a job's settings once into the runtime every step uses. */
export function makeJobRuntime(args: {
  id?: string;
  workflow: AnyWorkflow;
  options: unknown;
  seed: number;
  maxSteps?: number;
  stepRetries: number;
  /** what, besides the settings, names the job when no id is given (e.g. the seed file) */
  source?: string;
  /** how errors name the options (default `options of workflow "NAME"`) */
  where?: string;
  /** the definition's hash, for a workflow from a file */
  workflowHash?: string;
}): JobRuntime {
  const config = validate(args.workflow.configSchema, args.options ?? {}, args.where ?? `options of workflow "${args.workflow.name}"`);
  const configHash = hashHex(canonicalJson({ workflow: args.workflow.name, config, seed: args.seed }));
  const rt: JobRuntime = {
    id: args.id ?? `job-${hashHex(`${configHash}:${args.source ?? ""}`)}`,
    workflow: args.workflow,
    config,
    maxSteps: args.maxSteps ?? args.workflow.maxSteps?.(config) ?? 200,
    stepRetries: args.stepRetries,
    seed: args.seed,
    configHash,
  };
  if (args.workflowHash !== undefined) rt.workflowHash = args.workflowHash;
  return rt;
}
