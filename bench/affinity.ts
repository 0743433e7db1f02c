/**
 * Per-task affinity on a 4-server sim fleet: coral run by `matrixd run` with
 * and without affinity (`llm.affinity`), each on a fresh fleet so that no
 * prefix cache starts warm. Figures are read from the servers' /metrics:
 * prefix-cache hit rate (cached prompt tokens / prompt tokens looked up),
 * generated tokens per second, utilization (tokens / (fleet ceiling x wall
 * time)), over the whole job and over a steady window; and, from the rows,
 * the share of a task's calls that went to its first server.
 *
 * usage: bun bench/affinity.ts [--quick] [--tasks N] [--out FILE]
 * Writes bench/results/affinity.json and prints a table.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { parseArgs } from "node:util";
import { vllmLoad } from "../src/services/prom.ts";
import { type Fleet, type FleetSettings, gauge, startFleet } from "./fleet.ts";
import { machineInfo } from "./machine.ts";
import { bunCommand, measure, repoRoot } from "./proc.ts";

interface Scenario {
  name: string;
  /** what the scenario shows */
  note: string;
  tasks: number;
  fleet: FleetSettings;
  options: Record<string, unknown>;
}

/** Fleet counters summed over servers. */
interface Counters {
  gen: number;
  prompt: number;
  prefixQueries: number;
  prefixHits: number;
  runningSeconds: number;
  requests: number;
}

interface Figures {
  seconds: number;
  genTokens: number;
  tokensPerS: number;
  utilization: number;
  /** running/slots averaged over servers and time */
  occupancy: number;
  prefixHitRate: number;
}

interface Variant {
  scenario: string;
  affinity: boolean;
  exitCode: number;
  rows: number;
  ok: number;
  /** share of a task's LLM calls sent to the server of its first call */
  homeShare: number;
  /** requests per server */
  perServer: number[];
  ceilingTps: number;
  job: Figures;
  /** between WARM_S and WARM_S + WINDOW_S after the start, when the job lasts twice that long */
  steady?: Figures;
  cpuS: number;
  peakRssMiB: number;
}

const WARM_S = 10;
const WINDOW_S = 20;

async function counters(fleet: Fleet): Promise<Counters> {
  const texts = await Promise.all(fleet.urls.map(async (u) => (await fetch(`${u.replace(/\/v1$/, "")}/metrics`)).text()));
  const out: Counters = { gen: 0, prompt: 0, prefixQueries: 0, prefixHits: 0, runningSeconds: 0, requests: 0 };
  for (const t of texts) {
    const l = vllmLoad(t);
    out.gen += l.generationTokens;
    out.prompt += l.promptTokens;
    out.prefixQueries += l.prefixQueries;
    out.prefixHits += l.prefixHits;
    out.runningSeconds += gauge(t, "sim:running_seconds_total");
    out.requests += gauge(t, "sim:requests_total");
  }
  return out;
}

async function perServer(fleet: Fleet): Promise<number[]> {
  return Promise.all(fleet.urls.map(async (u) => gauge(await (await fetch(`${u.replace(/\/v1$/, "")}/metrics`)).text(), "sim:requests_total")));
}

function figures(a: Counters, b: Counters, seconds: number, fleet: Fleet): Figures {
  const gen = b.gen - a.gen;
  const q = b.prefixQueries - a.prefixQueries;
  return {
    seconds,
    genTokens: gen,
    tokensPerS: gen / seconds,
    utilization: gen / (fleet.ceilingTps * seconds),
    occupancy: (b.runningSeconds - a.runningSeconds) / (fleet.urls.length * seconds),
    prefixHitRate: q > 0 ? (b.prefixHits - a.prefixHits) / q : 0,
  };
}

/** Share of each task's calls that went to the server of its first call, over all tasks. */
function homeShare(outPath: string): { rows: number; ok: number; share: number } {
  let rows = 0;
  let ok = 0;
  let home = 0;
  let calls = 0;
  for (const line of readFileSync(outPath, "utf8").split("\n")) {
    if (!line) continue;
    const row = JSON.parse(line) as { status: string; history: { endpoint?: string }[] };
    rows++;
    if (row.status === "ok") ok++;
    const eps = row.history.map((t) => t.endpoint).filter((e): e is string => e !== undefined);
    for (const e of eps) if (e === eps[0]) home++;
    calls += eps.length;
  }
  return { rows, ok, share: calls > 0 ? home / calls : 0 };
}

