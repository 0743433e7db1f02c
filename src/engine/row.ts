import type { JobRuntime } from "./job.ts";
import { describe } from "../errors.ts";
import type { OutputRow, TaskState, Usage } from "../protocol/task.ts";
import { VERSION } from "../version.ts";

/** The dataset row of a finished (or failed) task. */
export function buildRow(state: TaskState, job: JobRuntime, now = Date.now()): OutputRow {
  let output: unknown = null;
  let metrics: Record<string, unknown> = {};
  let error = state.error;
  try {
    const out = job.workflow.output(state, job.config);
    output = out.output;
    metrics = out.metrics;
  } catch (err) {
    error = error ?? `output: ${describe(err)}`;
  }
  const usage: Usage = { prompt: 0, completion: 0 };
  for (const t of state.history) {
    if (t.usage) {
      usage.prompt += t.usage.prompt;
      usage.completion += t.usage.completion;
    }
  }
  const row: OutputRow = {
    id: state.id,
    job: state.job,
    workflow: state.workflow,
    trial: state.trial,
    seed: state.seed,
    status: error === undefined ? "ok" : "failed",
    output,
    history: state.history,
    metrics,
    usage,
    timings: { admitted: state.timings.admitted, finished: now, ms: now - state.timings.admitted },
    provenance: {
      ...state.provenance,
      attempts: state.attempts,
      steps: state.steps,
      version: VERSION,
      config_hash: job.configHash,
    },
  };
  if (job.workflowHash !== undefined) row.provenance.workflow_hash = job.workflowHash;
  if (error !== undefined) row.error = error;
  return row;
}

/** A failed row for a seed line that never became a task (not JSON, bad schema, duplicate id). */
export function seedErrorRow(
  id: string,
  seed: unknown,
  error: string,
  job: { id: string; workflow: string; configHash: string },
  trial = 0,
): OutputRow {
  const now = Date.now();
  return {
    id,
    job: job.id,
    workflow: job.workflow,
    trial,
    seed,
    status: "failed",
    error,
    output: null,
    history: [],
    metrics: {},
    usage: { prompt: 0, completion: 0 },
    timings: { admitted: now, finished: now, ms: 0 },
    provenance: {
      nodes: [],
      endpoints: [],
      models: [],
      attempts: {},
      steps: 0,
      version: VERSION,
      config_hash: job.configHash,
    },
  };
}
