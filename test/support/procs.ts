import { readdirSync, readFileSync } from "node:fs";

/** Pids of live processes (zombies left out) whose command line contains every one of `marks`. */
export function pidsWith(...marks: string[]): number[] {
  const out: number[] = [];
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const cmd = readFileSync(`/proc/${d}/cmdline`, "utf8");
      const stat = readFileSync(`/proc/${d}/stat`, "utf8");
      if (marks.every((m) => cmd.includes(m)) && !/\) Z /.test(stat)) out.push(Number(d));
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

/** A supervised sim-llm server itself, found by a mark in its command: not matrixd (--supervise), not the guard, not the shell. */
export function serverPids(marker: string): number[] {
  return pidsWith(marker, "sim-llm").filter((pid) => {
    try {
      const argv = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
      return !argv.includes("--supervise") && !argv.includes("__guard") && argv[0] !== "/bin/sh" && argv[0] !== "sh";
    } catch {
      return false;
    }
  });
}
