import { closeSync, existsSync, fstatSync, fsyncSync, ftruncateSync, openSync, readSync, statSync, truncateSync, writeSync } from "node:fs";
import { CodecError } from "../errors.ts";
import type { Logger } from "../log.ts";
import { formatIssues } from "../util/issues.ts";
import { ioReason, ioRemedy, OutputWriteError } from "./errors.ts";
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
 *
 * A write that fails (a full disk, a file system gone read-only) never
 * throws from `write` or a timer: the file is cut back to its last whole
 * row, later rows are dropped, and `error` (and `broken`) say what happened,
 * so the run can stop with one line and a later run resume after that row.
 */
export class JsonlSink {
  #fd: number;
  #buf: string[] = [];
  #bytes = 0;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #closed = false;
  /** bytes of whole rows in the file */
  #size: number;
  /** whole rows in the file, earlier runs' included */
  #whole: number;
  #error: OutputWriteError | undefined;
  #broke: ((err: OutputWriteError) => void) | undefined;
  /** resolves with the error once a write fails (never, while they succeed) */
  readonly broken: Promise<OutputWriteError>;
  /** rows given to `write` */
  rows = 0;
  readonly #flushBytes: number;
  readonly #flushMs: number;

  constructor(
    readonly path: string,
    private readonly log?: Logger,
    opts: { rowsBefore?: number; flushBytes?: number; flushMs?: number } = {},
  ) {
    this.#flushBytes = opts.flushBytes ?? 1 << 20;
    this.#flushMs = opts.flushMs ?? 200;
    this.#whole = opts.rowsBefore ?? 0;
    this.broken = new Promise((resolve) => {
      this.#broke = resolve;
    });
    try {
      this.#fd = openSync(path, "a");
    } catch (err) {
      throw this.#failure(err);
    }
    this.#size = fstatSync(this.#fd).size;
  }

  /** The write error that stopped the sink, if one did. */
  get error(): OutputWriteError | undefined {
    return this.#error;
  }

  write(row: OutputRow): void {
    this.writeLine(`${JSON.stringify(row)}\n`);
  }

  /** Append a row already encoded (one JSON line, with its newline). */
  writeLine(line: string): void {
    if (this.#error) return;
    if (this.#closed) throw new Error(`output ${this.path} is closed`);
    this.#buf.push(line);
    this.#bytes += line.length;
    this.rows++;
    if (this.#bytes >= this.#flushBytes) this.flush();
    else this.#timer ??= setTimeout(() => this.flush(), this.#flushMs);
  }

  /** Write buffered rows to the file (one write call). */
  flush(): void {
    if (this.#timer) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
    }
    if (this.#buf.length === 0 || this.#error) return;
    const data = Buffer.from(this.#buf.join(""));
    const lines = this.#buf.length;
    this.#buf = [];
    this.#bytes = 0;
    let off = 0;
    try {
      while (off < data.length) off += writeSync(this.#fd, data, off);
    } catch (err) {
      this.#fail(err, data.subarray(0, off));
      return;
    }
    this.#size += data.length;
    this.#whole += lines;
  }

  /**
   * Keep the whole rows of a part-written batch and cut the torn one off
   * (cutting frees space, so it works on a full disk; where it cannot, resume
   * drops the torn line), then stop.
   */
  #fail(err: unknown, written: Buffer): void {
    const end = written.lastIndexOf(10) + 1;
    let rows = 0;
    for (let i = written.indexOf(10); i !== -1 && i < end; i = written.indexOf(10, i + 1)) rows++;
    this.#size += end;
    this.#whole += rows;
    try {
      ftruncateSync(this.#fd, this.#size);
    } catch {
      // a read-only file system: the next run's resume cuts it
    }
    this.#failure(err);
  }

  #failure(err: unknown): OutputWriteError {
    if (this.#error) return this.#error;
    const { code, words } = ioReason(err);
    this.#error = new OutputWriteError(
      `cannot write ${this.path}: ${words} after ${this.#whole.toLocaleString("en-US")} rows; ${ioRemedy(code)} and run again to resume`,
      code,
      { cause: err },
    );
    this.#buf = [];
    this.#bytes = 0;
    this.#broke?.(this.#error);
    return this.#error;
  }

  close(): void {
    if (this.#closed) return;
    this.flush();
    if (!this.#error) {
      try {
        fsyncSync(this.#fd);
      } catch (err) {
        // a file that cannot be synced (a pipe, /dev/stdout) is fine; anything else lost rows
        if (ioReason(err).code === "EINVAL") this.log?.debug({ err: String(err) }, "fsync of output not supported");
        else this.#failure(err);
      }
    }
    try {
      closeSync(this.#fd);
    } catch (err) {
      this.#failure(err);
    }
    this.#closed = true;
  }
}
