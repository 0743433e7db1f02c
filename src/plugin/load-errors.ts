import { readFileSync } from "node:fs";
import { dirname } from "node:path";
import { describe } from "../errors.ts";
import { isRecord } from "../util/record.ts";

/**
 * What Bun says when a plugin file cannot be loaded, as lines a user can
 * act on: each build error (a syntax error, an import that resolves to
 * nothing) with its file:line:column and its message.
 */

/** The most errors shown for one file; the rest are counted. */
const MAX_SHOWN = 20;

/** Bun's location of a build message: 1-based line and column. */
interface Position {
  file: string;
  line: number;
  column: number;
}

function positionOf(v: unknown): Position | undefined {
  if (!isRecord(v)) return undefined;
  const { file, line, column } = v;
  return typeof file === "string" && typeof line === "number" && typeof column === "number" ? { file, line, column } : undefined;
}

function at(p: Position | undefined, text: string): string {
  return p ? `${p.file}:${p.line}:${p.column}: ${text}` : text;
}

/** Where `specifier` is imported in the file `referrer` (its first quoted mention), when the file can be read. */
function importPosition(referrer: string, specifier: string): Position | undefined {
  let text: string;
  try {
    text = readFileSync(referrer, "utf8");
  } catch {
    return undefined;
  }
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i] as string;
    for (const q of ['"', "'", "`"]) {
      const col = line.indexOf(`${q}${specifier}${q}`);
      if (col >= 0) return { file: referrer, line: i + 1, column: col + 1 };
    }
  }
  return undefined;
}

/** True for an import of a package (not a path or a URL). */
function isBare(specifier: string): boolean {
  return !/^(\.{0,2}\/|[a-z][a-z0-9+.-]*:)/i.test(specifier);
}

/** One import that resolves to nothing: where, what, and for a package what a plugin can do instead. */
function resolveLine(specifier: string, referrer: string, position: Position | undefined): string {
  const where = position ?? importPosition(referrer, specifier);
  if (!isBare(specifier)) return at(where, `cannot resolve "${specifier}" from ${referrer}: no such file`);
  return at(
    where,
    `cannot resolve "${specifier}" from ${referrer}: no node_modules folder at or above ${dirname(referrer)} has it. ` +
      'A plugin file gets zod as "zod" wherever it lives, and the factory form export default (api) => ... gets api.z (zod), api.defineWorkflow and api.llmRole',
  );
}

/** One of Bun's build or resolve messages as a line; undefined for anything else. */
function messageLine(m: unknown): string | undefined {
  if (!isRecord(m) || typeof m.message !== "string") return undefined;
  if (m.name === "ResolveMessage" && typeof m.specifier === "string" && typeof m.referrer === "string") {
    return resolveLine(m.specifier, m.referrer, positionOf(m.position));
  }
  if (m.name === "BuildMessage") return at(positionOf(m.position), m.message);
  return undefined;
}

/** An error thrown while the file's top level ran: its message, at the first frame in `file` when the stack has one. */
function thrownLine(err: unknown, file: string): string {
  const text = describe(err);
  const stack = err instanceof Error && typeof err.stack === "string" ? err.stack : "";
  for (const frame of stack.split("\n")) {
    const m = /\(?(\/[^():]+):(\d+):(\d+)\)?\s*$/.exec(frame.trim());
    if (m && m[1] === file) return at({ file, line: Number(m[2]), column: Number(m[3]) }, text);
  }
  return text;
}

/**
 * Why importing the plugin file `file` (an absolute path) failed: one line
 * for a single error, else a count and one indented line per error.
 */
export function loadErrorText(err: unknown, file: string): string {
  const errors = err instanceof AggregateError ? err.errors : [err];
  const lines = errors.map((e) => messageLine(e) ?? thrownLine(e, file));
  if (lines.length === 1) return lines[0] as string;
  const shown = lines.slice(0, MAX_SHOWN).map((l) => `\n  ${l}`);
  const more = lines.length > MAX_SHOWN ? `\n  ... and ${lines.length - MAX_SHOWN} more` : "";
  return `${lines.length} errors building it:${shown.join("")}${more}`;
}
