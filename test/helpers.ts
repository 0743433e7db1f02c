import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** A temporary folder removed by the returned function. */
export function tempDir(prefix = "matrixd-test-"): { dir: string; path: (name: string) => string; remove: () => void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, path: (name) => join(dir, name), remove: () => rmSync(dir, { recursive: true, force: true }) };
}

export function writeLines(path: string, rows: readonly unknown[]): void {
  writeFileSync(path, rows.map((r) => (typeof r === "string" ? r : JSON.stringify(r))).join("\n") + "\n");
}

// biome-ignore lint/suspicious/noExplicitAny: rows read back from files are checked by each test
export function readRows(path: string): any[] {
  return readFileSync(path, "utf8")
    .split("\n")
    .filter((l) => l.length > 0)
    .map((l) => JSON.parse(l));
}

/** Coral-shaped seeds: `n` arithmetic questions. */
export function coralSeeds(n: number, prefix = "q"): Record<string, unknown>[] {
  return Array.from({ length: n }, (_, i) => ({
    id: `${prefix}${i}`,
    question: `What is ${i} + ${i + 1}?`,
    options: [String(2 * i + 1), String(2 * i + 2), String(2 * i)],
    answer: "A",
  }));
}

export const ROOT = join(import.meta.dir, "..");
export const BUN = join(ROOT, "node_modules/.bin/bun");
