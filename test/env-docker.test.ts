import { afterAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import Docker from "dockerode";
import { createEnvService, parseEnvConfig, type EnvService } from "../src/env/index.ts";
import { silentLogger } from "../src/log.ts";
import { type Dockerd, startDockerd } from "./support/dockerd.ts";
import { envSuite, hostProcesses, startHeldRun } from "./env-suite.ts";
import { waitFor } from "./support/wait.ts";
import { ROOT, runProcess } from "./support/matrixd.ts";

/** per-test limit: generous, as the machine may be shared and busy */
const T = 30_000;

/** A dockerd of our own with the tool-use image built into it, or why not. */
async function setup(): Promise<Dockerd | { skip: string }> {
  const dockerd = await startDockerd();
  if ("skip" in dockerd) return dockerd;
  const built = await runProcess(["bash", join(ROOT, "configs/env/build-image.sh")], { env: dockerd.env, timeoutMs: 120_000 });
  if (built.code !== 0) {
    await dockerd.stop();
    return { skip: `configs/env/build-image.sh failed: ${built.stderr.trim()}` };
  }
  return dockerd;
}

const dockerd = await setup();
const skip = "skip" in dockerd ? dockerd.skip : undefined;
if (skip) console.warn(`env-docker: tests skipped: ${skip}`);
const engine = "skip" in dockerd ? undefined : dockerd;
afterAll(async () => {
  await engine?.stop();
}, 60_000);

const node = `dk-${process.pid}`;

describe.skipIf(!engine)("env docker", () => {
  const { make } = envSuite({ driver: "docker", base: { driver: "docker", node, socketPath: engine?.socketPath }, busybox: true });
  const docker = new Docker({ socketPath: engine?.socketPath ?? "/nonexistent" });
  const containerOf = async (envId: string) => {
    const list = await docker.listContainers({ all: true, filters: { label: [`matrixd.env=${envId}`] } });
    return list[0] ? docker.getContainer(list[0].Id) : undefined;
  };

  test("env docker - containers run with no network, no capabilities, a read-only root, limits and a non-root user", async () => {
    const envs = await make();
    const env = await envs.acquire("t", { memoryMb: 96, cpus: 0.5, pids: 40 });
    try {
      const info = await (await containerOf(env.id))!.inspect();
      expect(info.Config.User).toBe("65534:65534");
      expect(info.Config.Labels["matrixd.node"]).toBe(node);
      expect(info.HostConfig).toMatchObject({
        NetworkMode: "none",
        CapDrop: ["ALL"],
        SecurityOpt: ["no-new-privileges"],
        ReadonlyRootfs: true,
        Memory: 96 * 1024 * 1024,
        NanoCpus: 500_000_000,
        PidsLimit: 40,
      });
      const caps = await env.exec(["sh", "-c", "grep Cap /proc/self/status"]);
      expect(caps.stdout).toContain("CapEff:\t0000000000000000");
      expect(caps.stdout).toContain("CapBnd:\t0000000000000000");
    } finally {
      await env.release();
    }
  }, T);

  test("env docker - a released environment's container and processes are gone", async () => {
    const envs = await make();
    const env = await envs.acquire("t");
    await env.exec(["sh", "-c", "sleep 317 >/dev/null 2>&1 &"]);
    await waitFor("sleep 317 to run", async () => (await hostProcesses("sleep\u0000317")).length > 0);
    expect(await containerOf(env.id)).toBeDefined();
    await env.release();
    expect(await containerOf(env.id)).toBeUndefined();
    await waitFor("sleep 317 to be gone", async () => (await hostProcesses("sleep\u0000317")).length === 0);
  }, T);

  test("env docker - a node's start removes the containers of its runs that are over, and only those", async () => {
    const mine = `left-${process.pid}`;
    const live = await make({ node: mine });
    const neighbour = await make({ node: `other-${process.pid}` });
    const kept = await live.acquire("t");
    const theirs = await neighbour.acquire("t");
    const dead = await startHeldRun({ driver: "docker", node: mine, socketPath: engine?.socketPath }, ["sh", "-c", "sleep 318 >/dev/null 2>&1 &"]);
    await waitFor("sleep 318 to run", async () => (await hostProcesses("sleep\u0000318")).length > 0);
    // A container of an older version's run: labelled with the node only.
    const older = await docker.createContainer({ Image: "matrixd/tooluse:latest", Labels: { "matrixd.node": mine }, HostConfig: { NetworkMode: "none" } });
    await make({ node: mine });
    // The held run is alive: its container stays.
    expect(await containerOf(dead.env)).toBeDefined();
    expect(await older.inspect().catch(() => undefined)).toBeUndefined();
    await dead.kill();
    // Containers outlive the process that made them: the next start removes the dead run's.
    expect(await containerOf(dead.env)).toBeDefined();
    await make({ node: mine });
    expect(await containerOf(dead.env)).toBeUndefined();
    await waitFor("sleep 318 to be gone", async () => (await hostProcesses("sleep\u0000318")).length === 0);
    expect((await kept.exec(["echo", "ok"])).stdout).toBe("ok\n");
    expect((await theirs.exec(["echo", "ok"])).stdout).toBe("ok\n");
    const info = await (await containerOf(kept.id))!.inspect();
    expect(info.Config.Labels["matrixd.instance"]).toMatch(/^\d+-\d+-[0-9a-f]{8}-[0-9a-f]{6}$/);
    await kept.release();
    await theirs.release();
  }, 60_000);

  test("env docker - an image that is not there is an error, never a pull", async () => {
    const envs: EnvService = await make();
    await expect(envs.acquire("t", { image: "matrixd/absent:latest" })).rejects.toThrow(/not on this engine.*never pulled/);
    expect(envs.inUse()).toBe(0);
    await expect(createEnvService(parseEnvConfig({ driver: "docker", node, socketPath: engine?.socketPath, image: "matrixd/absent:latest" }), silentLogger)).rejects.toMatchObject({
      code: "unavailable",
    });
  }, T);

  test("env docker - no engine at the socket is a clear error", async () => {
    await expect(createEnvService(parseEnvConfig({ driver: "docker", socketPath: "/nonexistent/docker.sock" }), silentLogger)).rejects.toThrow(
      /No Docker engine at \/nonexistent\/docker.sock/,
    );
  }, T);
});