async function runVariant(root: string, tmp: string, seeds: string, sc: Scenario, affinity: boolean): Promise<Variant> {
  const fleet = await startFleet([...bunCommand(root), join(root, "cmd", "matrixd.ts")], sc.fleet);
  try {
    const tag = `${sc.name}-${affinity ? "on" : "off"}`;
    const config = join(tmp, `${tag}.json`);
    const out = join(tmp, `${tag}.jsonl`);
    writeFileSync(
      config,
      JSON.stringify({
        concurrency: 1024,
        seed: 1,
        options: sc.options,
        llm: { affinity, endpoints: fleet.urls.map((url) => ({ url, maxConcurrency: 256, metrics: true })) },
      }),
    );
    const cmd = [...bunCommand(root), join(root, "cmd", "matrixd.ts"), "run", "--workflow", "coral", "--seeds", seeds, "--out", out, "--config", config];
    const before = await counters(fleet);
    let warm: Counters | undefined;
    let steady: Figures | undefined;
    const sampler = (async () => {
      await Bun.sleep(WARM_S * 1000);
      warm = await counters(fleet);
      const t0 = performance.now();
      await Bun.sleep(WINDOW_S * 1000);
      return { at: await counters(fleet), secs: (performance.now() - t0) / 1000 };
    })().catch(() => undefined);
    const proc = await measure(cmd, { cwd: root });
    const after = await counters(fleet);
    // a window near the job's end would count its drain (every task admitted, fewer and fewer in
    // flight): only a job at least twice as long as warm-up and window gives a steady figure
    if (proc.wallS >= 2 * (WARM_S + WINDOW_S)) {
      const s = await sampler;
      if (warm && s) steady = figures(warm, s.at, s.secs, fleet);
    }
    const h = homeShare(out);
    const v: Variant = {
      scenario: sc.name,
      affinity,
      exitCode: proc.code,
      rows: h.rows,
      ok: h.ok,
      homeShare: h.share,
      perServer: await perServer(fleet),
      ceilingTps: fleet.ceilingTps,
      job: figures(before, after, proc.wallS, fleet),
      cpuS: proc.cpuS,
      peakRssMiB: proc.peakRssBytes / 2 ** 20,
    };
    if (steady) v.steady = steady;
    if (proc.code !== 0) console.error(`${tag}: matrixd run exited ${proc.code}: ${proc.stderr.trim().split("\n").slice(-3).join(" | ")}`);
    return v;
  } finally {
    await fleet.stop();
  }
}

function table(vs: Variant[]): string {
  const head = ["scenario", "affinity", "hit rate", "tokens/s", "utilization", "steady tok/s", "steady util.", "home share", "rows ok", "wall s"];
  const lines = vs.map((v) => [
    v.scenario,
    v.affinity ? "on" : "off",
    v.job.prefixHitRate.toFixed(3),
    v.job.tokensPerS.toFixed(0),
    v.job.utilization.toFixed(3),
    v.steady ? v.steady.tokensPerS.toFixed(0) : "-",
    v.steady ? v.steady.utilization.toFixed(3) : "-",
    v.homeShare.toFixed(3),
    `${v.ok}/${v.rows}`,
    v.job.seconds.toFixed(1),
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...lines.map((l) => (l[i] as string).length)));
  const fmt = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i] as number)).join(" | ")} |`;
  return [fmt(head), `|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`, ...lines.map(fmt)].join("\n");
}

async function main(): Promise<number> {
  const { values: f } = parseArgs({
    args: Bun.argv.slice(2),
    strict: true,
    options: { quick: { type: "boolean" }, tasks: { type: "string" }, out: { type: "string" }, help: { type: "boolean", short: "h" } },
  });
  if (f.help) {
    console.log("usage: bun bench/affinity.ts [--quick] [--tasks N] [--out FILE]");
    return 0;
  }
  const root = repoRoot();
  const quick = f.quick === true;
  const tasks = f.tasks ? Number(f.tasks) : quick ? 200 : 3000;
  // the side-by-side benchmark's fleet: 4 servers x 64 slots, 8,000 tokens/s each
  const fleet: FleetSettings = quick
    ? { servers: 4, slots: 16, decodeTps: 20_000, flags: { "agree-rate": 0.3 } }
    : { servers: 4, slots: 64, decodeTps: 8000, flags: { "agree-rate": 0.3 } };
  const scenarios: Scenario[] = [
    {
      name: "coral",
      note: "the benchmark's coral: agree rate 0.3, up to 20 turns (about 3 dialogue turns a task)",
      tasks,
      fleet,
      options: { maxTurns: 20 },
    },
    {
      name: "coral-long",
      note: "longer dialogues (agree rate 0.05): more turns reuse the prompt of the speaker's previous turn",
      tasks: Math.max(50, Math.round(tasks / 2)),
      fleet: { ...fleet, flags: { "agree-rate": 0.05 } },
      options: { maxTurns: 20 },
    },
  ];
  const tmp = mkdtempSync(join(tmpdir(), "matrixd-affinity-"));
  const shipped = readFileSync(join(root, "configs", "seeds", "coral.jsonl"), "utf8").split("\n").filter((l) => l.length > 0);
  const results: Variant[] = [];
  try {
    for (const sc of scenarios) {
      const seeds = join(tmp, `${sc.name}.jsonl`);
      writeFileSync(seeds, `${shipped.slice(0, sc.tasks).join("\n")}\n`);
      for (const affinity of [true, false]) {
        console.error(`affinity bench: ${sc.name}, affinity ${affinity ? "on" : "off"}, ${sc.tasks} tasks ...`);
        results.push(await runVariant(root, tmp, seeds, sc, affinity));
      }
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  const out = f.out ?? join(root, "bench", "results", "affinity.json");
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(
    out,
    `${JSON.stringify(
      {
        machine: machineInfo(root),
        quick,
        method:
          "coral by `matrixd run` (1,024 tasks in flight, 256 per endpoint, metrics polled) on a fresh fleet per variant; " +
          "hit rate, tokens and utilization from the servers' /metrics; steady = 10 s to 30 s after start (only for jobs of 60 s or more)",
        scenarios: scenarios.map((s) => ({ name: s.name, note: s.note, tasks: s.tasks, fleet: s.fleet, options: s.options })),
        results,
      },
      null,
      2,
    )}\n`,
  );
  console.log(table(results));
  console.log(`\nwritten: ${out}`);
  return results.every((r) => r.exitCode === 0) ? 0 : 1;
}

process.exit(await main());
