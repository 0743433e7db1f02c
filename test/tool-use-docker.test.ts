import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { toolUse } from "../plugins/tool-use/index.ts";
import { makeJobRuntime } from "../src/engine/job.ts";
import { runJob } from "../src/engine/run.ts";
import { createEnvService, parseEnvConfig } from "../src/env/index.ts";
import type { EnvService } from "../src/env/types.ts";
import { createLlmClient } from "../src/llm/index.ts";
import type { LlmClient } from "../src/llm/types.ts";
import { silentLogger } from "../src/log.ts";
import { startSim, type SimServer } from "../src/sim/index.ts";
import { type Dockerd, startDockerd } from "./support/dockerd.ts";
import { readRows, tempDir, writeLines } from "./support/files.ts";
import { ROOT } from "./support/matrixd.ts";

/**
 * The tool-use workflow with the docker driver: a dockerd of the test's own,
 * the scenario image built from busybox-static by configs/env/build-image.sh,
 * each task in its own container.
 */

const IMAGE = "matrixd/tooluse:test";
const started = await startDockerd();
const skip = "skip" in started ? started.skip : undefined;
if (skip) console.warn(`tool-use-docker: tests skipped: ${skip}`);
const dockerd = "skip" in started ? undefined : (started as Dockerd);

const tmp = tempDir();
let sim: SimServer;
let llm: LlmClient;
let envs: EnvService;

beforeAll(async () => {
  if (!dockerd) return;
  const build = Bun.spawn(["bash", join(ROOT, "configs/env/build-image.sh"), "--tag", IMAGE], { env: { ...process.env, ...dockerd.env }, stderr: "pipe" });
  const timer = setTimeout(() => build.kill(), 120_000);
  const [code, stderr] = await Promise.all([build.exited, new Response(build.stderr).text()]);
  clearTimeout(timer);
  if (code !== 0) throw new Error(`build-image.sh failed (exit ${code}): ${stderr.trim()}`);
  sim = await startSim({ model: "tu", timeScale: 0.002 });
  llm = createLlmClient({ endpoints: [{ url: `${sim.url}/v1`, models: ["tu"] }], retries: 1 });
  envs = await createEnvService(
    parseEnvConfig({ driver: "docker", capacity: 8, node: `tool-use-docker-${process.pid}`, socketPath: dockerd.socketPath, image: IMAGE }),
    silentLogger,
  );
}, 180_000);

afterAll(async () => {
  await envs?.close();
  await llm?.close();
  await sim?.stop();
  await dockerd?.stop();
  tmp.remove();
}, 60_000);

describe.skipIf(skip !== undefined)("tool-use on docker", () => {
  test("tool-use - scenarios run in containers of the busybox image, tools from the image or written in, all released", async () => {
    const shipped = readFileSync(join(ROOT, "configs/seeds/tool-use.jsonl"), "utf8").trim().split("\n").slice(0, 12);
    const seeds = tmp.path("seeds.jsonl");
    writeLines(seeds, shipped);
    const outputs: unknown[][] = [];
    for (const toolsPath of ["/opt/tools", ".tools"]) {
      const job = makeJobRuntime({ workflow: toolUse, options: { toolsPath }, seed: 3, stepRetries: 0 });
      const out = tmp.path(`docker${toolsPath.replaceAll("/", "-")}.out`);
      const s = await runJob({ job, seedsPath: seeds, outPath: out, concurrency: 8, trials: 1, llm, log: silentLogger, node: "n1", services: { env: envs } });
      const rows = readRows(out);
      expect(rows.filter((r) => r.status !== "ok").map((r) => r.error)).toEqual([]);
      expect(rows.length).toBe(12);
      expect(s.metrics.reward).toBeGreaterThan(0);
      expect(rows.some((r) => r.output.trajectory.some((m: { role: string; content: string }) => m.role === "tool" && m.content.startsWith('{"account"')))).toBe(true);
      expect(envs.inUse()).toBe(0);
      outputs.push(rows.map((r) => ({ id: r.id, o: r.output })).sort((a, b) => a.id.localeCompare(b.id)));
    }
    // The same conversations and rewards whichever way the scripts got there.
    expect(outputs[1]).toEqual(outputs[0] as unknown[]);
  }, 120_000);
});
