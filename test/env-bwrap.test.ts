import { afterAll, describe, expect, test } from "bun:test";
import { chmodSync, existsSync } from "node:fs";
import { join } from "node:path";
import { ConfigError } from "../src/errors.ts";
import { createEnvService, parseEnvConfig, type EnvService } from "../src/env/index.ts";
import { silentLogger } from "../src/log.ts";
import { envSuite, eventually, hostProcesses } from "./env-suite.ts";
import { ROOT, runProcess, tempDir } from "./helpers.ts";

/** per-test limit: generous, as the machine may be shared and busy */
const T = 30_000;

const tmp = tempDir("matrixd-env-bwrap-");
afterAll(() => tmp.remove());
// The sandbox user (65534) must reach the root folder and the work folders.
chmodSync(tmp.dir, 0o755);
const stateDir = tmp.path("state");
const rootfs = tmp.path("rootfs");

/** Why bwrap tests cannot run here, or undefined when they can. */
async function bwrapUnavailable(): Promise<string | undefined> {
  if (!Bun.which("bwrap")) return "bwrap is not installed (apt-get install bubblewrap)";
  const built = await runProcess(["bash", join(ROOT, "configs/env/build-image.sh"), "--rootfs", rootfs, "--no-import"], { timeoutMs: 60_000 });
  if (built.code !== 0) return `the busybox root folder could not be built: ${built.stderr.trim()}`;
  try {
    const probe = await createEnvService(parseEnvConfig({ driver: "bwrap", node: `probe-${process.pid}`, stateDir, rootfs }), silentLogger);
    await probe.close();
  } catch (err) {
    return String(err);
  }
  return undefined;
}

const skip = await bwrapUnavailable();
if (skip) console.warn(`env-bwrap: tests skipped: ${skip}`);

describe.skipIf(skip !== undefined)("env bwrap on a busybox root", () => {
  envSuite({ driver: "bwrap", base: { driver: "bwrap", node: `bb-${process.pid}`, stateDir, rootfs }, busybox: true });
});

describe.skipIf(skip !== undefined)("env bwrap on the host's system folders", () => {
  envSuite({ driver: "bwrap", base: { driver: "bwrap", node: `host-${process.pid}`, stateDir }, busybox: false });
});

describe.skipIf(skip !== undefined)("env bwrap", () => {
  const made: EnvService[] = [];
  const make = async (over: Record<string, unknown>) => {
    const svc = await createEnvService(parseEnvConfig({ driver: "bwrap", stateDir, rootfs, ...over }), silentLogger);
    made.push(svc);
    return svc;
  };
  afterAll(async () => {
    await Promise.all(made.map((s) => s.close()));
  }, T);

  test("env bwrap - without cgroups, rlimits still contain a memory hog and a fork bomb", async () => {
    const envs = await make({ node: `rl-${process.pid}`, cgroup: "off" });
    const env = await envs.acquire("t", { memoryMb: 48, pids: 24 });
    try {
      const hog = await env.exec(["dd", "if=/dev/zero", "of=/dev/null", "bs=200M", "count=1"], { timeoutMs: 10_000 });
      expect(hog.exitCode).not.toBe(0);
      expect(hog.killed).toBe("memory");
      const bomb = await env.exec(["sh", "-c", "b() { b | b & }; b; sleep 6"], { timeoutMs: 3000 });
      expect(bomb.exitCode).not.toBe(0);
      expect(bomb.killed === "pids" || bomb.killed === "time").toBe(true);
      expect((await env.exec(["echo", "alive"])).stdout).toBe("alive\n");
    } finally {
      await env.release();
    }
  }, 30_000);

  test("env bwrap - a node that starts again removes what its earlier run left", async () => {
    const node = `left-${process.pid}`;
    const first = await make({ node });
    const env = await first.acquire("t", { files: { "state.json": "{}" } });
    const hanging = env.exec(["sleep", "316"], { timeoutMs: 60_000 }).catch((e: unknown) => e);
    expect(await eventually(async () => (await hostProcesses("sleep\u0000316")).length > 0)).toBe(true);
    const folder = join(stateDir, node, env.id);
    expect(existsSync(folder)).toBe(true);
    // `first` stands for a run that died without releasing: a new service with the same node name cleans up.
    await make({ node });
    expect(await eventually(async () => (await hostProcesses("sleep\u0000316")).length === 0)).toBe(true);
    expect(existsSync(folder)).toBe(false);
    await hanging;
    await first.close();
  }, 30_000);

  test("env bwrap - the state folder and other work folders are out of sight", async () => {
    const envs = await make({ node: `sight-${process.pid}` });
    const env = await envs.acquire("t");
    try {
      const r = await env.exec(["sh", "-c", `ls ${stateDir}; ls /tmp; ls /proc`]);
      expect(r.stdout).not.toContain("matrixd");
      expect(r.stderr).toContain("No such file");
      // Only the exec's own processes: bwrap's init (1), the shell, ls.
      const pids = r.stdout.split(/\s+/).filter((w) => /^\d+$/.test(w));
      expect(pids.length).toBeLessThanOrEqual(3);
    } finally {
      await env.release();
    }
  }, T);
});

describe("env config", () => {
  test("env config - defaults and named errors", () => {
    const config = parseEnvConfig({});
    expect(config).toMatchObject({ driver: "bwrap", capacity: 16, image: "matrixd/tooluse:latest" });
    expect(config.limits).toEqual({ memoryMb: 256, cpus: 1, pids: 64, execTimeoutMs: 30_000, workDirMb: 64 });
    expect(() => parseEnvConfig({ driver: "podman" })).toThrow(ConfigError);
    expect(() => parseEnvConfig({ capacity: 0 })).toThrow(/Invalid env config: capacity/);
    expect(() => parseEnvConfig({ limits: { memoryMb: 1 } })).toThrow(/limits.memoryMb/);
    expect(() => parseEnvConfig({ sockte: "/x" })).toThrow(/Invalid env config/);
  }, T);
});
