/**
 * One mode under test, run in its own process against the shared fleet:
 * matrixd single node (`matrixd run`), or a baseline (bench/baselines/).
 * Tokens come from the fleet's /metrics, read before and after.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import type { BaselineSpec } from "./baselines/common.ts";
import type { Fleet } from "./fleet.ts";
import { measure } from "./proc.ts";
import { startRedis } from "./redis.ts";
import { readDataset } from "./rows.ts";

/** The request priority policies the matrixd mode can run with (llm.priority, `none` being matrixd-fifo). */
export const PRIORITIES = ["admission", "steps", "fewest-steps"] as const;
export type Priority = (typeof PRIORITIES)[number];

export const MODES = ["matrixd", "matrixd-fifo", "batch", "central", "jobqueue"] as const;
export type ModeName = (typeof MODES)[number];
/** The modes that are matrixd (`matrixd run`), with its request priorities and without. */
export const MATRIXD_MODES: readonly ModeName[] = ["matrixd", "matrixd-fifo"];

export const MODE_TITLES: Record<ModeName, string> = {
  matrixd: "matrixd single node",
  "matrixd-fifo": "matrixd, no priority",
  batch: "batch-level",
  central: "central",
  jobqueue: "job queue (BullMQ)",
};

/** What is shared by every mode of a run. */
export interface BenchContext {
  /** the matrixd mode's request priority policy (llm.priority; admission by default) */
  priority?: Priority;
  root: string;
  matrixd: string[];
  bun: string[];
  fleet: Fleet;
  /** per-endpoint concurrency cap of the LLM client, the same in every mode */
  endpointConcurrency: number;
  tmp: string;
  workflow: string;
  options: Record<string, unknown>;
  jobSeed: number;
  /** tasks per seed (`matrixd run --trials`), the same in every mode */
  trials: number;
  /**
   * The environment service's config (driver, capacity...) for workflows
   * that run tools; every mode opens its own service with it, under a node
   * name of its own. Absent: no environments.
   */
  envConfig?: { driver: "bwrap" | "docker"; capacity: number } & Record<string, unknown>;
  /** extra environment of every mode's process */
  env: Record<string, string>;
  log: (line: string) => void;
}

export interface ModeResult {
  mode: ModeName;
  /** e.g. "B=64 K=4" */
  label: string;
  setting: Record<string, number>;
  /** tasks of the run: seed lines x trials */
  seeds: number;
  exitCode: number;
  wallS: number;
  /** CPU seconds of the mode's process (plus redis-server for the job queue) */
  cpuS: number;
  /** peak RSS of the mode's process, MiB */
  peakRssMiB: number;
  /** redis-server's share of cpuS, and its own peak RSS (job queue only) */
  redisCpuS?: number;
  redisRssMiB?: number;
  genTokens: number;
  promptTokens: number;
  tokensPerS: number;
  /** generated tokens / (fleet ceiling x wall time) */
  utilization: number;
  /**
   * The same over the time it took to generate 90% of the mode's tokens:
   * the bulk of the job, without the drain of its longest tasks at the end
   */
  utilization90: number;
  /** share of slot-seconds busy, from the servers' running integral */
  occupancy: number;
  /** seconds from the time 90% of the mode's tokens were generated to its end: the drain of its longest tasks */
  drainS: number;
  /**
   * A lower bound on the wall time any schedule of this run's work could
   * take on this fleet: the longer of its generated tokens at the fleet's
   * ceiling and its longest task's tokens at the speed of a server running
   * that task alone (its calls are one after the other). The first part
   * counts the prefill of the prompt tokens the servers computed (a step
   * computes them before it decodes); tools and per-request costs only add.
   */
  boundS: number;
  /** the two parts of boundS */
  boundTokensS: number;
  boundChainS: number;
  /** wall seconds the fleet's servers spent on prefill, per server: what keeps even a full batch below the decode ceiling */
  prefillS: number;
  /** LLM requests the fleet's servers were sent (from their /metrics) */
  llmCalls: number;
  /** CPU microseconds of the mode's own process(es) per LLM call, and per hop */
  cpuMicrosPerCall: number;
  cpuMicrosPerHop: number;
  rows: number;
  distinct: number;
  ok: number;
  failed: number;
  tasksPerS: number;
  hopsPerS: number;
  latencyP50S: number;
  latencyP99S: number;
  quality: number | null;
  qualityName: string;
  qualityN: number;
  errors: string[];
}

