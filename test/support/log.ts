import pino from "pino";
import { z } from "zod";
import type { Logger } from "../../src/log.ts";

const LineSchema = z.record(z.string(), z.unknown());

/** A logger that keeps its lines (parsed), for a test to look for what the code reported. */
export function capturingLogger(level = "info"): { log: Logger; lines: () => Record<string, unknown>[] } {
  const lines: string[] = [];
  const log = pino({ level }, { write: (s: string) => void lines.push(s) });
  return { log, lines: () => lines.map((l) => LineSchema.parse(JSON.parse(l))) };
}
