/**
 * The workflow files section (`matrixd bench files [--quick]`): coral as a
 * file (configs/workflows/coral.yaml) against the built-in coral plugin,
 * each as its own `matrixd run` process on the same simulated fleet in one
 * run, taking turns (plugin then file, then file then plugin...) so that the
 * machine's drift falls on both; then what one step of each role costs in
 * CPU, in-process, with an LLM that answers at once (bench/step-cost.ts).
 * Writes DIR/files.json and DIR/files.md and prints the tables.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { canonicalJson } from "../src/util/hash.ts";
import { startFleet } from "./fleet.ts";
import { type MachineInfo, machineInfo } from "./machine.ts";
import { type BenchContext, type ModeResult, runMode } from "./modes.ts";
import { makePlan } from "./plan.ts";
import { bunCommand, matrixdCommand, repoRoot } from "./proc.ts";
import { fleetLabel, markdownTable, textTable } from "./report.ts";
import { measureStepCosts, type StepCost } from "./step-cost.ts";

export const FILES_HELP = `matrixd bench files: coral as a workflow file against the built-in coral, on one simulated fleet

usage: matrixd bench files [--quick] [options]

  --quick        60 tasks on 2 small servers, one round, short step timings (a smoke test)
  --tasks N      coral seed lines per run (default 3000, the side-by-side run's)
  --rounds N     runs of each twin, taking turns (default 2; quick 1)
  --step-ms N    CPU milliseconds each step timing runs for (default 400; quick 50)
  --out DIR      where results go (default bench/results)
  --keep         keep the temporary folder (datasets) and print its path

Each run is 'matrixd run --workflow coral' or 'matrixd run --workflow
configs/workflows/coral.yaml' at 1024 in flight against the fleet of the
coral benchmark. Writes DIR/files.json and DIR/files.md, and prints the tables.`;

/** One twin's run. */
export interface TwinRun extends ModeResult {
  twin: "plugin" | "file";
  round: number;
  steps: number;
  /** CPU milliseconds of the matrixd process per step */
  cpuMsPerStep: number;
}

export interface FilesResults {
  machine: MachineInfo;
  quick: boolean;
  tasks: number;
  fleet: ReturnType<typeof makePlan>["fleet"] & { ceilingTps: number };
  /** 1-minute load average before and after the runs */
  load: [number, number];
  runs: TwinRun[];
  /** rows of the first round whose output, metrics or turns differ between the twins (0: the same dataset) */
  differingRows: number;
  steps: StepCost[];
}

