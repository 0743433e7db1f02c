import type { JobRuntime } from "./job.ts";
import { describe, RowTooBigError } from "../errors.ts";
import { formatBytes } from "../util/bytes.ts";
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

/**
 * The most characters a row's JSON may have. Answers are capped (the LLM
 * client's maxAnswerBytes), so only a task of very many turns comes near;
 * past it, and well before the 2 GiB where encoding fails for lack of
 * memory, the row is not stored.
 */
export const MAX_ROW_CHARS = 256 * 1024 * 1024;

/**
 * A row as one JSONL line (newline included).
 *
 * @throws RowTooBigError naming its size when it is over MAX_ROW_CHARS or cannot be encoded at all
 */
export function encodeRow(row: OutputRow, max = MAX_ROW_CHARS): string {
  let line: string;
  try {
    line = `${JSON.stringify(row)}\n`;
  } catch (err) {
    if (!(err instanceof RangeError)) throw err;
    throw new RowTooBigError(`its row is too big to store (about ${formatBytes(rowChars(row))} of text; encoding it failed: ${err.message})`);
  }
  if (line.length > max) throw new RowTooBigError(`its row is too big to store (${formatBytes(line.length)} of JSON, over ${formatBytes(max)})`);
  return line;
}

/** The characters of a row's turns, roughly what makes it big. */
function rowChars(row: OutputRow): number {
  let n = 0;
  for (const t of row.history) n += t.text.length + (t.reasoning?.length ?? 0);
  return n;
}

/** The failed row that replaces a row too big to store: the task's identity and the reason, without its turns or output. */
export function slimRow(row: OutputRow, error: string): OutputRow {
  return { ...row, status: "failed", error, output: null, history: [], metrics: {} };
}
