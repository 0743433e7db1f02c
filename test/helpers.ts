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

let built: Promise<string> | undefined;

/**
 * The compiled binary, dist/matrixd, built once per test process when it is
 * missing or older than the sources (`make test` builds it first).
 */
export function matrixdBin(): Promise<string> {
  built ??= (async () => {
    const bin = join(ROOT, "dist/matrixd");
    const proc = Bun.spawn(["make", "-s", "build"], { cwd: ROOT, stdout: "pipe", stderr: "pipe" });
    if ((await proc.exited) !== 0) throw new Error(`make build failed: ${await new Response(proc.stderr).text()}`);
    return bin;
  })();
  return built;
}

/** Run a command to completion; its exit code and output. */
export async function runProcess(
  cmd: string[],
  opts: { cwd?: string; timeoutMs?: number; env?: Record<string, string> } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const proc = Bun.spawn(cmd, {
    cwd: opts.cwd ?? ROOT,
    stdout: "pipe",
    stderr: "pipe",
    env: { ...process.env, ...opts.env },
  });
  const timer = setTimeout(() => proc.kill(9), opts.timeoutMs ?? 60_000);
  const [stdout, stderr, code] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  clearTimeout(timer);
  return { code, stdout, stderr };
}

/** Poll `check` until it returns a value, or fail after `ms`. */
export async function waitFor<T>(what: string, check: () => T | undefined | Promise<T | undefined>, ms = 30_000, every = 50): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await check();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await Bun.sleep(every);
  }
}
