/** Where and on what a benchmark ran: date, CPU, cores, RAM, commit. */
import { readFileSync } from "node:fs";
import { cpus, totalmem } from "node:os";

export interface MachineInfo {
  date: string;
  cpu: string;
  cores: number;
  ramGiB: number;
  os: string;
  bun: string;
  commit: string;
  /** uncommitted changes in the work tree when it ran */
  dirty: boolean;
}

export function machineInfo(root: string): MachineInfo {
  let os = process.platform as string;
  try {
    const rel = readFileSync("/etc/os-release", "utf8");
    os = /PRETTY_NAME="([^"]+)"/.exec(rel)?.[1] ?? os;
  } catch {}
  return {
    date: new Date().toISOString(),
    cpu: cpus()[0]?.model.trim() ?? "unknown",
    cores: cpus().length,
    ramGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    os,
    bun: Bun.version,
    // An exported tree (no .git) names its commit in MATRIXD_COMMIT.
    commit: git(root, ["rev-parse", "--short=12", "HEAD"]) || process.env.MATRIXD_COMMIT || "unknown",
    dirty: git(root, ["status", "--porcelain", "--untracked-files=no"]).length > 0,
  };
}

function git(root: string, args: string[]): string {
  const r = Bun.spawnSync(["git", ...args], { cwd: root, stdout: "pipe", stderr: "ignore" });
  return r.exitCode === 0 ? r.stdout.toString().trim() : "";
}
