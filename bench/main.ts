/**
 * The benchmark (`make bench`, `matrixd bench [SCENARIO] [--quick]`): matrixd
 * single node against the batch-level, central and job-queue baselines, side
 * by side in one run on one simulated fleet, then (for coral) the scale
 * figures. Writes bench/results/latest.{json,md,svg} for coral and
 * bench/results/SCENARIO.{json,md,svg} for the others, and prints the table.
 * `matrixd bench kinds` runs the server kinds section instead (bench/kinds.ts),
 * `matrixd bench files` the workflow files one (bench/files.ts).
 * See /BENCHMARK.md of the shared design notes for the method.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { builtinWorkflows } from "../plugins/index.ts";
import { createEnvService, parseEnvConfig } from "../src/env/index.ts";
import { silentLogger } from "../src/log.ts";
import { runFiles } from "./files.ts";
import { startFleet } from "./fleet.ts";
import { runKinds } from "./kinds.ts";
import { type MachineInfo, machineInfo } from "./machine.ts";
import { type BenchContext, MODES, type ModeName, type ModeResult, PRIORITIES, type Priority, runMode } from "./modes.ts";
import { makePlan, type Plan } from "./plan.ts";
import { bunCommand, matrixdCommand, repoRoot, stopAll } from "./proc.ts";
import { type BenchResults, fleetLabel, qualityWarnings, renderMarkdown, renderSvg, renderTable } from "./report.ts";
import { runScale } from "./scale.ts";

export const BENCH_HELP = `matrixd bench: matrixd against its baselines on one simulated fleet, side by side

usage: matrixd bench [SCENARIO] [--quick] [options]
       matrixd bench kinds [--quick] [options]   one server of each kind, several --concurrency
                                                 (see matrixd bench kinds --help)
       matrixd bench files [--quick] [options]   coral as a workflow file against the built-in coral
                                                 (see matrixd bench files --help)

  SCENARIO           workflow to compare modes on: coral (default), reasoning-extract, tool-use
  --quick            small sizes, a few seconds per mode (a smoke test)
  --seeds FILE       seed file (default configs/seeds/SCENARIO.jsonl)
  --tasks N          seed lines in the side-by-side run (coral 3000, reasoning-extract 2200,
                     tool-use 60; quick 60, 300, 10)
  --trials N         tasks per seed line, in every mode (tool-use 4, quick 2; others 1)
  --env DRIVER       environments of the workflows that run tools (tool-use), in every mode:
                     bwrap (default) or docker
  --env-capacity N   environments each mode holds at once (tool-use 64, quick 20)
  --modes LIST       modes to run, comma-separated (default matrixd,batch,central,jobqueue)
  --no-sweep         skip the sweep; use the first setting of each mode
  --concurrency N    matrixd's tasks in flight (both matrixd modes), instead of its sweep
  --priority P       the matrixd mode's request priorities: admission (default: the oldest
                     task first), steps (the task with the most steps done first) or
                     fewest-steps (the task with the fewest first)
  --no-scale         skip the scale figures (they run with coral only)
  --fetch-limit N    set BUN_CONFIG_MAX_HTTP_REQUESTS=N for every mode (Bun's fetch
                     runs at most 256 requests at once unless told otherwise)
  --out DIR          where results go (default bench/results)
  --keep             keep the temporary folder (datasets of every mode) and print its path

Writes DIR/latest.json, DIR/latest.md and DIR/latest.svg for coral, DIR/SCENARIO.json,
.md and .svg for the other scenarios, and prints the table.`;

/** The base name of a scenario's result files: coral's are the "latest" ones. */
export function resultsName(scenario: string): string {
  return scenario === "coral" ? "latest" : scenario;
}