/** Run the section; returns the exit code. */
export async function runFiles(argv: string[]): Promise<number> {
  const { values: f } = parseArgs({
    args: argv,
    strict: true,
    options: {
      quick: { type: "boolean" },
      tasks: { type: "string" },
      rounds: { type: "string" },
      "step-ms": { type: "string" },
      out: { type: "string" },
      keep: { type: "boolean" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (f.help) {
    console.log(FILES_HELP);
    return 0;
  }
  const quick = f.quick === true;
  const root = repoRoot();
  const plan = makePlan(quick, "coral");
  const tasks = f.tasks ? whole("tasks", f.tasks) : plan.tasks;
  const rounds = f.rounds ? whole("rounds", f.rounds) : quick ? 1 : 2;
  const stepMs = f["step-ms"] ? whole("step-ms", f["step-ms"]) : quick ? 50 : 400;
  const outDir = resolve(f.out ?? join(root, "bench", "results"));
  const log = (line: string) => console.error(line);
  const machine = machineInfo(root);
  log(`matrixd bench files${quick ? " (quick)" : ""}: ${machine.cpu}, ${machine.cores} cores, ${machine.ramGiB} GiB, commit ${machine.commit}`);

  const tmp = mkdtempSync(join(tmpdir(), "matrixd-bench-files-"));
  try {
    const lines = readFileSync(join(root, "configs", "seeds", "coral.jsonl"), "utf8").split("\n").filter((l) => l.trim());
    const seeds = join(tmp, "seeds.jsonl");
    writeFileSync(seeds, `${lines.slice(0, tasks).join("\n")}\n`);
    const n = Math.min(tasks, lines.length);
    const file = join(root, "configs", "workflows", "coral.yaml");

    const matrixd = matrixdCommand(root);
    const fleet = await startFleet(matrixd, plan.fleet);
    log(`  fleet: ${fleetLabel(plan.fleet)}, ceiling ${Math.round(fleet.ceilingTps)} tokens/s; ${n} tasks, ${rounds} round(s)`);
    const ctx = (workflow: string): BenchContext => ({
      root,
      matrixd,
      bun: bunCommand(root),
      fleet,
      endpointConcurrency: plan.endpointConcurrency,
      tmp,
      workflow,
      options: plan.options,
      jobSeed: 1,
      trials: 1,
      env: {},
      log,
    });
    const load0 = loadavg()[0] ?? 0;
    const runs: TwinRun[] = [];
    try {
      for (let round = 1; round <= rounds; round++) {
        const order: TwinRun["twin"][] = round % 2 === 1 ? ["plugin", "file"] : ["file", "plugin"];
        for (const twin of order) {
          const r = await runMode(ctx(twin === "plugin" ? "coral" : file), "matrixd", { concurrency: 1024 }, seeds, n, `${twin}-${round}`);
          const steps = Math.round(r.hopsPerS * r.wallS);
          const run: TwinRun = { ...r, twin, round, steps, cpuMsPerStep: (r.cpuS * 1000) / Math.max(1, steps) };
          log(
            `  ${twin} (round ${round}): ${r.tokensPerS.toFixed(0)} tokens/s, utilization ${r.utilization.toFixed(3)}, ` +
              `${r.rows}/${n} rows, cpu ${r.cpuS.toFixed(1)} s, ${run.cpuMsPerStep.toFixed(3)} ms per step`,
          );
          runs.push(run);
        }
      }
    } finally {
      await fleet.stop();
    }
    const load1 = loadavg()[0] ?? 0;
    const differingRows = compareDatasets(join(tmp, "plugin-1.jsonl"), join(tmp, "file-1.jsonl"));
    log(`  datasets of round 1: ${differingRows === 0 ? "the same" : `${differingRows} rows differ`}`);

    const docs = readFileSync(join(root, "configs", "seeds", "reasoning-extract.jsonl"), "utf8")
      .split("\n")
      .filter((l) => l.trim())
      .map((l) => String((JSON.parse(l) as { text: unknown }).text))
      .sort((a, b) => a.length - b.length);
    const median = docs[Math.floor(docs.length / 2)] ?? "";
    // One pass to warm the JIT up on every role, then the measured one.
    await measureStepCosts(root, Math.max(10, stepMs / 10), median);
    const steps = await measureStepCosts(root, stepMs, median);

    const results: FilesResults = {
      machine,
      quick,
      tasks: n,
      fleet: { ...plan.fleet, ceilingTps: fleet.ceilingTps },
      load: [load0, load1],
      runs,
      differingRows,
      steps,
    };
    mkdirSync(outDir, { recursive: true });
    writeFileSync(join(outDir, "files.json"), `${JSON.stringify(results, null, 2)}\n`);
    writeFileSync(join(outDir, "files.md"), renderFilesMarkdown(results));
    console.log([setupLine(results), "", textTable(runRows(results)), "", textTable(stepRows(results))].join("\n"));
    log(`results: ${join(outDir, "files.json")}, files.md`);
    return runs.every((r) => r.exitCode === 0 && r.distinct === n) && differingRows === 0 ? 0 : 1;
  } finally {
    if (f.keep) log(`kept: ${tmp}`);
    else rmSync(tmp, { recursive: true, force: true });
  }
}

/** Rows whose output, metrics or turns (role, text, tokens) differ between two datasets, and rows only one has. */
export function compareDatasets(a: string, b: string): number {
  const read = (path: string) => {
    const out = new Map<string, string>();
    for (const line of readFileSync(path, "utf8").split("\n")) {
      if (!line) continue;
      const r = JSON.parse(line) as { id: string; output: unknown; metrics: unknown; history: { role: string; text: string; usage?: unknown }[] };
      out.set(r.id, canonicalJson({ output: r.output, metrics: r.metrics, turns: r.history.map((t) => [t.role, t.text, t.usage ?? null]) }));
    }
    return out;
  };
  const x = read(a);
  const y = read(b);
  let differ = 0;
  for (const [id, v] of x) if (y.get(id) !== v) differ++;
  for (const id of y.keys()) if (!x.has(id)) differ++;
  return differ;
}

const f0 = (v: number) => (Number.isFinite(v) ? Math.round(v).toLocaleString("en-US") : "-");
const f3 = (v: number) => (Number.isFinite(v) ? v.toFixed(3) : "-");
const mean = (xs: number[]) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : Number.NaN);

function setupLine(r: FilesResults): string {
  const m = r.machine;
  return (
    `coral, ${r.tasks} tasks per run at 1024 in flight; fleet ${fleetLabel(r.fleet)}, ceiling ${f0(r.fleet.ceilingTps)} tokens/s; ` +
    `1-minute load ${r.load[0].toFixed(1)} before, ${r.load[1].toFixed(1)} after. ${m.date.slice(0, 10)}, ${m.cpu}, ${m.cores} cores, ` +
    `${m.ramGiB} GiB, commit ${m.commit}${m.dirty ? " (+ local changes)" : ""}`
  );
}

function runRows(r: FilesResults): string[][] {
  const rows = [["workflow", "round", "tokens/s", "utilization", "util. to 90%", "wall s", "CPU s", "steps", "CPU ms / step", "peak RSS MiB", "agreement correctness"]];
  const name = (t: TwinRun["twin"]) => (t === "plugin" ? "coral (TypeScript)" : "coral.yaml (file)");
  for (const x of r.runs) {
    rows.push([name(x.twin), String(x.round), f0(x.tokensPerS), f3(x.utilization), f3(x.utilization90), x.wallS.toFixed(1), x.cpuS.toFixed(2), f0(x.steps), f3(x.cpuMsPerStep), f0(x.peakRssMiB), f3(x.quality ?? Number.NaN)]);
  }
  for (const twin of ["plugin", "file"] as const) {
    const xs = r.runs.filter((x) => x.twin === twin);
    if (xs.length < 2) continue;
    rows.push([name(twin), "mean", f0(mean(xs.map((x) => x.tokensPerS))), f3(mean(xs.map((x) => x.utilization))), f3(mean(xs.map((x) => x.utilization90))), mean(xs.map((x) => x.wallS)).toFixed(1), mean(xs.map((x) => x.cpuS)).toFixed(2), f0(mean(xs.map((x) => x.steps))), f3(mean(xs.map((x) => x.cpuMsPerStep))), f0(mean(xs.map((x) => x.peakRssMiB))), f3(mean(xs.map((x) => x.quality ?? Number.NaN)))]);
  }
  return rows;
}

function stepRows(r: FilesResults): string[][] {
  const rows = [["workflow", "role", "turns before", "TypeScript us / step", "file us / step", "file adds us"]];
  for (const s of r.steps) rows.push([s.workflow, s.role, String(s.turns), s.tsUs.toFixed(1), s.fileUs.toFixed(1), (s.fileUs - s.tsUs).toFixed(1)]);
  return rows;
}

/** The added CPU per step of the whole process (file minus plugin), means over rounds. */
function addedPerStep(r: FilesResults): { ms: number; share: number; tps: number } {
  const of = (twin: TwinRun["twin"]) => r.runs.filter((x) => x.twin === twin);
  const ts = mean(of("plugin").map((x) => x.cpuMsPerStep));
  const file = mean(of("file").map((x) => x.cpuMsPerStep));
  return { ms: file - ts, share: file / ts - 1, tps: mean(of("file").map((x) => x.tokensPerS)) / mean(of("plugin").map((x) => x.tokensPerS)) };
}

export function renderFilesMarkdown(r: FilesResults): string {
  const added = addedPerStep(r);
  return [
    `# matrixd benchmark: workflow files${r.quick ? " (quick)" : ""}`,
    "",
    setupLine(r),
    "",
    "The built-in coral (TypeScript, plugins/coral) and coral as a file (configs/workflows/coral.yaml: Jinja templates, CEL expressions), " +
      "each a `matrixd run` process on the same simulated fleet, in turns. CPU is the matrixd process's own (kernel accounting), " +
      "per step (one hop each, from the rows' step counts). " +
      `Datasets of the first round: ${r.differingRows === 0 ? "the same (output, metrics, every turn's text and tokens)" : `${r.differingRows} rows differ`}.`,
    "",
    markdownTable(runRows(r)),
    "",
    `The file costs the node ${(added.ms * 1000).toFixed(0)} us more CPU per step than the plugin (${(added.share * 100).toFixed(0)}% more), ` +
      `and runs at ${added.tps.toFixed(3)} of its tokens/s. Part of the difference is fixed: the JIT compiling the Jinja, CEL and YAML code ` +
      "once per process (on a thread of its own, counted in the process's CPU).",
    "",
    "## One step, in-process",
    "",
    "CPU per step (the role's run, then the choice of the next role) with an LLM that answers at once: what the file's templates and " +
      "expressions cost against the plugin's code. Coral at a short and a long dialogue (turns before the step, extractions included); " +
      "reasoning-extract's LLM stages on the median shipped document.",
    "",
    markdownTable(stepRows(r)),
    "",
  ].join("\n");
}

function whole(name: string, v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new Error(`--${name} must be a whole number >= 1, got "${v}"`);
  return n;
}