const MIB = 2 ** 20;
/** How often the fleet's counters are read while a mode runs. */
const SAMPLE_MS = 500;
/** BUN_CONFIG_MAX_HTTP_REQUESTS as matrixd sets it for itself at start. */
const MATRIXD_FETCH_LIMIT = "65535";

export function settingLabel(mode: ModeName, s: Record<string, number>): string {
  if (mode === "batch") return `B=${s.batch} K=${s.inflight}`;
  if (mode === "central" || mode === "jobqueue" || MATRIXD_MODES.includes(mode)) return `C=${s.concurrency}`;
  return JSON.stringify(s);
}

/** Run one mode over a seed file to its end and measure it. */
export async function runMode(
  ctx: BenchContext,
  mode: ModeName,
  setting: Record<string, number>,
  seedsPath: string,
  seeds: number,
  tag: string,
): Promise<ModeResult> {
  const out = join(ctx.tmp, `${tag}.jsonl`);
  const label = settingLabel(mode, setting);
  let cmd: string[];
  let redis: Awaited<ReturnType<typeof startRedis>> | undefined;
  const endpoints = ctx.fleet.urls.map((url, i) => {
    const model = ctx.fleet.models[i];
    return { url, maxConcurrency: ctx.endpointConcurrency, ...(model === undefined ? {} : { models: [model] }) };
  });
  // matrixd sends each request its task's priority (the fleet schedules by it); matrixd-fifo neither queues nor sends by one
  const llm =
    mode === "matrixd" ? { endpoints: endpoints.map((e) => ({ ...e, priority: true })), priority: ctx.priority ?? "admission" } : { endpoints, priority: "none" };
  // Each mode's environments under a node name of their own, so no run can take another's for leftovers.
  const env = ctx.envConfig ? { ...ctx.envConfig, node: `bench-${tag}-${process.pid}` } : undefined;
  if (MATRIXD_MODES.includes(mode)) {
    const config = join(ctx.tmp, `${tag}.config.json`);
    writeFileSync(
      config,
      JSON.stringify({ options: ctx.options, seed: ctx.jobSeed, concurrency: setting.concurrency, trials: ctx.trials, llm, ...(env ? { env } : {}) }),
    );
    cmd = [...ctx.matrixd, "run", "--workflow", ctx.workflow, "--seeds", seedsPath, "--out", out, "--config", config, "--trials", String(ctx.trials)];
    if (env) cmd.push("--env", env.driver);
  } else {
    const extra: Record<string, string> = {};
    if (mode === "jobqueue") {
      redis = await startRedis();
      extra.redis = redis.url;
    }
    const spec: BaselineSpec = {
      workflow: ctx.workflow,
      seeds: seedsPath,
      out,
      options: ctx.options,
      seed: ctx.jobSeed,
      endpoints,
      trials: ctx.trials,
      ...(env ? { env } : {}),
      setting,
      extra,
    };
    const specPath = join(ctx.tmp, `${tag}.spec.json`);
    writeFileSync(specPath, JSON.stringify(spec));
    cmd = [...ctx.bun, join(ctx.root, "bench", "baselines", `${mode}.ts`), "--spec", specPath];
  }

  const before = await ctx.fleet.counters();
  // The fleet's token counter over time, to find when the bulk of the work was done.
  const samples: { t: number; gen: number }[] = [{ t: performance.now(), gen: before.generationTokens }];
  const sampler = setInterval(() => {
    const t = performance.now();
    ctx.fleet.counters().then(
      (c) => samples.push({ t, gen: c.generationTokens }),
      () => {},
    );
  }, SAMPLE_MS);
  let proc: Awaited<ReturnType<typeof measure>>;
  let redisUsage: { cpuS: number; hwmBytes: number } | undefined;
  try {
    // The baselines get the fetch limit matrixd sets for itself (cmd/env.ts), so every mode's LLM client can
    // keep as many requests in flight; --fetch-limit (in ctx.env) overrides it for every mode.
    const procEnv = MATRIXD_MODES.includes(mode) ? ctx.env : { BUN_CONFIG_MAX_HTTP_REQUESTS: MATRIXD_FETCH_LIMIT, ...ctx.env };
    proc = await measure(cmd, { env: procEnv, cwd: ctx.root });
    redisUsage = redis?.usage();
  } finally {
    clearInterval(sampler);
    await redis?.stop();
  }
  const after = await ctx.fleet.counters();
  samples.push({ t: performance.now(), gen: after.generationTokens });
  if (proc.code !== 0) ctx.log(`  ${mode} ${label} exited ${proc.code}: ${lastLines(proc.stderr || proc.stdout)}`);

  const ds = await readDataset(out, ctx.workflow);
  const gen = after.generationTokens - before.generationTokens;
  const wall = proc.wallS;
  const cpuS = proc.cpuS + (redisUsage?.cpuS ?? 0);
  const calls = after.requests - before.requests;
  const computed = after.promptTokens - before.promptTokens - (after.prefixHits - before.prefixHits);
  const prefillS = (computed * ctx.fleet.prefillSPerToken) / ctx.fleet.urls.length;
  const boundTokensS = gen / ctx.fleet.ceilingTps + prefillS;
  const boundChainS = ds.maxTaskCompletion / ctx.fleet.unloadedTps;
  const t90 = shareTime(samples, 0.9);
  return {
    mode,
    label,
    setting,
    seeds,
    exitCode: proc.code,
    wallS: wall,
    cpuS,
    peakRssMiB: proc.peakRssBytes / MIB,
    redisCpuS: redisUsage?.cpuS,
    redisRssMiB: redisUsage ? redisUsage.hwmBytes / MIB : undefined,
    genTokens: gen,
    promptTokens: after.promptTokens - before.promptTokens,
    tokensPerS: gen / wall,
    utilization: gen / (ctx.fleet.ceilingTps * wall),
    utilization90: bulkUtilization(samples, 0.9, ctx.fleet.ceilingTps),
    occupancy: (after.runningSeconds - before.runningSeconds) / (ctx.fleet.urls.length * wall),
    drainS: Number.isFinite(t90) ? Math.max(0, wall - t90) : Number.NaN,
    boundS: Math.max(boundTokensS, boundChainS),
    boundTokensS,
    boundChainS,
    prefillS,
    llmCalls: calls,
    cpuMicrosPerCall: calls > 0 ? (cpuS * 1e6) / calls : Number.NaN,
    cpuMicrosPerHop: ds.steps > 0 ? (cpuS * 1e6) / ds.steps : Number.NaN,
    rows: ds.rows,
    distinct: ds.distinct,
    ok: ds.ok,
    failed: ds.failed,
    tasksPerS: ds.rows / wall,
    hopsPerS: ds.steps / wall,
    latencyP50S: ds.latencyP50S,
    latencyP99S: ds.latencyP99S,
    quality: ds.quality,
    qualityName: ds.qualityName,
    qualityN: ds.qualityN,
    errors: ds.errors,
  };
}

