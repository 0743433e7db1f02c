import { hostname } from "node:os";
import { builtinWorkflows } from "../plugins/index.ts";
import { loadJobConfig } from "../src/config/run.ts";
import { Accounting, type UsageTotals } from "../src/engine/accounting.ts";
import { makeJobRuntime } from "../src/engine/job.ts";
import { formatProgress } from "../src/engine/progress.ts";
import { type RunProgress, type RunSummary, runJob } from "../src/engine/run.ts";
import { type LlmError, UsageError } from "../src/errors.ts";
import { failureSummary } from "../src/engine/failures.ts";
import { createLogger, LiveLine } from "../src/log.ts";
import { checkEnvDriver, checkLlmGiven, checkNodeEndpoints, checkSupervised, checkOutPath, preflight, workflowNeeds } from "../src/preflight/index.ts";
import { Registry, loadPlugin } from "../src/plugin/registry.ts";
import { lockOutput } from "../src/sink/lock.ts";
import { countLines } from "../src/util/lines.ts";
import { resolveWorkflow } from "../src/workflow/index.ts";
import { checkSeedFile, intFlag, NODE_FLAGS, parseCommand } from "./args.ts";
import { superviseFlags } from "./llm.ts";
import { openNodeServices } from "./services.ts";
import { handleSignals } from "./signals.ts";

export const RUN_HELP = `matrixd run: run a job on this machine, in-process, with no external service

usage: matrixd run --workflow NAME|FILE --seeds FILE.jsonl --out FILE.jsonl
                   [--llm sim | --llm URL ...] [--supervise CMD ...] [--env docker|bwrap] [--concurrency N]
                   [--config FILE] [--plugin PATH ...] [--retry-failed]

  --workflow NAME|FILE workflow to run: built in (coral, coral-dummy, reasoning-extract, tool-use),
                       from --plugin, or a workflow file (.yaml, .yml, .json; see matrixd check)
  --seeds FILE         seed rows, one JSON object per line
  --out FILE           dataset (JSONL), one row per task; an existing file is resumed:
                       tasks whose rows it holds are skipped; a missing folder is created
  --retry-failed       run again the tasks whose rows in --out are failed: their rows are taken out
                       (the file is rewritten beside itself and renamed) and replaced by the new ones;
                       ok rows stay as they are
  --llm sim|URL        'sim' starts a simulated LLM in-process; a URL is an OpenAI-compatible
                       endpoint (e.g. http://10.0.0.5:8000/v1); repeat for several
  --supervise CMD      start and watch a local LLM server: a command with {port}, e.g.
                       'vllm serve MODEL --port {port}' (or 'MODEL=command ...' to name its model);
                       restarted when it dies, stopped with matrixd; repeatable
  --env docker|bwrap   per-task environments for workflows that run tools (tool-use): containers
                       through a local Docker engine, or bubblewrap sandboxes (no daemon needed)
  --concurrency N      tasks in flight at most (default 1024)
  --trials N           tasks per seed (default 1)
  --seed N             seed of the job's random numbers (default 0)
  --config FILE        YAML or JSON settings (see configs/)
  --plugin PATH        load a workflow from a file; repeatable
  --progress-every S   seconds between progress lines when not on a terminal (default 10)
  --log-level LEVEL    pino level for the JSON log on stderr (default warn); on a terminal its
                       lines go above the progress line
  --log-file FILE      write the JSON log to FILE (appended) instead of stderr

Before any task is admitted, every LLM endpoint must answer GET /v1/models (with its API key) and
serve the models the roles ask for, an LLM workflow must be given an endpoint, a workflow running
tools --env and a driver that is there, and --out must be writable; else exit 2 with one line
naming the endpoint, model, driver or path. A dead endpoint among live ones is a warning.
matrixd check --config FILE runs the same checks alone.

exit codes: 0 done, 1 job or runtime failure (or every task failed), 2 usage or config error`;

