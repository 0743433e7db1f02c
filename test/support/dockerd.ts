/**
 * A Docker engine of the test's own: `dockerd` under a temporary folder (its
 * data, exec state, pid file and socket all inside), with no bridge, no
 * iptables rules, no forwarding or masquerading, so the host network is never
 * touched. Its containerd is the one it supervises itself, in namespaces of
 * its own. `stop()` ends it and removes the folder.
 *
 * `startDockerd()` resolves with `{ skip }` (the reason, with dockerd's last
 * log lines) when no engine can run in this sandbox: no binary, not root, or
 * the daemon failing to start with both overlay2 and vfs storage.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { readFile, readdir } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface Dockerd {
  dir: string;
  socketPath: string;
  /** the storage driver the engine runs with ("overlay2" or "vfs") */
  storageDriver: string;
  /** environment for the docker CLI and scripts: DOCKER_HOST */
  env: Record<string, string>;
  stop(): Promise<void>;
}

const START_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 20_000;

function findDockerd(): string | undefined {
  return Bun.which("dockerd") ?? ["/usr/sbin/dockerd", "/usr/bin/dockerd"].find((p) => existsSync(p));
}

export async function startDockerd(): Promise<Dockerd | { skip: string }> {
  const bin = findDockerd();
  if (!bin) return { skip: "dockerd is not installed (apt-get install docker.io)" };
  if (process.getuid?.() !== 0) return { skip: "dockerd needs root here (rootless mode is not set up)" };
  const reasons: string[] = [];
  for (const storage of [undefined, "vfs"]) {
    const started = await tryStart(bin, storage);
    if ("skip" in started) reasons.push(started.skip);
    else return started;
  }
  return { skip: `dockerd cannot run in this sandbox: ${reasons.join(" | ")}` };
}

async function tryStart(bin: string, storage: string | undefined): Promise<Dockerd | { skip: string }> {
  const dir = mkdtempSync(join(tmpdir(), "matrixd-dockerd-"));
  const socketPath = join(dir, "docker.sock");
  const logPath = join(dir, "dockerd.log");
  const ns = `matrixd-test-${process.pid}-${Date.now().toString(36)}`;
  const args = [
    bin,
    "--bridge=none",
    "--iptables=false",
    "--ip6tables=false",
    "--ip-forward=false",
    "--ip-masq=false",
    "--userland-proxy=false",
    `--data-root=${join(dir, "data")}`,
    `--exec-root=${join(dir, "exec")}`,
    `--pidfile=${join(dir, "pid")}`,
    `--host=unix://${socketPath}`,
    `--containerd-namespace=${ns}`,
    `--containerd-plugins-namespace=${ns}-plugins`,
    "--exec-opt=native.cgroupdriver=cgroupfs",
    ...(storage ? [`--storage-driver=${storage}`] : []),
  ];
  const proc = Bun.spawn(args, { stdin: "ignore", stdout: Bun.file(logPath), stderr: Bun.file(logPath), detached: true });
  const handle: Dockerd = {
    dir,
    socketPath,
    storageDriver: storage ?? "overlay2",
    env: { DOCKER_HOST: `unix://${socketPath}` },
    stop: () => stopDockerd(proc, dir),
  };
  const deadline = Date.now() + START_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (proc.exitCode !== null || proc.signalCode !== null) break;
    if (existsSync(socketPath)) {
      const info = await dockerInfo(socketPath);
      if (info) {
        handle.storageDriver = info.Driver ?? handle.storageDriver;
        return handle;
      }
    }
    await Bun.sleep(100);
  }
  const why = proc.exitCode !== null ? `exited with ${proc.exitCode}` : `no answer in ${START_TIMEOUT_MS / 1000} s`;
  const tail = lastLines(logPath, 4);
  await handle.stop();
  return { skip: `dockerd (${storage ?? "default storage"}) ${why}: ${tail}` };
}

async function dockerInfo(socketPath: string): Promise<{ Driver?: string } | undefined> {
  try {
    const res = await fetch("http://docker/info", { unix: socketPath, signal: AbortSignal.timeout(2000) });
    if (!res.ok) return undefined;
    return (await res.json()) as { Driver?: string };
  } catch {
    return undefined;
  }
}

function lastLines(path: string, n: number): string {
  try {
    return readFileSync(path, "utf8").trim().split("\n").slice(-n).join(" / ");
  } catch {
    return "(no log)";
  }
}

async function stopDockerd(proc: Bun.Subprocess, dir: string): Promise<void> {
  if (proc.exitCode === null && proc.signalCode === null) {
    proc.kill("SIGTERM");
    const exited = await Promise.race([proc.exited.then(() => true), Bun.sleep(STOP_TIMEOUT_MS).then(() => false)]);
    if (!exited) {
      try {
        process.kill(-proc.pid, "SIGKILL");
      } catch {
        proc.kill("SIGKILL");
      }
      await Promise.race([proc.exited, Bun.sleep(5000)]);
    }
  }
  // Its containerd and shims name the folder on their command lines.
  await killMentioning(dir);
  await unmountUnder(dir);
  rmSync(dir, { recursive: true, force: true });
}

async function killMentioning(needle: string): Promise<void> {
  for (const pid of await readdir("/proc").catch(() => [] as string[])) {
    if (!/^\d+$/.test(pid) || Number(pid) === process.pid) continue;
    const cmdline = await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "");
    if (!cmdline.includes(needle)) continue;
    try {
      process.kill(Number(pid), "SIGKILL");
    } catch {
      // gone already
    }
  }
}

async function unmountUnder(dir: string): Promise<void> {
  const mounts = (await readFile("/proc/self/mountinfo", "utf8").catch(() => ""))
    .split("\n")
    .map((line) => line.split(" ")[4] ?? "")
    .filter((point) => point === dir || point.startsWith(`${dir}/`))
    .sort((a, b) => b.length - a.length);
  for (const point of mounts) {
    const p = Bun.spawn(["umount", "-l", point], { stdout: "ignore", stderr: "ignore" });
    await Promise.race([p.exited, Bun.sleep(5000)]);
  }
}