function lastLines(text: string): string {
  return text.trim().split("\n").slice(-3).join(" | ").slice(0, 500);
}

/**
 * Utilization until `share` of the tokens were generated: samples of the
 * fleet's counter (time, tokens), the first at the mode's start, the last at
 * its end; the crossing is interpolated between two samples.
 */
export function bulkUtilization(samples: { t: number; gen: number }[], share: number, ceilingTps: number): number {
  const s = [...samples].sort((a, b) => a.t - b.t);
  const first = s[0];
  const last = s[s.length - 1];
  const at = shareTime(s, share);
  if (!first || !last || !Number.isFinite(at)) return Number.NaN;
  return (share * (last.gen - first.gen)) / (ceilingTps * Math.max(1e-9, at));
}

/**
 * Seconds from the first sample until `share` of the tokens between the
 * first and the last sample were generated, interpolated between the two
 * samples around the crossing; NaN when no token was generated.
 */
export function shareTime(samples: { t: number; gen: number }[], share: number): number {
  const s = [...samples].sort((a, b) => a.t - b.t);
  const first = s[0];
  const last = s[s.length - 1];
  if (!first || !last || last.gen <= first.gen) return Number.NaN;
  const goal = first.gen + share * (last.gen - first.gen);
  for (let i = 1; i < s.length; i++) {
    const a = s[i - 1] as { t: number; gen: number };
    const b = s[i] as { t: number; gen: number };
    if (b.gen < goal) continue;
    const at = b.gen === a.gen ? b.t : a.t + ((goal - a.gen) / (b.gen - a.gen)) * (b.t - a.t);
    return (at - first.t) / 1000;
  }
  return Number.NaN;
}