/** `matrixd run`: returns the exit code. */
export async function runMain(argv: string[]): Promise<number> {
  const { values: f } = parseCommand("run", argv, {
    ...NODE_FLAGS,
    workflow: { type: "string" },
    seeds: { type: "string" },
    out: { type: "string" },
    concurrency: { type: "string" },
    trials: { type: "string" },
    seed: { type: "string" },
    "progress-every": { type: "string" },
    "retry-failed": { type: "boolean" },
  });
  if (f.help) {
    console.log(RUN_HELP);
    return 0;
  }
  const cfg = loadJobConfig(f.config);
  const workflowName = f.workflow ?? cfg.workflow;
  if (!workflowName) throw new UsageError("--workflow is required");
  if (!f.seeds) throw new UsageError("--seeds is required");
  if (!f.out) throw new UsageError("--out is required");
  await checkSeedFile(f.seeds);
  const concurrency = intFlag("concurrency", f.concurrency) ?? cfg.concurrency;
  const trials = intFlag("trials", f.trials) ?? cfg.trials;
  const seed = intFlag("seed", f.seed, Number.MIN_SAFE_INTEGER) ?? cfg.seed;
  const every = intFlag("progress-every", f["progress-every"]) ?? 10;

  const registry = new Registry(builtinWorkflows);
  for (const p of [...cfg.plugins, ...(f.plugin ?? [])]) for (const w of await loadPlugin(p)) registry.add(w);
  const { workflow, file } = resolveWorkflow(workflowName, registry);
  const job = makeJobRuntime({
    workflowHash: file?.hash,
    id: cfg.job,
    workflow,
    options: cfg.options,
    seed,
    maxSteps: cfg.maxSteps,
    stepRetries: cfg.stepRetries,
    source: f.seeds,
  });

  const out = f.out;
  const needs = workflowNeeds(workflow, job.config);
  const llm = { flags: f.llm, section: cfg.llm, supervise: [...cfg.supervise, ...superviseFlags(f.supervise)], sim: cfg.sim };
  await preflight("run", [
    () => checkEnvDriver({ flag: f.env, config: cfg.env }, needs),
    () => checkLlmGiven(needs, llm),
    () => checkNodeEndpoints(llm, needs.models),
    () => checkOutPath(out),
  ]);
  // one writer per dataset: refused before any service starts
  const lock = lockOutput(out, "matrixd run");

  const tty = process.stderr.isTTY === true;
  // on a terminal the progress line stays at the foot: everything else written to stderr goes above it
  const live = tty ? new LiveLine(process.stderr) : undefined;
  const say = (text: string) => (live ? live.write(text) : process.stderr.write(text));
  const log = createLogger({
    level: f["log-level"] ?? cfg.log?.level ?? "warn",
    stream: "stderr",
    ...(f["log-file"] !== undefined ? { file: f["log-file"] } : live ? { live } : {}),
  });
  const svc = await openNodeServices(f, cfg, log);
  await preflight("run", [() => checkSupervised(svc.llm, cfg.llm, needs.models)]).catch(async (err) => {
    await svc.close();
    throw err;
  });
  const total = (await countLines(f.seeds)) * trials;

  const abort = new AbortController();
  // a run whose first LLM calls all fail with a configuration error stops instead of failing every task alike
  let fatal: LlmError | undefined;
  const unfatal = svc.llm?.client.onFatal((err) => {
    fatal = err;
    abort.abort();
  });
  const offSignals = handleSignals({
    graceful: (sig) => {
      say(`${sig}: no new tasks; finishing the ones in flight (again to stop now)\n`);
      abort.abort();
    },
    forced: (sig) => say(`${sig}: stopping now; run again with the same --out to resume\n`),
  });

  let timer: ReturnType<typeof setInterval> | undefined;
  let summary: RunSummary;
  try {
    summary = await runJob({
      job,
      seedsPath: f.seeds,
      outPath: f.out,
      concurrency,
      trials,
      roleSlots: Object.fromEntries(Object.entries(cfg.roles).map(([r, c]) => [r, c.slots])),
      llm: svc.llm?.client,
      services: svc.services,
      accounting: new Accounting(cfg.prices),
      ...(cfg.budget ? { budget: cfg.budget } : {}),
      ...(cfg.admission ? { admission: cfg.admission } : {}),
      ...(f["retry-failed"] ? { retryFailed: true } : {}),
      log,
      node: `${hostname()}-${process.pid}`,
      signal: abort.signal,
      onStart: (progress: () => RunProgress) => {
        const show = () => {
          const line = formatProgress(progress(), total);
          if (live) live.show(line);
          else process.stderr.write(`${new Date().toISOString()} ${line}\n`);
        };
        timer = setInterval(show, tty ? 250 : every * 1000);
      },
    });
  } finally {
    if (timer) clearInterval(timer);
    live?.clear();
    offSignals();
    unfatal?.();
    await svc.close();
    lock.release();
  }
  console.log(formatSummary(workflow.name, summary, f.out));
  if (fatal) {
    process.stderr.write(`matrixd run: stopped: ${fatal.message}\n`);
    return 2;
  }
  if (summary.budgetReached) {
    process.stderr.write(`matrixd run: ${summary.budgetReached}; no new tasks were admitted (run again with the same --out and a larger budget to go on)\n`);
    return 1;
  }
  if (summary.stopped) return 1;
  return summary.failed > 0 && summary.ok === 0 ? 1 : 0;
}

