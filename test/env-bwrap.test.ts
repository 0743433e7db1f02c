import { afterAll, describe, expect, test } from "bun:test";
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { ConfigError } from "../src/errors.ts";
import { createEnvService, parseEnvConfig, type EnvService } from "../src/env/index.ts";
import { silentLogger } from "../src/log.ts";
import { instanceAlive, isInstanceId, newInstanceId } from "../src/env/instance.ts";
import { envSuite, hostProcesses, startHeldRun } from "./env-suite.ts";
import { ROOT, runProcess } from "./support/matrixd.ts";
import { tempDir } from "./support/files.ts";
import { waitFor } from "./support/wait.ts";

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

/** The work folder of an environment: `<stateDir>/<node>/<instance>/<env id>`. */
async function envFolder(node: string, env: string): Promise<string> {
  const runs = readdirSync(join(stateDir, node));
  const found = runs.map((r) => join(stateDir, node, r, env)).find((p) => existsSync(p));
  if (!found) throw new Error(`no folder of environment ${env} under ${join(stateDir, node)}`);
  return found;
}

/** The cgroup folders (any hierarchy) of a process that are an environment's, by its id. */
async function cgroupDirsOf(pid: number, env: string): Promise<string[]> {
  const lines = readFileSync(`/proc/${pid}/cgroup`, "utf8").split("\n");
  const out: string[] = [];
  for (const line of lines) {
    const m = /^\d+:([^:]*):(.*)$/.exec(line);
    if (!m || !m[2]?.includes(env)) continue;
    const controllers = m[1] ?? "";
    const mount = controllers === "" ? (existsSync("/sys/fs/cgroup/unified/cgroup.procs") ? "unified" : "") : controllers.split(",")[0]!;
    const dir = join("/sys/fs/cgroup", mount, m[2]);
    if (existsSync(dir)) out.push(dir);
  }
  return out;
}

/** This boot's id as instance ids carry it. */
function bootPrefix(): string {
  return readFileSync("/proc/sys/kernel/random/boot_id", "utf8").replace(/-/g, "").slice(0, 8);
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

  test("env bwrap - a run that died leaves its folder, cgroup and processes to the next run of its name; a live run's stay", async () => {
    const node = `left-${process.pid}`;
    const live = await make({ node });
    const kept = await live.acquire("t");
    const dead = await startHeldRun({ driver: "bwrap", node, stateDir, rootfs }, ["sleep", "316"]);
    const sleeper = await waitFor("the dead run's sandbox", async () => (await hostProcesses("sleep\u0000316"))[0], 30_000);
    const cgroups = await cgroupDirsOf(sleeper, dead.env);
    const folder = await envFolder(node, dead.env);
    expect(existsSync(join(folder, "state.json"))).toBe(true);
    await dead.kill();
    // Stands in for a sandbox process that outlived its run: its command line names the run's folder.
    const straggler = Bun.spawn(["tail", "-f", join(folder, "state.json")], { stdout: "ignore", stderr: "ignore" });
    // A folder of a run whose pid is now another process's (this one's), and one of an older layout.
    const reused = join(stateDir, node, `${process.pid}-1-${bootPrefix()}-abcdef`, "0123456789ab");
    const older = join(stateDir, node, "ba9876543210");
    mkdirSync(reused, { recursive: true });
    mkdirSync(older, { recursive: true });
    const before = readdirSync(join(stateDir, node)).length;
    expect(before).toBe(4);
    await make({ node });
    await straggler.exited;
    expect(straggler.signalCode).toBe("SIGKILL");
    expect(existsSync(dirname(folder))).toBe(false);
    expect(existsSync(dirname(reused))).toBe(false);
    expect(existsSync(older)).toBe(false);
    for (const dir of cgroups) expect(existsSync(dir)).toBe(false);
    // Left: the live run's folder and the new run's.
    expect(readdirSync(join(stateDir, node))).toHaveLength(2);
    expect(existsSync(await envFolder(node, kept.id))).toBe(true);
    // An exec joins its environment's cgroup first: it would fail had the cgroup gone.
    expect((await kept.exec(["echo", "ok"])).stdout).toBe("ok\n");
    await kept.release();
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

describe("env instance", () => {
  test("env instance - a run is alive while its process is, and not once its pid or boot is another's", async () => {
    const mine = newInstanceId();
    expect(isInstanceId(mine)).toBe(true);
    expect(instanceAlive(mine)).toBe(true);
    const [pid, start, boot, random] = mine.split("-");
    // the same pid with another start time: a later process that took the pid
    expect(instanceAlive(`${pid}-${Number(start) + 1}-${boot}-${random}`)).toBe(false);
    expect(instanceAlive(`${pid}-${start}-${boot === "00000000" ? "11111111" : "00000000"}-${random}`)).toBe(false);
    const gone = Bun.spawn(["true"]);
    await gone.exited;
    expect(instanceAlive(`${gone.pid}-${start}-${boot}-${random}`)).toBe(false);
    expect(instanceAlive("0123456789ab")).toBe(false);
    expect(isInstanceId("0123456789ab")).toBe(false);
  });
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
