import { closeSync, existsSync, fsyncSync, openSync, readSync, statSync, truncateSync, writeSync } from "node:fs";
import { CodecError } from "../errors.ts";
import type { Logger } from "../log.ts";
import { formatIssues } from "../util/issues.ts";
import { type OutputRow, type OutputRowHead, OutputRowHeadSchema } from "../protocol/task.ts";

/** What an existing output file already holds, found when it is opened for resume. */
export interface Resumed {
  /** ids of the tasks whose rows are in the file */
  done: Set<string>;
  rows: number;
  /** bytes of a torn last line that were cut off, 0 when none */
  tornBytes: number;
}

/**
 * Scan an output file: collect the ids of complete rows and cut off a torn
 * last line (a crash in the middle of a write). A bad line anywhere else is an
 * error: the file is not one matrixd wrote.
 */
export function scanOutput(path: string, onRow?: (row: OutputRowHead) => void): Resumed {
  const done = new Set<string>();
  if (!existsSync(path)) return { done, rows: 0, tornBytes: 0 };
  const size = statSync(path).size;
  const fd = openSync(path, "r");
  const buf = Buffer.allocUnsafe(1 << 20);
  let pending = Buffer.alloc(0);
  let offset = 0; // bytes of the file consumed into complete lines
  let lineNo = 0;
  let badLine: { no: number; start: number; reason: string } | undefined;
  try {
    for (;;) {
      const n = readSync(fd, buf, 0, buf.length, null);
      if (n === 0) break;
      let chunk = pending.length ? Buffer.concat([pending, buf.subarray(0, n)]) : buf.subarray(0, n);
      let start = 0;
      let nl = chunk.indexOf(10, start);
      while (nl !== -1) {
        lineNo++;
        if (badLine) throw new CodecError(`output file ${path}: line ${badLine.no} is not a row (${badLine.reason})`);
        const text = chunk.toString("utf8", start, nl);
        if (text.length > 0) {
          const reason = addRow(text, done, onRow);
          if (reason) badLine = { no: lineNo, start: offset, reason };
        }
        offset += nl + 1 - start;
        start = nl + 1;
        nl = chunk.indexOf(10, start);
      }
      chunk = chunk.subarray(start);
      pending = Buffer.from(chunk);
    }
  } finally {
    closeSync(fd);
  }
  let keep = offset;
  if (badLine) {
    // The last complete line is bad: a torn write that happened to end in a newline is not possible,
    // but a half-written row followed by a later run's rows is; only the very last line may be cut.
    keep = badLine.start;
  }
  const tornBytes = size - keep;
  if (tornBytes > 0) truncateSync(path, keep);
  return { done, rows: done.size, tornBytes };
}

function addRow(text: string, done: Set<string>, onRow?: (row: OutputRowHead) => void): string | undefined {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    return (err as Error).message;
  }
  const parsed = OutputRowHeadSchema.safeParse(raw);
  if (!parsed.success) return formatIssues(parsed.error);
  done.add(parsed.data.id);
  onRow?.(parsed.data);
  return undefined;
}

/**
 * Appends dataset rows to a JSONL file. Rows are buffered and written in
 * large appends; `flush` makes them durable. A crash loses only rows not yet
 * flushed, and resume re-runs exactly those tasks.
 */
export class JsonlSink {
  #fd: number;
  #buf: string[] = [];
  #bytes = 0;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #closed = false;
  rows = 0;

  constructor(
    readonly path: string,
    private readonly log?: Logger,
    private readonly flushBytes = 1 << 20,
    private readonly flushMs = 200,
  ) {
    this.#fd = openSync(path, "a");
  }

  write(row: OutputRow): void {
    this.writeLine(`${JSON.stringify(row)}\n`);
  }

  /** Append a row already encoded (one JSON line, with its newline). */
  writeLine(line: string): void {
    if (this.#closed) throw new Error(`output ${this.path} is closed`);
    this.#buf.push(line);
    this.#bytes += line.length;
    this.rows++;
    if (this.#bytes >= this.flushBytes) this.flush();
    else this.#timer ??= setTimeout(() => this.flush(), this.flushMs);
  }

  /** Write buffered rows to the file (one write call). */
  flush(): void {
    if (this.#timer) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
    }
    if (this.#buf.length === 0) return;
    const data = Buffer.from(this.#buf.join(""));
    this.#buf = [];
    this.#bytes = 0;
    let off = 0;
    while (off < data.length) off += writeSync(this.#fd, data, off);
  }

  close(): void {
    if (this.#closed) return;
    this.flush();
    try {
      fsyncSync(this.#fd);
    } catch (err) {
      this.log?.warn({ err: String(err) }, "fsync of output failed");
    }
    closeSync(this.#fd);
    this.#closed = true;
  }
}