function n(x: number): string {
  return x.toLocaleString("en-US");
}

function usageLine(t: UsageTotals, cost: boolean): string {
  return `${n(t.requests)} requests, prompt ${n(t.promptTokens)}, completion ${n(t.completionTokens)} tokens${cost ? `, $${t.cost.toFixed(4)}` : ""}`;
}

export function formatSummary(workflow: string, s: RunSummary, out: string): string {
  const tasks = s.written;
  const { allFailed, reasons } = failureSummary(s.failures, s.ok, s.failed);
  const lines = [
    ...(allFailed ? [allFailed] : []),
    `${workflow}: ${n(s.ok + s.failed)} rows (ok ${n(s.ok)}, failed ${n(s.failed)}; ${n(tasks)} this run, ${n(s.resumed)} resumed${s.retried !== undefined ? `, ${n(s.retried)} failed run again` : ""})` +
      ` in ${s.seconds.toFixed(1)}s${s.budgetReached ? ` (${s.budgetReached})` : s.stopped ? " (stopped early)" : ""}`,
    `  ${(tasks / Math.max(s.seconds, 1e-9)).toFixed(1)} tasks/s, ${n(s.hops)} hops (${(s.hops / Math.max(s.seconds, 1e-9)).toFixed(0)}/s),` +
      ` tokens ${n(s.promptTokens + s.completionTokens)} (prompt ${n(s.promptTokens)}, completion ${n(s.completionTokens)},` +
      ` ${(s.completionTokens / Math.max(s.seconds, 1e-9)).toFixed(0)} gen tok/s)`,
  ];
  const m = Object.entries(s.metrics)
    .map(([k, v]) => `${k} ${v === null ? "-" : v.toFixed(3)}`)
    .join(", ");
  if (m) lines.push(`  ${m}`);
  const a = s.accounting;
  if (a && a.total.requests > 0) {
    const priced = a.unpriced.length < Object.keys(a.byModel).length;
    for (const [role, t] of Object.entries(a.byRole)) lines.push(`  role ${role}: ${usageLine(t, priced)}`);
    for (const [model, t] of Object.entries(a.byModel)) lines.push(`  model ${model}: ${usageLine(t, !a.unpriced.includes(model))}`);
    if (priced) lines.push(`  cost $${a.total.cost.toFixed(4)}${a.unpriced.length ? ` (no price for ${a.unpriced.join(", ")})` : ""}`);
  }
  lines.push(...reasons);
  if (s.tornBytes > 0) lines.push(`  dropped a torn last line (${s.tornBytes} bytes) left by an earlier crash`);
  lines.push(`  dataset: ${out}`);
  return lines.join("\n");
}
