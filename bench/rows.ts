/**
 * What a mode's dataset says: rows and their statuses, duplicates, steps,
 * task latencies and the workflow's quality metric. Every mode writes the
 * same row shape, so every mode is read the same way. The workflow is a
 * built-in one's name or a workflow file's path.
 */
import { existsSync } from "node:fs";
import { builtinWorkflows } from "../plugins/index.ts";
import { addRow, emptyTally, metricMeans } from "../src/engine/metrics.ts";
import type { AnyWorkflow } from "../src/plugin/api.ts";
import { fileLines } from "../src/util/lines.ts";
import { isWorkflowFile, loadWorkflowFile } from "../src/workflow/index.ts";

export interface DatasetStats {
  rows: number;
  distinct: number;
  ok: number;
  failed: number;
  /** steps summed over rows: each step is one hop to the next role (or to the row) */
  steps: number;
  /** from a task's first step to its row, seconds */
  latencyP50S: number;
  latencyP99S: number;
  /** the workflow's headline metric (first of its metrics), mean over rows */
  quality: number | null;
  qualityName: string;
  /** rows the quality mean is over */
  qualityN: number;
  /** a few failure reasons, for the report */
  errors: string[];
  /** the most completion tokens one row's task generated (its calls one after the other) */
  maxTaskCompletion: number;
}

interface RowView {
  id?: unknown;
  status?: unknown;
  error?: unknown;
  metrics?: Record<string, unknown>;
  history?: { at?: unknown }[];
  timings?: { admitted?: unknown; finished?: unknown };
  provenance?: { steps?: unknown };
  usage?: { completion?: unknown };
}

/** A built-in workflow by name, or a workflow file by path. */
function workflowOf(workflow: string): AnyWorkflow | undefined {
  const builtin = (name: string) => builtinWorkflows.find((w) => w.name === name);
  return builtin(workflow) ?? (isWorkflowFile(workflow) ? loadWorkflowFile(workflow, { workflows: builtin }).workflow : undefined);
}

export async function readDataset(path: string, workflow: string): Promise<DatasetStats> {
  const wf = workflowOf(workflow);
  const metrics = wf?.metrics ?? [];
  const headlineDefs = metrics.slice(0, 1);
  const tally = emptyTally();
  const ids = new Set<string>();
  const lat: number[] = [];
  const errors = new Set<string>();
  let rows = 0;
  let ok = 0;
  let steps = 0;
  let qualityN = 0;
  let maxTaskCompletion = 0;
  const headline = metrics[0];
  const lines = existsSync(path) ? fileLines(path) : empty();
  for await (const line of lines) {
    if (!line) continue;
    const row = JSON.parse(line) as RowView;
    rows++;
    ids.add(String(row.id));
    const status = row.status === "ok" ? "ok" : "failed";
    if (status === "ok") ok++;
    else if (errors.size < 5) errors.add(String(row.error));
    const m = row.metrics ?? {};
    addRow(tally, { status, metrics: m }, headlineDefs);
    if (headline?.of(m, status) !== undefined) qualityN++;
    const s = row.provenance?.steps;
    if (typeof s === "number") steps += s;
    const completion = Number(row.usage?.completion);
    if (Number.isFinite(completion) && completion > maxTaskCompletion) maxTaskCompletion = completion;
    const finished = Number(row.timings?.finished);
    const first = Number(row.history?.[0]?.at ?? row.timings?.admitted);
    if (Number.isFinite(finished) && Number.isFinite(first)) lat.push((finished - first) / 1000);
  }
  lat.sort((a, b) => a - b);
  const q = (p: number) => (lat.length ? (lat[Math.min(lat.length - 1, Math.floor(p * lat.length))] as number) : Number.NaN);
  return {
    rows,
    distinct: ids.size,
    ok,
    failed: rows - ok,
    steps,
    latencyP50S: q(0.5),
    latencyP99S: q(0.99),
    quality: headline ? (metricMeans(tally, headlineDefs)[headline.name] ?? null) : null,
    qualityName: headline?.name ?? "-",
    qualityN,
    errors: [...errors],
    maxTaskCompletion,
  };
}

async function* empty(): AsyncGenerator<string> {}
