import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** A temporary folder removed by the returned function. */
export function tempDir(prefix = "matrixd-test-"): { dir: string; path: (name: string) => string; remove: () => void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, path: (name) => join(dir, name), remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Write rows as NDJSON (a string row is written as it is). */
export function writeLines(path: string, rows: readonly unknown[]): void {
  writeFileSync(path, rows.map((r) => (typeof r === "string" ? r : JSON.stringify(r))).join("\n") + "\n");
}

/** The rows of an NDJSON file. */
// biome-ignore lint/suspicious/noExplicitAny: rows read back from files are checked by each test
export function readRows(path: string): any[] {
  return readFileSync(path, "utf8")
    .split("\n")
    .filter((l) => l.length > 0)
    .map((l) => JSON.parse(l));
}
