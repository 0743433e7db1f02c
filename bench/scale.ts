/**
 * Scale figures of one node: coral-dummy hops/s in-process, coral tasks held
 * in flight (peak RSS, RSS per task), steady-state utilization of the fleet
 * at high concurrency, and binary start to /healthz when `matrixd join` exists.
 */
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { type FleetCounters, type FleetSettings, startFleet } from "./fleet.ts";
import type { Plan } from "./plan.ts";
import { measureHealthz } from "./healthz.ts";
import { measure, procStatus, track } from "./proc.ts";

export interface ScaleFigure {
  name: string;
  value: string;
  goal?: string;
  met?: boolean;
  /** the number behind `value`, for machines */
  number?: number;
}

export interface ScaleResults {
  figures: ScaleFigure[];
  notes: string[];
}

interface ScaleContext {
  root: string;
  matrixd: string[];
  tmp: string;
  plan: Plan;
  env: Record<string, string>;
  log: (line: string) => void;
}

const MIB = 2 ** 20;
/** The LLM client's cap for the in-flight run that lets most requests out at once. */
const WIDE_LLM_CAP = 16_384;

function fetchLabel(limit: number | undefined): string {
  return limit === undefined ? "binary as shipped" : `BUN_CONFIG_MAX_HTTP_REQUESTS=${limit} forced`;
}

/** The environment of a scale run: the benchmark's, with the fetch limit set or left out. */
function runEnv(ctx: ScaleContext, fetchLimit: number | undefined): Record<string, string | undefined> {
  const env: Record<string, string | undefined> = { ...process.env, ...ctx.env };
  if (fetchLimit === undefined) delete env.BUN_CONFIG_MAX_HTTP_REQUESTS;
  else env.BUN_CONFIG_MAX_HTTP_REQUESTS = String(fetchLimit);
  return env;
}

