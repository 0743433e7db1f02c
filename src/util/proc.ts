import { readFileSync } from "node:fs";

/** What /proc/PID/stat says of a process that matters to matrixd. */
export interface ProcStat {
  /** R, S, D, Z (zombie), X (dead)... */
  state: string;
  /** its process group */
  pgrp: number;
  /** when it started, in clock ticks since boot: a reused pid has another */
  startTime: string;
}

/**
 * A process's state, group and start time from /proc (Linux); undefined when
 * it is gone.
 *
 * @example
 * ```ts
 * const me = procStat("self");
 * const alive = (pid: number, started: string) => procStat(pid)?.startTime === started;
 * ```
 */
export function procStat(pid: number | "self"): ProcStat | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // the command name in parentheses may hold spaces: the fields start after the last ")"
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return { state: fields[0] ?? "", pgrp: Number(fields[2]), startTime: fields[19] ?? "" };
  } catch {
    return undefined;
  }
}

/** Whether a process state is a zombie or dead one, which holds nothing. */
export function isGone(s: ProcStat | undefined): boolean {
  return s === undefined || s.state === "Z" || s.state === "X";
}
