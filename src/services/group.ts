import { readdirSync } from "node:fs";
import { isGone, procStat } from "../util/proc.ts";

/**
 * Process groups of supervised servers, read from /proc: the guard leads a
 * group, the server's command runs in it, and whatever of the group is left
 * (after the guard, the shell or the server died) is ended as one.
 */

/** The process group this process is in. */
export function ownGroup(): number {
  return procStat("self")?.pgrp ?? -1;
}

/** The live members of process group `pgid` (zombies, which hold nothing, left out). */
export function groupMembers(pgid: number): number[] {
  const out: number[] = [];
  for (const name of readdirSync("/proc")) {
    const pid = Number(name);
    if (!Number.isInteger(pid) || pid <= 0) continue;
    const s = procStat(pid);
    if (s && s.pgrp === pgid && !isGone(s)) out.push(pid);
  }
  return out;
}

/** Send `signal` to every process of group `pgid`; false when the group is gone. */
export function signalGroup(pgid: number, signal: NodeJS.Signals): boolean {
  try {
    process.kill(-pgid, signal);
    return true;
  } catch {
    return false;
  }
}

async function emptied(pgid: number, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (groupMembers(pgid).length === 0) return true;
    if (Date.now() >= deadline) return false;
    await Bun.sleep(50);
  }
}

/**
 * End what is left of process group `pgid`: SIGTERM, SIGKILL after
 * `graceMs`, then wait (a few seconds at most) for its last member to go.
 * Returns the pids still alive after that (none, unless one is stuck in the
 * kernel).
 *
 * @example
 * ```ts
 * const stuck = await endGroup(guard.pid, 10_000);
 * if (stuck.length > 0) log.error({ stuck }, "cannot end the server's processes");
 * ```
 */
export async function endGroup(pgid: number, graceMs: number): Promise<number[]> {
  if (groupMembers(pgid).length === 0) return [];
  signalGroup(pgid, "SIGTERM");
  if (await emptied(pgid, graceMs)) return [];
  signalGroup(pgid, "SIGKILL");
  await emptied(pgid, 5_000);
  return groupMembers(pgid);
}
