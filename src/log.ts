import pino, { type Logger } from "pino";

export type { Logger };

/**
 * The root logger: JSON lines on stdout (or stderr), no transport (worker
 * threads break in compiled binaries). Children are made per node, job, role.
 */
export function createLogger(opts: { level?: string; stream?: "stdout" | "stderr"; name?: string } = {}): Logger {
  const level = opts.level ?? process.env.MATRIXD_LOG_LEVEL ?? "info";
  const fd = opts.stream === "stderr" ? 2 : 1;
  return pino({ level, name: opts.name ?? "matrixd", base: { pid: process.pid } }, pino.destination({ fd, sync: false }));
}

/** A logger that drops everything (tests, benchmarks). */
export const silentLogger: Logger = pino({ level: "silent" });
