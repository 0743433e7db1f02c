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
}

/** Finds the runtime of a job by id; undefined when the job is unknown or cancelled. */
export type JobResolver = (jobId: string) => JobRuntime | undefined | Promise<JobRuntime | undefined>;
