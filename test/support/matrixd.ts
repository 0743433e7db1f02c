import { existsSync, readdirSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { readRows, writeLines } from "./files.ts";

export const ROOT = join(import.meta.dir, "../..");
export const BUN = join(ROOT, "node_modules/.bin/bun");
/** `matrixd` from its sources, run by bun (no build needed). */
export const MATRIXD = [BUN, join(ROOT, "cmd/matrixd.ts")];

/** The newest modification time of the files the binary is built from (the Makefile's SOURCES). */
function sourcesMtime(): number {
  let newest = statSync(join(ROOT, "package.json")).mtimeMs;
  for (const dir of ["cmd", "src", "plugins"]) {
    for (const name of readdirSync(join(ROOT, dir), { recursive: true, encoding: "utf8" })) {
      if (/\.(ts|js|css)$/.test(name)) newest = Math.max(newest, statSync(join(ROOT, dir, name)).mtimeMs);
    }
  }
  return newest;
}

let built: Promise<string> | undefined;

/**
 * The compiled binary, dist/matrixd (`make test` builds it before the suite).
 * When it is missing or older than the sources, bun compiles it once per test
 * process, as `make build` does but without installing packages.
 */
export function matrixdBin(): Promise<string> {
  built ??= (async () => {
    const bin = join(ROOT, "dist/matrixd");
    if (existsSync(bin) && statSync(bin).mtimeMs >= sourcesMtime()) return bin;
    const proc = Bun.spawn([BUN, "build", "--compile", "--minify", "--sourcemap", "cmd/matrixd.ts", "--outfile", "dist/matrixd"], {
      cwd: ROOT,
      stdout: "pipe",
      stderr: "pipe",
    });
    if ((await proc.exited) !== 0) throw new Error(`bun build of dist/matrixd failed: ${await new Response(proc.stderr).text()}`);
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

/**
 * The dataset `matrixd run` (the compiled binary, the in-process sim) makes
 * of coral `seeds` with `config`, written in `dir`: the reference a cluster's
 * dataset for the same seeds and settings must equal.
 */
// biome-ignore lint/suspicious/noExplicitAny: rows read back
export async function referenceRun(dir: string, seeds: readonly unknown[], config: Record<string, unknown>, timeoutMs: number): Promise<any[]> {
  const bin = await matrixdBin();
  writeLines(join(dir, "seeds.jsonl"), seeds);
  writeFileSync(join(dir, "run.json"), JSON.stringify(config));
  const out = join(dir, "run.jsonl");
  const r = await runProcess([bin, "run", "--workflow", "coral", "--seeds", join(dir, "seeds.jsonl"), "--out", out, "--llm", "sim", "--config", join(dir, "run.json")], { timeoutMs });
  if (r.code !== 0) throw new Error(`matrixd run failed: ${r.stderr}`);
  return readRows(out);
}
