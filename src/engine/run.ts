import { LocalBus } from "../bus/local.ts";
import { llmCapacity } from "../llm/capacity.ts";
import type { LlmClient } from "../llm/types.ts";
import type { Logger } from "../log.ts";
import type { AnyWorkflow } from "../plugin/api.ts";
import type { OutputRow } from "../protocol/task.ts";
import { JsonlSink, scanOutput } from "../sink/jsonl.ts";
import { dropFailedRows } from "../sink/retry.ts";
import type { Budget, Failure } from "../protocol/job.ts";
import { Accounting, type AccountingReport } from "./accounting.ts";
import { Semaphore } from "../util/wait.ts";
import { StepTimes } from "./step-times.ts";
import { Engine, type EngineStats } from "./engine.ts";
import type { JobRuntime } from "./job.ts";
import { topFailures } from "./failures.ts";
import { addRow, emptyTally, metricMeans } from "./metrics.ts";
import { encodeRow } from "./row.ts";
import { type SeedEntry, SeedFile, startTask } from "./tasks.ts";
import { type Admission, AdmissionOrder, inAdmissionOrderAsync } from "./admission.ts";

export interface RunJobOptions {
  job: JobRuntime;
  seedsPath: string;
  outPath: string;
  /** tasks in flight at most */
  concurrency: number;
  trials: number;
  /**
   * slots per role; a role not named gets, when it is LLM-bound and there is
   * an LLM client, what the endpoints serving its model can run plus a small
   * queue (`llmCapacity`), else `concurrency`
   */
  roleSlots?: Record<string, number>;
  llm?: LlmClient;
  log: Logger;
  node: string;
  services?: Record<string, unknown>;
  /** aborting stops admission; tasks in flight finish */
  signal?: AbortSignal;
  /** called once the run is under way, with a way to read progress */
  onStart?: (progress: () => RunProgress) => void;
  /** where LLM calls are counted (one is made when not given) */
  accounting?: Accounting;
  /**
   * once reached, no new task is admitted and tasks in flight finish; tasks
   * not admitted get no row (a later run with the same output resumes them)
   */
  budget?: Budget;
  /** which tasks start first (file order when not given) */
  admission?: Admission;
  /** run again the tasks whose rows in the output are failed, replacing those rows (see dropFailedRows) */
  retryFailed?: boolean;
}

export interface RunProgress {
  /** rows in the output, this run's and earlier runs' */
  done: number;
  ok: number;
  failed: number;
  inFlight: number;
  /** tasks found done in the output at start */
  resumed: number;
  /** lines read from the seed file so far */
  read: number;
  stats: EngineStats;
  startedAt: number;
}

export interface RunSummary {
  ok: number;
  failed: number;
  /** rows this run wrote */
  written: number;
  /** tasks skipped because their rows were already in the output */
  resumed: number;
  /** failed rows taken out of the output for their tasks to run again (--retry-failed) */
  retried?: number;
  /** bytes of a torn last line dropped from the output at start */
  tornBytes: number;
  /** true when the run was stopped before every seed was admitted */
  stopped: boolean;
  seconds: number;
  hops: number;
  steps: number;
  promptTokens: number;
  completionTokens: number;
  metrics: Record<string, number | null>;
  /** the most common reasons of failed rows (earlier runs' included), most first */
  failures: Failure[];
  /** this run's LLM calls by role, model and endpoint, with cost when prices are set */
  accounting?: AccountingReport;
  /** set when the budget stopped admission, e.g. `budget reached: 1,000,412 tokens of 1,000,000` */
  budgetReached?: string;
}

/**
 * Run one job on this machine with the in-process bus: stream the seed file,
 * keep `concurrency` tasks in flight, append one row per task to the output,
 * and skip tasks whose rows an earlier run already wrote.
 */
