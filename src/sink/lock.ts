import { closeSync, linkSync, openSync, readFileSync, renameSync, unlinkSync, writeSync } from "node:fs";
import { hostname } from "node:os";
import { z } from "zod";
import { isGone, procStat } from "../util/proc.ts";
import { OutputLockedError, OutputWriteError, ioReason } from "./errors.ts";

/** What a lock file says of the process that holds it. */
const LockSchema = z.object({
  pid: z.number().int().positive(),
  host: z.string(),
  /** when it took the lock (ISO time) */
  started: z.string(),
  /** the process's start time, in clock ticks since boot (field 22 of /proc/PID/stat): tells a reused pid apart */
  procStart: z.string(),
  command: z.string(),
});
type LockInfo = z.infer<typeof LockSchema>;

/** The start time of a live process; undefined when it is gone (or a zombie). */
function procStart(pid: number | "self"): string | undefined {
  const s = procStat(pid);
  return isGone(s) ? undefined : s?.startTime;
}

/** The holder of a lock, when it is a live process (on another host: assumed live, it cannot be seen). */
function liveHolder(text: string): LockInfo | undefined {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    return undefined;
  }
  const info = LockSchema.safeParse(raw);
  if (!info.success) return undefined;
  if (info.data.host !== hostname()) return info.data;
  return procStart(info.data.pid) === info.data.procStart ? info.data : undefined;
}

function readText(path: string): string | undefined {
  try {
    return readFileSync(path, "utf8");
  } catch (err) {
    if (ioReason(err).code === "ENOENT") return undefined;
    throw err;
  }
}

function hhmm(iso: string): string {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : `${String(d.getHours()).padStart(2, "0")}:${String(d.getMinutes()).padStart(2, "0")}`;
}

/** A dataset's lock, held by this process until `release`. */
export interface OutputLock {
  readonly path: string;
  /** remove the lock file (once; also done when the process exits) */
  release(): void;
}

/** Lock files this process holds, removed at exit if nobody released them. */
const held = new Set<string>();
let hooked = false;

function removeHeld(): void {
  for (const p of held) {
    try {
      unlinkSync(p);
    } catch {
      // gone already
    }
  }
}

/**
 * Take the lock of dataset `path`: `PATH.lock`, holding this process's pid,
 * host and start time. It is made whole in a temporary file and linked into
 * place, so taking it is atomic and nobody reads half a lock. A lock whose
 * process is dead (its pid gone, or reused by a process that started later)
 * is stale: it is moved aside and taken. A live holder is an
 * `OutputLockedError` naming the file and the process; a lock that cannot be
 * written at all is an `OutputWriteError`.
 *
 * @example
 * ```ts
 * const lock = lockOutput("out/x.jsonl", "matrixd run");
 * try { ... } finally { lock.release(); }
 * ```
 */
export function lockOutput(path: string, command: string): OutputLock {
  const lockPath = `${path}.lock`;
  const own = procStart("self") ?? "";
  const info: LockInfo = { pid: process.pid, host: hostname(), started: new Date().toISOString(), procStart: own, command };
  const text = `${JSON.stringify(info)}\n`;
  const tmp = `${lockPath}.${process.pid}.tmp`;
  try {
    const fd = openSync(tmp, "w");
    try {
      writeSync(fd, text);
    } finally {
      closeSync(fd);
    }
  } catch (err) {
    throw cannotLock(path, err);
  }
  try {
    // a few rounds: each either takes the lock, meets a live holder, or clears a stale one
    for (let round = 0; round < 5; round++) {
      try {
        linkSync(tmp, lockPath);
        held.add(lockPath);
        if (!hooked) process.on("exit", removeHeld);
        hooked = true;
        return {
          path: lockPath,
          release() {
            if (!held.delete(lockPath)) return;
            try {
              // only our own: a lock that is not ours any more is left alone
              if (readText(lockPath) === text) unlinkSync(lockPath);
            } catch {
              // a file system gone read-only keeps it: the next run finds it stale
            }
          },
        };
      } catch (err) {
        if (ioReason(err).code !== "EEXIST") throw cannotLock(path, err);
      }
      const other = readText(lockPath);
      if (other === undefined) continue;
      const holder = liveHolder(other);
      if (holder) {
        const where = holder.host === info.host ? "" : ` on ${holder.host}`;
        const stale = holder.host === info.host ? "" : ` (remove ${lockPath} if that run is gone)`;
        throw new OutputLockedError(
          `${path} is being written by ${holder.command} pid ${holder.pid}${where} (started ${hhmm(holder.started)}); wait for it or choose another --out${stale}`,
        );
      }
      clearStale(path, lockPath, other);
    }
    throw new OutputLockedError(`${path}: cannot take ${lockPath}: other processes keep taking and leaving it`);
  } finally {
    try {
      unlinkSync(tmp);
    } catch {
      // never made, or gone
    }
  }
}

/**
 * Move a stale lock aside. Two runs may find the same stale lock at once:
 * the rename lets one of them move it; one that moved a lock taken meanwhile
 * (not the stale text it read) puts it back.
 */
function clearStale(path: string, lockPath: string, staleText: string): void {
  const aside = `${lockPath}.${process.pid}.stale`;
  try {
    renameSync(lockPath, aside);
  } catch (err) {
    if (ioReason(err).code === "ENOENT") return;
    throw cannotLock(path, err);
  }
  const moved = readText(aside);
  if (moved !== staleText) {
    try {
      linkSync(aside, lockPath);
    } catch {
      // a third run took the place: it holds the lock now
    }
  }
  unlinkSync(aside);
}

function cannotLock(path: string, err: unknown): OutputWriteError {
  const { code, words } = ioReason(err);
  return new OutputWriteError(`cannot write ${path}.lock, the lock of ${path}: ${words}`, code, { cause: err });
}