export async function runScale(ctx: ScaleContext): Promise<ScaleResults> {
  const figures: ScaleFigure[] = [];
  const notes: string[] = [];
  const { plan } = ctx;
  const shipped = readFileSync(join(ctx.root, "configs", "seeds", "coral.jsonl"), "utf8").split("\n").filter((l) => l.trim());

  // 1. coral-dummy hops/s, in-process.
  const dummySeeds = manySeeds(ctx, shipped, plan.scale.dummyTasks, "dummy-seeds");
  const out = join(ctx.tmp, "dummy.jsonl");
  const dummy = await measure([...ctx.matrixd, "run", "--workflow", "coral-dummy", "--seeds", dummySeeds, "--out", out], { env: ctx.env });
  const m = /([\d,]+) hops \((\d+)\/s\)/.exec(dummy.stdout);
  const secs = /in ([\d.]+)s/.exec(dummy.stdout);
  if (dummy.code !== 0 || !m || !secs) {
    notes.push(`coral-dummy run failed (exit ${dummy.code}): ${dummy.stderr.trim().slice(-300)}`);
  } else {
    const hops = Number(m[1]?.replace(/,/g, ""));
    const rate = Number(m[2]);
    figures.push({ name: `coral-dummy hops/s in-process (${plan.scale.dummyTasks} tasks, ${hops} hops)`, value: fmt(rate), goal: ">= 50,000", met: rate >= 50_000, number: rate });
    figures.push({ name: "coral-dummy hops/s over the process's wall time (start, seeds, output)", value: fmt(hops / dummy.wallS), number: hops / dummy.wallS });
    figures.push({ name: "coral-dummy run: peak RSS MiB, CPU s", value: `${fmt(dummy.peakRssBytes / MIB)}, ${dummy.cpuS.toFixed(1)}` });
  }
  ctx.log(`  scale: coral-dummy ${m?.[2] ?? "?"} hops/s`);

  // 2. Coral tasks in flight on one node, against a sim with more slots than tasks.
  const target = plan.scale.inFlight;
  const inflightSeeds = manySeeds(ctx, shipped, target * 2, "inflight-seeds");
  const small = Math.max(10, Math.round(target / 20));
  // The binary as shipped in every run; what differs is how many of the tasks' LLM requests the client lets out
  // at once (its per-endpoint cap): few (the rest wait in the client), or most of them (the sim holds them).
  // Sockets stay under the 20,000 open files a process may have here.
  const wide = Math.min(WIDE_LLM_CAP, target);
  const runs: { label: string; concurrency: number; llmCap: number }[] = [
    { label: "base", concurrency: small, llmCap: Math.min(small, 256) },
    { label: "narrow", concurrency: target, llmCap: 256 },
    { label: "wide", concurrency: target, llmCap: wide },
  ];
  const held: Record<string, HeldRun> = {};
  for (const r of runs) {
    held[r.label] = await holdInFlight(ctx, inflightSeeds, r.concurrency, r.llmCap, target);
    const h = held[r.label] as HeldRun;
    ctx.log(`  scale: ${r.concurrency} in flight (LLM cap ${r.llmCap}): reached ${h.inFlight}, peak RSS ${fmt(h.hwmBytes / MIB)} MiB, LLM running ${h.llmRunning}`);
  }
  const base = held.base as HeldRun;
  for (const label of ["narrow", "wide"]) {
    const h = held[label] as HeldRun;
    const perTask = (h.hwmBytes - base.hwmBytes) / Math.max(1, h.inFlight - base.inFlight);
    const what = `LLM client cap ${h.llmCap} requests`;
    figures.push({
      name: `coral tasks in flight on one node (${what}): peak RSS MiB`,
      value: `${fmt(h.hwmBytes / MIB)} (${h.inFlight} in flight, at most ${h.llmRunning} LLM requests running at the sim)`,
      goal: "<= 1024",
      met: h.inFlight >= target && h.hwmBytes <= 1024 * MIB,
      number: h.hwmBytes / MIB,
    });
    figures.push({ name: `RSS per in-flight task, KiB (${what}; vs ${base.inFlight} in flight)`, value: fmt(perTask / 1024), number: perTask / 1024 });
  }
  notes.push(
    `In-flight runs: ${target * 2} coral seeds, one sim server with ${target + 5000} slots; each run is held ${plan.quick ? QUICK_HOLD_S : HOLD_S} s once ` +
      `${target} tasks are in flight, then stopped. RSS per task = (peak RSS - peak RSS with ${small} in flight) / (difference in tasks).`,
  );

  // 3. Steady-state utilization at high concurrency, on the side-by-side fleet.
  // As shipped, and with Bun's default fetch limit forced back (BUN_CONFIG_MAX_HTTP_REQUESTS=256), which is
  // what matrixd had before it re-executed itself with a higher one.
  for (const fetchLimit of [undefined, 256]) {
    const u = await steadyUtilization(ctx, inflightSeeds, plan.fleet, 4096, fetchLimit);
    figures.push({
      name: `coral steady-state utilization, ${plan.fleet.servers} x ${plan.fleet.slots} slots, 4096 tasks in flight, ${fetchLabel(fetchLimit)}`,
      value: u.toFixed(3),
      goal: ">= 0.95",
      met: u >= 0.95,
      number: u,
    });
    ctx.log(`  scale: steady utilization (${fetchLabel(fetchLimit)}) ${u.toFixed(3)}`);
  }
  notes.push(
    `Steady-state utilization: generated tokens between ${plan.quick ? QUICK_WARM_S : WARM_S} s and ${plan.quick ? QUICK_WARM_S + QUICK_WINDOW_S : WARM_S + WINDOW_S} s after start, read from the fleet's /metrics, over ceiling x window; the run is then stopped (the side-by-side table includes the drain at the end of a job).`,
  );

  // 4. Binary start to /healthz (matrixd join, once it exists).
  if (existsSync(join(ctx.root, "cmd", "join.ts"))) {
    try {
      const { ms } = await measureHealthz(ctx.matrixd, ctx.plan.quick ? 2 : HEALTHZ_TRIES);
      const sorted = [...ms].sort((a, b) => a - b);
      const median = sorted[Math.floor(sorted.length / 2)] ?? Number.NaN;
      figures.push({
        name: `binary start to /healthz answering (matrixd join, local nats-server; median of ${ms.length})`,
        value: `${fmt(median)} ms (min ${fmt(sorted[0] ?? Number.NaN)}, max ${fmt(sorted[sorted.length - 1] ?? Number.NaN)})`,
        number: median,
      });
      ctx.log(`  scale: start to /healthz ${fmt(median)} ms`);
    } catch (err) {
      notes.push(`binary start to /healthz not measured: ${err instanceof Error ? err.message : String(err)}`);
    }
  } else {
    figures.push({ name: "binary start to /healthz", value: "not measured: matrixd join does not exist yet" });
  }
  return { figures, notes };
}

const HOLD_S = 15;
const HEALTHZ_TRIES = 7;
const WARM_S = 10;
const WINDOW_S = 30;
/** the same for --quick: a smoke test, its figures are not for reading */
const QUICK_HOLD_S = 1;
const QUICK_WARM_S = 1;
const QUICK_WINDOW_S = 2;

function fmt(x: number): string {
  return Number.isFinite(x) ? Math.round(x).toLocaleString("en-US") : "-";
}

/** `n` coral seeds cycled from the shipped set, each with its own id. */
function manySeeds(ctx: ScaleContext, shipped: string[], n: number, name: string): string {
  const path = join(ctx.tmp, `${name}.jsonl`);
  const lines: string[] = [];
  for (let i = 0; i < n; i++) {
    const seed = JSON.parse(shipped[i % shipped.length] as string) as Record<string, unknown>;
    seed.id = `${seed.id}-${Math.floor(i / shipped.length)}`;
    lines.push(JSON.stringify(seed));
  }
  writeFileSync(path, `${lines.join("\n")}\n`);
  return path;
}

