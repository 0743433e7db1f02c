import { openSync } from "node:fs";
import pino, { type Logger } from "pino";
import { describe, UsageError } from "./errors.ts";

export type { Logger };

/**
 * A terminal's stream with one live line at its foot (a progress line):
 * text written while the line is shown goes above it (the line is cleared,
 * the text written, the line drawn again), so nothing tears it.
 */
export class LiveLine {
  #line = "";

  constructor(private readonly out: { write(text: string): unknown; columns?: number } = process.stderr) {}

  /** Show `line` as the live line, cut to the terminal's width (a wrapped line could not be cleared whole). */
  show(line: string): void {
    const width = this.out.columns && this.out.columns > 1 ? this.out.columns - 1 : Number.POSITIVE_INFINITY;
    this.#line = line.length > width ? `${line.slice(0, width - 1)}…` : line;
    this.out.write(`\r\x1b[K${this.#line}`);
  }

  /** Write `text` (whole lines) above the live line. */
  write(text: string): void {
    if (!this.#line) {
      this.out.write(text);
      return;
    }
    this.out.write(`\r\x1b[K${text}${text.endsWith("\n") ? "" : "\n"}${this.#line}`);
  }

  /** Take the live line away. */
  clear(): void {
    if (this.#line) this.out.write("\r\x1b[K");
    this.#line = "";
  }
}

export interface LoggerOptions {
  level?: string;
  stream?: "stdout" | "stderr";
  name?: string;
  /** write the JSON lines to this file (appended) instead of the stream */
  file?: string;
  /** the stream has a live line: write the JSON lines above it */
  live?: LiveLine;
}

/**
 * The root logger: JSON lines on stdout (or stderr, or a file), no
 * transport (worker threads break in compiled binaries). Children are made
 * per node, job, role.
 */
export function createLogger(opts: LoggerOptions = {}): Logger {
  const level = opts.level ?? process.env.MATRIXD_LOG_LEVEL ?? "info";
  const options = { level, name: opts.name ?? "matrixd", base: { pid: process.pid } };
  if (opts.file !== undefined) {
    let fd: number;
    try {
      fd = openSync(opts.file, "a");
    } catch (err) {
      throw new UsageError(`--log-file ${opts.file}: cannot open it (${describe(err)})`);
    }
    return pino(options, pino.destination({ fd, sync: false }));
  }
  const live = opts.live;
  if (live) return pino(options, { write: (line: string) => live.write(line) });
  const fd = opts.stream === "stderr" ? 2 : 1;
  return pino(options, pino.destination({ fd, sync: false }));
}

/** A logger that drops everything (tests, benchmarks). */
export const silentLogger: Logger = pino({ level: "silent" });
