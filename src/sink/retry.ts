import { closeSync, existsSync, fsyncSync, openSync, readSync, renameSync, rmSync, writeSync } from "node:fs";
import { dirname } from "node:path";
import { isRecord } from "../util/record.ts";

/** What dropping an output's failed rows did. */
export interface Dropped {
  /** ids of the tasks whose failed rows were taken out (their tasks run again) */
  ids: Set<string>;
  /** rows kept, byte for byte */
  kept: number;
}

/**
 * Take the failed rows out of an output file, so that a run resuming it runs
 * their tasks again and appends their new rows: the dataset keeps one row per
 * task. The other lines are copied byte for byte into a new file beside it,
 * which is synced and renamed over the old one, so that a crash leaves either
 * file whole. A last line that is not a complete row (a torn write) is kept
 * as it is, for the resume's own scan to cut.
 *
 * @example
 * ```ts
 * const { ids } = dropFailedRows("out/coral.jsonl");
 * console.log(`${ids.size} failed tasks to run again`);
 * ```
 */
export function dropFailedRows(path: string): Dropped {
  const ids = new Set<string>();
  if (!existsSync(path)) return { ids, kept: 0 };
  const tmp = `${path}.retry-${process.pid}`;
  const src = openSync(path, "r");
  let dst: number | undefined;
  let kept = 0;
  try {
    dst = openSync(tmp, "w");
    const buf = Buffer.allocUnsafe(1 << 20);
    let pending: Buffer = Buffer.alloc(0);
    const out = (b: Buffer) => {
      let off = 0;
      while (off < b.length) off += writeSync(dst as number, b, off);
    };
    for (;;) {
      const n = readSync(src, buf, 0, buf.length, null);
      if (n === 0) break;
      const chunk = pending.length ? Buffer.concat([pending, buf.subarray(0, n)]) : buf.subarray(0, n);
      let start = 0;
      for (let nl = chunk.indexOf(10, start); nl !== -1; nl = chunk.indexOf(10, start)) {
        const line = chunk.subarray(start, nl + 1);
        const failed = failedId(line);
        if (failed === undefined) {
          out(line);
          if (nl > start) kept++;
        } else ids.add(failed);
        start = nl + 1;
      }
      pending = Buffer.from(chunk.subarray(start));
    }
    if (pending.length > 0) out(pending);
    fsyncSync(dst);
  } catch (err) {
    if (dst !== undefined) closeSync(dst);
    dst = undefined;
    rmSync(tmp, { force: true });
    throw err;
  } finally {
    closeSync(src);
    if (dst !== undefined) closeSync(dst);
  }
  if (ids.size === 0) {
    rmSync(tmp, { force: true });
    return { ids, kept };
  }
  renameSync(tmp, path);
  syncDir(dirname(path));
  return { ids, kept };
}

/** The task id of a line that is a failed row, else undefined. */
function failedId(line: Buffer): string | undefined {
  // most rows are ok: look for the status before parsing the whole line
  if (line.indexOf('"status":"failed"') === -1) return undefined;
  let row: unknown;
  try {
    row = JSON.parse(line.toString("utf8"));
  } catch {
    return undefined;
  }
  return isRecord(row) && row.status === "failed" && typeof row.id === "string" ? row.id : undefined;
}

/** Make a rename durable: sync the folder that holds it (where the system allows). */
function syncDir(dir: string): void {
  try {
    const fd = openSync(dir, "r");
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  } catch {
    // some systems cannot sync a folder; the rename is still atomic
  }
}