/** Run the benchmark; returns the exit code. */
export async function runBench(argv: string[]): Promise<number> {
  if (argv[0] === "kinds") return runKinds(argv.slice(1));
  if (argv[0] === "files") return runFiles(argv.slice(1));
  const { values: f, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    strict: true,
    options: {
      quick: { type: "boolean" },
      seeds: { type: "string" },
      tasks: { type: "string" },
      trials: { type: "string" },
      env: { type: "string" },
      "env-capacity": { type: "string" },
      modes: { type: "string" },
      "no-sweep": { type: "boolean" },
      concurrency: { type: "string" },
      priority: { type: "string" },
      "no-scale": { type: "boolean" },
      "fetch-limit": { type: "string" },
      out: { type: "string" },
      keep: { type: "boolean" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (f.help) {
    console.log(BENCH_HELP);
    return 0;
  }
  const scenario = positionals[0] ?? "coral";
  const workflow = builtinWorkflows.find((w) => w.name === scenario);
  if (!workflow) {
    console.error(`matrixd bench: unknown scenario "${scenario}" (built in: ${builtinWorkflows.map((w) => w.name).join(", ")})`);
    return 2;
  }
  const driver = f.env ?? "bwrap";
  if (driver !== "bwrap" && driver !== "docker") {
    console.error(`matrixd bench: --env must be "bwrap" or "docker", got "${driver}"`);
    return 2;
  }
  const envDriver: "bwrap" | "docker" = driver;
  const root = repoRoot();
  const plan = makePlan(f.quick === true, scenario);
  if (f.tasks) plan.tasks = positiveInt("tasks", f.tasks);
  if (f.trials) plan.trials = positiveInt("trials", f.trials);
  if (f["env-capacity"]) plan.envCapacity = positiveInt("env-capacity", f["env-capacity"]);
  if (f.concurrency) plan.sweep.matrixd = [{ concurrency: positiveInt("concurrency", f.concurrency) }];
  if (f.priority !== undefined && !PRIORITIES.includes(f.priority as Priority)) {
    console.error(`matrixd bench: --priority must be one of ${PRIORITIES.join(", ")}, got "${f.priority}"`);
    return 2;
  }
  plan.sweepTasks = Math.min(plan.sweepTasks, plan.tasks);
  // Environments only for workflows with a role that runs in one.
  const envConfig = Object.values(workflow.roles).some((r) => r.kind === "env") ? { driver: envDriver, capacity: plan.envCapacity } : undefined;
  const modes = (f.modes ?? MODES.join(",")).split(",").map((m) => m.trim()) as ModeName[];
  for (const m of modes) {
    if (!MODES.includes(m)) {
      console.error(`matrixd bench: unknown mode "${m}" (modes: ${MODES.join(", ")})`);
      return 2;
    }
  }
  const outDir = resolve(f.out ?? join(root, "bench", "results"));
  const env: Record<string, string> = {};
  if (f["fetch-limit"]) env.BUN_CONFIG_MAX_HTTP_REQUESTS = String(positiveInt("fetch-limit", f["fetch-limit"]));

  const log = (line: string) => console.error(line);
  const machine = machineInfo(root);
  log(`matrixd bench ${scenario}${plan.quick ? " (quick)" : ""}: ${machine.cpu}, ${machine.cores} cores, ${machine.ramGiB} GiB, commit ${machine.commit}`);
  const tmp = mkdtempSync(join(tmpdir(), "matrixd-bench-"));
  try {
    return await benchIn(tmp, { f, scenario, root, plan, modes, outDir, env, envConfig, log, machine });
  } finally {
    if (f.keep) log(`kept: ${tmp}`);
    else rmSync(tmp, { recursive: true, force: true });
  }
}

interface BenchSetup {
  f: { seeds?: string; "no-sweep"?: boolean; "no-scale"?: boolean; priority?: string };
  scenario: string;
  root: string;
  plan: Plan;
  modes: ModeName[];
  outDir: string;
  env: Record<string, string>;
  envConfig: BenchContext["envConfig"];
  log: (line: string) => void;
  machine: MachineInfo;
}

/** The run itself, in its temporary folder `tmp`. */
async function benchIn(tmp: string, setup: BenchSetup): Promise<number> {
  const { f, scenario, root, plan, modes, outDir, env, envConfig, log, machine } = setup;
  const matrixd = matrixdCommand(root);
  const bun = bunCommand(root);

  const allSeeds = readFileSync(f.seeds ?? join(root, "configs", "seeds", `${scenario}.jsonl`), "utf8").split("\n").filter((l) => l.trim());
  if (allSeeds.length < plan.tasks) log(`  only ${allSeeds.length} seeds: the run uses them all`);
  /** The first n seed lines, and the tasks they make (n x trials). */
  const seedFile = (n: number, name: string) => {
    const path = join(tmp, `${name}.jsonl`);
    writeFileSync(path, `${allSeeds.slice(0, n).join("\n")}\n`);
    return { path, n: Math.min(n, allSeeds.length) * plan.trials };
  };
  const main = seedFile(plan.tasks, "seeds");
  const sweepSeeds = seedFile(plan.sweepTasks, "sweep-seeds");

  if (envConfig) await checkEnvs(envConfig);
  const fleet = await startFleet(matrixd, plan.fleet);
  log(`  fleet: ${fleetLabel(plan.fleet)}, ceiling ${Math.round(fleet.ceilingTps)} tokens/s (pid ${fleet.pid})`);
  if (plan.trials > 1) log(`  ${plan.trials} trials of each seed`);
  if (envConfig) log(`  environments: ${envConfig.driver}, ${envConfig.capacity} per mode`);
  const ctx: BenchContext = {
    root,
    matrixd,
    bun,
    fleet,
    endpointConcurrency: plan.endpointConcurrency,
    tmp,
    workflow: scenario,
    options: plan.options,
    jobSeed: 1,
    ...(f.priority !== undefined ? { priority: f.priority as Priority } : {}),
    trials: plan.trials,
    envConfig,
    env,
    log,
  };

  const sweep: ModeResult[] = [];
  const final: ModeResult[] = [];
  let scale: BenchResults["scale"];
  let code = 0;
  try {
    const best = new Map<ModeName, Record<string, number>>();
    for (const mode of modes) {
      const all = plan.sweep[mode === "matrixd-fifo" ? "matrixd" : mode];
      const grid = f["no-sweep"] ? all.slice(0, 1) : all;
      let top: ModeResult | undefined;
      for (const [i, setting] of grid.entries()) {
        if (grid.length === 1 && !plan.quick) break;
        const r = await runMode(ctx, mode, setting, sweepSeeds.path, sweepSeeds.n, `sweep-${mode}-${i}`);
        log(`  sweep ${mode} ${r.label}: ${r.tokensPerS.toFixed(0)} tokens/s, utilization ${r.utilization.toFixed(3)}, ${r.rows} rows`);
        sweep.push(r);
        if (!top || r.tokensPerS > top.tokensPerS) top = r;
      }
      best.set(mode, top?.setting ?? (grid[0] as Record<string, number>));
    }
    for (const mode of modes) {
      const setting = best.get(mode) as Record<string, number>;
      const r = await runMode(ctx, mode, setting, main.path, main.n, `run-${mode}`);
      log(
        `  ${mode} ${r.label}: ${r.tokensPerS.toFixed(0)} tokens/s, utilization ${r.utilization.toFixed(3)}, ${r.tasksPerS.toFixed(1)} tasks/s, ` +
          `${r.rows}/${r.seeds} rows, rss ${r.peakRssMiB.toFixed(0)} MiB, cpu ${r.cpuS.toFixed(1)} s`,
      );
      final.push(r);
      if (r.exitCode !== 0 || r.distinct !== r.seeds) code = 1;
    }
  } finally {
    await fleet.stop();
  }
  if (!f["no-scale"] && plan.scaleFigures) scale = await runScale({ root, matrixd, tmp, plan, env, log });

  const results: BenchResults = {
    scenario,
    quick: plan.quick,
    machine,
    fleet: { ...plan.fleet, ceilingTps: fleet.ceilingTps },
    endpointConcurrency: plan.endpointConcurrency,
    fetchLimit: env.BUN_CONFIG_MAX_HTTP_REQUESTS ? Number(env.BUN_CONFIG_MAX_HTTP_REQUESTS) : null,
    tasks: main.n,
    sweepTasks: sweepSeeds.n,
    trials: plan.trials,
    options: plan.options,
    priority: (f.priority ?? "admission") as Priority,
    envs: envConfig ?? null,
    modes: final,
    sweep,
    scale,
    warnings: qualityWarnings(final),
  };
  const name = resultsName(scenario);
  mkdirSync(outDir, { recursive: true });
  writeFileSync(join(outDir, `${name}.json`), `${JSON.stringify(results, null, 2)}\n`);
  writeFileSync(join(outDir, `${name}.md`), renderMarkdown(results, `${name}.svg`));
  writeFileSync(join(outDir, `${name}.svg`), renderSvg(results));
  console.log(renderTable(results));
  for (const w of results.warnings) console.log(`WARNING: ${w}`);
  log(`results: ${join(outDir, `${name}.json`)}, ${name}.md, ${name}.svg`);
  return code;
}

/** Fail at once, with the driver's reason, when the environments cannot be had on this machine. */
async function checkEnvs(config: NonNullable<BenchContext["envConfig"]>): Promise<void> {
  const envs = await createEnvService(parseEnvConfig({ ...config, node: `bench-check-${process.pid}` }), silentLogger);
  await envs.close();
}

function positiveInt(name: string, v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new Error(`--${name} must be a whole number >= 1, got "${v}"`);
  return n;
}

if (import.meta.main) {
  for (const sig of ["SIGINT", "SIGTERM"] as const) {
    process.on(sig, () => {
      stopAll();
      process.exit(130);
    });
  }
  const code = await runBench(process.argv.slice(2)).catch((err: unknown) => {
    console.error(`bench: ${err instanceof Error ? err.message.split("\n")[0] : String(err)}`);
    return 2;
  });
  process.exit(code);
}