interface HeldRun {
  inFlight: number;
  hwmBytes: number;
  llmRunning: number;
  llmCap: number;
}

/** Start `matrixd run` with `concurrency` tasks in flight, hold it there a while, then stop it. */
async function holdInFlight(ctx: ScaleContext, seeds: string, concurrency: number, llmCap: number, target: number): Promise<HeldRun> {
  const sim: FleetSettings = {
    servers: 1,
    slots: target + 5000,
    decodeTps: (target + 5000) * 50,
    flags: { "step-base-ms": 20, "step-per-seq-ms": 0, "len-median": 100, "agree-rate": 0.3 },
  };
  const fleet = await startFleet(ctx.matrixd, sim);
  const config = join(ctx.tmp, `inflight-${concurrency}-${llmCap}.json`);
  writeFileSync(config, JSON.stringify({ concurrency, seed: 1, llm: { endpoints: [{ url: fleet.urls[0], maxConcurrency: llmCap }] } }));
  const out = join(ctx.tmp, `inflight-${concurrency}-${llmCap}.jsonl`);
  const proc = track(
    Bun.spawn([...ctx.matrixd, "run", "--workflow", "coral", "--seeds", seeds, "--out", out, "--config", config, "--progress-every", "1"], {
      env: runEnv(ctx, undefined),
      stdin: "ignore",
      stdout: "ignore",
      stderr: "pipe",
    }),
  );
  let inFlight = 0;
  let hwm = 0;
  let llmRunning = 0;
  let reachedAt = 0;
  const want = Math.min(concurrency, target);
  const reader = (async () => {
    const decoder = new TextDecoder();
    let text = "";
    for await (const chunk of proc.stderr) {
      text += decoder.decode(chunk, { stream: true });
      const lines = text.split("\n");
      text = lines.pop() ?? "";
      for (const line of lines) {
        const m = /in flight (\d+)/.exec(line);
        if (m) inFlight = Math.max(inFlight, Number(m[1]));
      }
    }
  })();
  const deadline = Date.now() + 180_000;
  while (proc.exitCode === null && Date.now() < deadline) {
    await Bun.sleep(250);
    hwm = Math.max(hwm, procStatus(proc.pid).hwmBytes);
    try {
      llmRunning = Math.max(llmRunning, (await fleet.running()) ?? 0);
    } catch {}
    if (!reachedAt && inFlight >= want) reachedAt = Date.now();
    if (reachedAt && Date.now() - reachedAt > (ctx.plan.quick ? QUICK_HOLD_S : HOLD_S) * 1000) break;
  }
  hwm = Math.max(hwm, procStatus(proc.pid).hwmBytes);
  proc.kill("SIGKILL");
  await proc.exited;
  await reader.catch(() => {});
  await fleet.stop();
  return { inFlight, hwmBytes: hwm, llmRunning, llmCap };
}

/** Utilization over a window in the middle of a long coral run at high concurrency. */
async function steadyUtilization(ctx: ScaleContext, seeds: string, settings: FleetSettings, concurrency: number, fetchLimit: number | undefined): Promise<number> {
  const fleet = await startFleet(ctx.matrixd, settings);
  const config = join(ctx.tmp, `steady-${fetchLimit ?? 0}.json`);
  writeFileSync(
    config,
    JSON.stringify({ concurrency, seed: 1, llm: { endpoints: fleet.urls.map((url) => ({ url, maxConcurrency: concurrency })) } }),
  );
  const out = join(ctx.tmp, `steady-${fetchLimit ?? 0}.jsonl`);
  const proc = track(
    Bun.spawn([...ctx.matrixd, "run", "--workflow", "coral", "--seeds", seeds, "--out", out, "--config", config], {
      env: runEnv(ctx, fetchLimit),
      stdin: "ignore",
      stdout: "ignore",
      stderr: "ignore",
    }),
  );
  const warm = ctx.plan.quick ? QUICK_WARM_S : WARM_S;
  const window = ctx.plan.quick ? QUICK_WINDOW_S : WINDOW_S;
  await Bun.sleep(warm * 1000);
  const a: FleetCounters = await fleet.counters();
  const t0 = performance.now();
  await Bun.sleep(window * 1000);
  const b: FleetCounters = await fleet.counters();
  const secs = (performance.now() - t0) / 1000;
  const ended = proc.exitCode !== null;
  proc.kill("SIGKILL");
  await proc.exited;
  await fleet.stop();
  if (ended) ctx.log("  scale: the utilization run ended inside its window; the figure includes its drain");
  return (b.generationTokens - a.generationTokens) / (fleet.ceilingTps * secs);
}
