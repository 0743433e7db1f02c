/**
 * Child processes the benchmark measures: wall time, CPU seconds and peak
 * RSS of exactly one process (the mode under test), from the kernel's own
 * accounting of that child (wait4 rusage), cross-checked by sampling
 * /proc/PID/status while it runs.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";

/** Child processes still running, stopped by `stopAll` when the benchmark is interrupted. */
const live = new Set<{ kill(signal?: number | NodeJS.Signals): void; exited: Promise<number> }>();

/** Remember a child until it exits, so an interrupted benchmark leaves nothing behind. */
export function track<P extends { kill(signal?: number | NodeJS.Signals): void; exited: Promise<number> }>(proc: P): P {
  live.add(proc);
  proc.exited.finally(() => live.delete(proc));
  return proc;
}

/** Kill every child still running (SIGKILL). */
export function stopAll(): void {
  for (const p of live) p.kill("SIGKILL");
}

/** What one measured process did. */
export interface ProcResult {
  code: number;
  wallS: number;
  cpuS: number;
  peakRssBytes: number;
  stdout: string;
  stderr: string;
}

/** Kill the child with SIGKILL after this long. */
const DEFAULT_TIMEOUT_MS = 30 * 60_000;

/** Run a command to its end and measure it. */
export async function measure(
  cmd: string[],
  opts: { env?: Record<string, string>; timeoutMs?: number; cwd?: string } = {},
): Promise<ProcResult> {
  const t0 = performance.now();
  const proc = track(
    Bun.spawn(cmd, {
      cwd: opts.cwd,
      env: { ...process.env, ...opts.env },
      stdin: "ignore",
      stdout: "pipe",
      stderr: "pipe",
    }),
  );
  let sampled = 0;
  const sampler = setInterval(() => {
    sampled = Math.max(sampled, procStatus(proc.pid).hwmBytes);
  }, 200);
  const killer = setTimeout(() => proc.kill("SIGKILL"), opts.timeoutMs ?? DEFAULT_TIMEOUT_MS);
  const [stdout, stderr, code] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  const wallS = (performance.now() - t0) / 1000;
  clearInterval(sampler);
  clearTimeout(killer);
  const usage = proc.resourceUsage();
  const cpuS = usage ? Number(usage.cpuTime.total) / 1e6 : Number.NaN;
  const peakRssBytes = Math.max(usage?.maxRSS ?? 0, sampled);
  return { code, wallS, cpuS, peakRssBytes, stdout, stderr };
}

/** CPU seconds (user + system) and peak RSS of a live process, from /proc. */
export function procStatus(pid: number): { cpuS: number; hwmBytes: number; rssBytes: number } {
  try {
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    const hwm = /VmHWM:\s+(\d+) kB/.exec(status);
    const rss = /VmRSS:\s+(\d+) kB/.exec(status);
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // Fields after the command name (which may hold spaces) start after the last ')'.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const ticks = Number(fields[11]) + Number(fields[12]);
    return {
      cpuS: ticks / CLOCK_TICKS,
      hwmBytes: hwm ? Number(hwm[1]) * 1024 : 0,
      rssBytes: rss ? Number(rss[1]) * 1024 : 0,
    };
  } catch {
    return { cpuS: 0, hwmBytes: 0, rssBytes: 0 };
  }
}

/** USER_HZ: 100 on every Linux this runs on. */
const CLOCK_TICKS = 100;

/** The repository's root: the folder holding bench/ and package.json. */
export function repoRoot(): string {
  for (const dir of [join(import.meta.dir, ".."), process.cwd()]) {
    if (existsSync(join(dir, "bench", "baselines")) && existsSync(join(dir, "package.json"))) return dir;
  }
  throw new Error("matrixd bench needs the source tree (bench/ and node_modules/): run it from the repository");
}

/** The command that runs TypeScript files of the repository (Bun). */
export function bunCommand(root: string): string[] {
  const local = join(root, "node_modules", ".bin", "bun");
  if (existsSync(local)) return [local];
  if (/\bbun$/.test(process.execPath)) return [process.execPath];
  throw new Error("Bun not found: run `make setup` first");
}

/**
 * The matrixd command: the compiled binary when it exists (`make bench`
 * builds it first), else the CLI from source. With MATRIXD_CPU_PROF=DIR
 * set, the CLI from source under Bun's sampling profiler: each matrixd
 * process writes a .cpuprofile into DIR when it exits.
 */
export function matrixdCommand(root: string): string[] {
  const prof = process.env.MATRIXD_CPU_PROF;
  if (prof) return [...bunCommand(root), "--cpu-prof", `--cpu-prof-dir=${prof}`, join(root, "cmd", "matrixd.ts")];
  const bin = join(root, "dist", "matrixd");
  if (existsSync(bin)) return [bin];
  return [...bunCommand(root), join(root, "cmd", "matrixd.ts")];
}