export async function runJob(opts: RunJobOptions): Promise<RunSummary> {
  const { job, log } = opts;
  const wf: AnyWorkflow = job.workflow;
  const metricDefs = wf.metrics ?? [];
  const tally = emptyTally();
  let okBefore = 0;
  let failedBefore = 0;
  const retried = opts.retryFailed ? dropFailedRows(opts.outPath).ids.size : undefined;
  if (retried !== undefined) log.info({ out: opts.outPath, retried }, `took ${retried} failed rows out of the output: their tasks run again`);
  const resumed = scanOutput(opts.outPath, (row) => {
    if (row.status === "ok") okBefore++;
    else failedBefore++;
    addRow(tally, { ...row, error: typeof row.error === "string" ? row.error : undefined }, metricDefs);
  });
  if (resumed.tornBytes > 0) log.warn({ out: opts.outPath, bytes: resumed.tornBytes }, "dropped a torn last line from the output");
  const done = resumed.done;
  const sink = new JsonlSink(opts.outPath, log, { rowsBefore: resumed.rows });
  // a write that fails stops admission, and the run, at once: no further row could be kept
  const stop = new AbortController();
  const signal = opts.signal ? AbortSignal.any([opts.signal, stop.signal]) : stop.signal;
  const broken = sink.broken.then((err) => {
    stop.abort();
    return err;
  });
  const admission = new Semaphore(opts.concurrency);
  let ok = okBefore;
  let failed = failedBefore;

  const accounting = opts.accounting ?? new Accounting();
  if (opts.budget) accounting.setBudget(job.id, opts.budget);
  const stepTimes = new StepTimes();
  const bus = new LocalBus(stepTimes);
  const engine = new Engine({
    stepTimes,
    bus,
    jobs: () => job,
    node: opts.node,
    log,
    llm: opts.llm,
    services: opts.services,
    accounting,
    finish: async (row) => {
      // a row too big throws here, before anything is counted: the runner stores a failed row instead
      sink.writeLine(encodeRow(row));
      if (row.status === "ok") ok++;
      else failed++;
      addRow(tally, row, metricDefs);
      admission.release();
    },
  });
  engine.hostWorkflow(wf, (role) => opts.roleSlots?.[role] ?? defaultSlots(wf, role, job.config, opts.llm, opts.concurrency));

  const seeds = new SeedFile(opts.seedsPath, job, opts.trials, { skip: (id) => done.has(id), signal });
  const startedAt = Date.now();
  opts.onStart?.(() => ({
    done: ok + failed,
    ok,
    failed,
    inFlight: admission.inFlight,
    resumed: resumed.rows,
    read: seeds.read,
    stats: engine.stats,
    startedAt,
  }));

  let stopped = false;
  let budgetReached: string | undefined;
  const writeRow = (row: OutputRow) => {
    sink.write(row);
    failed++;
    addRow(tally, row, metricDefs);
  };
  const order = new AdmissionOrder(
    opts.admission,
    (e: SeedEntry) => (e.ok ? e.seed : undefined),
    job.seed,
    (err, e) => log.warn({ job: job.id, line: e.ok ? e.line : undefined, err: err.message }, `seed line ${e.ok ? e.line : "?"}: ${err.message}; seeds whose admission key cannot be read start in file order`),
  );
  const admit = async () => {
    for await (const entry of inAdmissionOrderAsync(seeds.entries(), order)) {
      // seeds held back for the admission order are not started once the run is stopped
      if (signal.aborted) {
        stopped = true;
        break;
      }
      if (!entry.ok) {
        writeRow(entry.row);
        continue;
      }
      if ((budgetReached = accounting.budgetReached(job.id))) {
        stopped = true;
        break;
      }
      // no LLM endpoint answers: the tasks in flight wait for one, and nothing new is admitted meanwhile
      if (opts.llm && (opts.llm.waitingForEndpoint?.() ?? 0) > 0) await pauseAdmission(opts.llm, job.id, log, opts.signal);
      const wait = admission.acquire();
      if (wait) await wait;
      // the budget may have run out while this task waited for a place
      if ((budgetReached = accounting.budgetReached(job.id))) {
        admission.release();
        stopped = true;
        break;
      }
      const started = startTask(job, entry);
      if (started.row) {
        admission.release();
        writeRow(started.row);
        continue;
      }
      void engine.begin(started.state);
    }
    if (seeds.stopped) stopped = true;
    if (order.keyErrors > 1) log.warn({ job: job.id, seeds: order.keyErrors }, `${order.keyErrors} seeds had no admission key and started in file order`);
    if (budgetReached) log.warn({ job: job.id, event: "budget.reached", reason: budgetReached }, `job ${job.id} reached its budget (${budgetReached}): no new tasks are admitted, those in flight finish`);
    await admission.idle();
  };
  const admitted = admit().then(() => undefined);
  // once the output broke, admission winds down unwatched: its end is no news
  admitted.catch(() => {});
  try {
    const broke = await Promise.race([admitted, broken]);
    if (broke) throw broke;
  } finally {
    sink.close();
  }
  if (sink.error) throw sink.error;
  const s = engine.stats;
  return {
    ok,
    failed,
    written: sink.rows,
    resumed: resumed.rows,
    ...(retried !== undefined ? { retried } : {}),
    tornBytes: resumed.tornBytes,
    stopped,
    seconds: (Date.now() - startedAt) / 1000,
    hops: s.hops,
    steps: s.steps,
    promptTokens: s.promptTokens,
    completionTokens: s.completionTokens,
    metrics: metricMeans(tally, metricDefs),
    failures: topFailures(tally.failures),
    accounting: accounting.report(job.id),
    ...(budgetReached ? { budgetReached } : {}),
  };
}

/** How often a paused admission looks whether LLM requests still wait for an endpoint. */
const PAUSE_CHECK_MS = 250;

/** Admit nothing while LLM requests wait for an endpoint to come back (or their wait runs out). */
async function pauseAdmission(llm: LlmClient, job: string, log: Logger, signal: AbortSignal | undefined): Promise<void> {
  const t0 = Date.now();
  log.warn({ job, event: "job.waiting" }, `job ${job}: no LLM endpoint answers; admission paused, the tasks in flight wait for one`);
  while ((llm.waitingForEndpoint?.() ?? 0) > 0 && !signal?.aborted) await Bun.sleep(PAUSE_CHECK_MS);
  log.warn({ job, event: "job.resumed", waitedSec: Math.round((Date.now() - t0) / 1000) }, `job ${job}: admission resumed`);
}

/** Slots of a role the user gave none: an LLM-bound role's follow its endpoints' capacity. */
function defaultSlots(wf: AnyWorkflow, role: string, config: unknown, llm: LlmClient | undefined, concurrency: number): number {
  const r = wf.roles[role];
  if (!llm || r?.kind !== "llm") return concurrency;
  return llmCapacity(llm, r.model?.(config));
}
