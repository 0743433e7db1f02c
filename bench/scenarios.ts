/**
 * The quality and throughput figures of the reasoning-extract and tool-use
 * scenarios against the simulated LLM, on one node:
 * - reasoning-extract on its shipped set, the filter on a small model's
 *   server and score and question on a large model's: the per-stage yield;
 * - tool-use on its shipped scenarios (several trials), each task in its own
 *   environment: tasks per second, mean reward, how conversations ended.
 *
 *   bun bench/scenarios.ts [--env bwrap|docker] [--socket PATH] [--image TAG]
 *                          [--trials N] [--concurrency N] [--time-scale X] [--out FILE]
 *
 * The docker driver needs an engine at --socket with the image built by
 * configs/env/build-image.sh.
 *
 * Writes bench/results/scenarios.json (or FILE) and prints it.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { parseArgs } from "node:util";
import { reasoningExtract } from "../plugins/reasoning-extract/index.ts";
import { toolUse } from "../plugins/tool-use/index.ts";
import { makeJobRuntime } from "../src/engine/job.ts";
import { runJob, type RunSummary } from "../src/engine/run.ts";
import { createEnvService, parseEnvConfig } from "../src/env/index.ts";
import { createLlmClient } from "../src/llm/index.ts";
import { silentLogger } from "../src/log.ts";
import { startSim } from "../src/sim/index.ts";
import { machineInfo } from "./machine.ts";

const ROOT = join(import.meta.dir, "..");
const { values: f } = parseArgs({
  args: process.argv.slice(2),
  strict: true,
  options: {
    env: { type: "string", default: "bwrap" },
    socket: { type: "string", default: "/var/run/docker.sock" },
    image: { type: "string", default: "matrixd/tooluse:latest" },
    trials: { type: "string", default: "4" },
    concurrency: { type: "string", default: "32" },
    "time-scale": { type: "string", default: "0.05" },
    out: { type: "string", default: join(ROOT, "bench/results/scenarios.json") },
  },
});
const driver = f.env === "docker" ? "docker" : "bwrap";
const trials = Number(f.trials);
const concurrency = Number(f.concurrency);
const timeScale = Number(f["time-scale"]);
const work = mkdtempSync(join(tmpdir(), "matrixd-scenarios-"));

function figures(s: RunSummary) {
  return { ok: s.ok, failed: s.failed, seconds: Math.round(s.seconds * 1000) / 1000, steps: s.steps, promptTokens: s.promptTokens, completionTokens: s.completionTokens };
}

function round(m: Record<string, number | null>): Record<string, number | null> {
  return Object.fromEntries(Object.entries(m).map(([k, v]) => [k, v === null ? null : Math.round(v * 10_000) / 10_000]));
}

async function reasoning() {
  const small = await startSim({ model: "small", timeScale });
  const large = await startSim({ model: "large", timeScale });
  const llm = createLlmClient({
    endpoints: [
      { url: `${small.url}/v1`, models: ["small"] },
      { url: `${large.url}/v1`, models: ["large"] },
    ],
  });
  try {
    const options = { filterModel: "small", scoreModel: "large", questionModel: "large" };
    const job = makeJobRuntime({ workflow: reasoningExtract, options, seed: 0, stepRetries: 0 });
    const s = await runJob({
      job,
      seedsPath: join(ROOT, "configs/seeds/reasoning-extract.jsonl"),
      outPath: join(work, "reasoning-extract.out"),
      concurrency: 1024,
      trials: 1,
      llm,
      log: silentLogger,
      node: "bench",
    });
    const done = s.ok + s.failed;
    return {
      documents: done,
      ...figures(s),
      documentsPerSecond: Math.round((done / s.seconds) * 10) / 10,
      requests: { small: small.stats().requests, large: large.stats().requests },
      yield: round(s.metrics),
    };
  } finally {
    await llm.close();
    await small.stop();
    await large.stop();
  }
}

async function tools() {
  const sim = await startSim({ model: "sim", timeScale });
  const llm = createLlmClient({ endpoints: [{ url: `${sim.url}/v1`, models: ["sim"] }] });
  const envs = await createEnvService(parseEnvConfig({ driver, capacity: concurrency, node: `bench-scenarios-${process.pid}`, socketPath: f.socket, image: f.image }), silentLogger);
  try {
    const job = makeJobRuntime({ workflow: toolUse, options: {}, seed: 0, stepRetries: 0 });
    const s = await runJob({
      job,
      seedsPath: join(ROOT, "configs/seeds/tool-use.jsonl"),
      outPath: join(work, "tool-use.out"),
      concurrency,
      trials,
      llm,
      log: silentLogger,
      node: "bench",
      services: { env: envs },
    });
    const done = s.ok + s.failed;
    return {
      driver,
      tasks: done,
      trials,
      ...figures(s),
      tasksPerSecond: Math.round((done / s.seconds) * 100) / 100,
      envsLeft: envs.inUse(),
      meanReward: s.metrics.reward,
      metrics: round(s.metrics),
    };
  } finally {
    await envs.close();
    await llm.close();
    await sim.stop();
  }
}

try {
  const results = {
    machine: machineInfo(ROOT),
    sim: { timeScale },
    concurrency,
    reasoningExtract: await reasoning(),
    toolUse: await tools(),
  };
  mkdirSync(dirname(f.out), { recursive: true });
  writeFileSync(f.out, `${JSON.stringify(results, null, 2)}\n`);
  console.log(JSON.stringify(results, null, 2));
} finally {
  rmSync(work, { recursive: true, force: true });
}
