/**
 * The dataset file's faults, with real `matrixd run` processes: a second run
 * on the same --out, a lock left by a run killed with kill -9, a full disk
 * (a small tmpfs) and a file system gone read-only mid-run.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { hostname } from "node:os";
import { coralSeeds } from "./support/seeds.ts";
import { matrixdBin, runProcess } from "./support/matrixd.ts";
import { readRows, tempDir, writeLines } from "./support/files.ts";
import { waitFor } from "./support/wait.ts";

const tmp = tempDir();
let bin = "";
const mounts: string[] = [];
beforeAll(async () => {
  bin = await matrixdBin();
  // slow: a run is still writing when the test acts on it
  writeFileSync(tmp.path("slow.yaml"), "concurrency: 32\nsim: { timeScale: 0.1, slots: 16 }\n");
}, 120_000);
afterAll(async () => {
  for (const dir of mounts) await runProcess(["umount", "-l", dir], { timeoutMs: 10_000 });
  tmp.remove();
});

/** Mount a tmpfs of `size` at `dir`; false (with a warning) where mounting is not permitted. */
async function mountTmpfs(dir: string, size: string): Promise<boolean> {
  mkdirSync(dir, { recursive: true });
  const r = await runProcess(["mount", "-t", "tmpfs", "-o", `size=${size}`, "tmpfs", dir], { timeoutMs: 10_000 });
  if (r.code !== 0) {
    console.warn(`skipped: cannot mount a tmpfs (${r.stderr.trim()})`);
    return false;
  }
  mounts.push(dir);
  return true;
}

function rowCount(path: string): number {
  return existsSync(path) ? readFileSync(path, "utf8").split("\n").filter((l) => l.endsWith("}")).length : 0;
}

/** stderr without the periodic progress lines (they start with a timestamp). */
function messages(stderr: string): string[] {
  return stderr.split("\n").filter((l) => l.trim() !== "" && !/^\d{4}-\d\d-\d\dT/.test(l));
}

/** Every task has exactly one row, and the file ends with a whole line. */
function expectExact(path: string, n: number): void {
  const text = readFileSync(path, "utf8");
  expect(text.endsWith("\n")).toBe(true);
  const rows = readRows(path);
  expect(rows.length).toBe(n);
  expect(new Set(rows.map((r) => r.id)).size).toBe(n);
}

function startRun(args: string[]) {
  const proc = Bun.spawn([bin, "run", "--workflow", "coral", "--llm", "sim", ...args], { cwd: tmp.dir, stdout: "pipe", stderr: "pipe" });
  const stderr = new Response(proc.stderr).text();
  void new Response(proc.stdout).text();
  const killer = setTimeout(() => proc.kill(9), 120_000);
  void proc.exited.then(() => clearTimeout(killer));
  return { proc, stderr };
}

describe("dataset faults", () => {
  test("output lock - a second run on the same --out is refused at once, naming the file and the pid; the first completes exactly", async () => {
    const n = 90;
    writeLines(tmp.path("two.jsonl"), coralSeeds(n, "two"));
    const out = "two/x.jsonl";
    const first = startRun(["--seeds", "two.jsonl", "--out", out, "--config", "slow.yaml"]);
    await waitFor("the first run's rows", () => rowCount(tmp.path(out)) > 0 || undefined, 60_000, 50);

    const began = Date.now();
    const second = await runProcess([bin, "run", "--workflow", "coral", "--llm", "sim", "--seeds", "two.jsonl", "--out", out, "--config", "slow.yaml"], {
      cwd: tmp.dir,
      timeoutMs: 30_000,
    });
    expect(second.code).toBe(2);
    expect(Date.now() - began).toBeLessThan(10_000);
    const lines = messages(second.stderr);
    expect(lines.length).toBe(1);
    expect(lines[0]).toMatch(
      new RegExp(`^matrixd run: two/x\\.jsonl is being written by matrixd run pid ${first.proc.pid} \\(started \\d\\d:\\d\\d\\); wait for it or choose another --out$`),
    );
    expect(rowCount(tmp.path(out))).toBeLessThan(n);

    expect(await first.proc.exited).toBe(0);
    expectExact(tmp.path(out), n);
    expect(existsSync(tmp.path(`${out}.lock`))).toBe(false);
  }, 150_000);

  test("output lock - a lock left by a run killed with kill -9 (or naming a reused pid) does not block; the resumed run completes the file exactly", async () => {
    const n = 90;
    writeLines(tmp.path("dead.jsonl"), coralSeeds(n, "dead"));
    const out = "dead/x.jsonl";
    const first = startRun(["--seeds", "dead.jsonl", "--out", out, "--config", "slow.yaml"]);
    await waitFor("the first run's rows", () => rowCount(tmp.path(out)) > 10 || undefined, 60_000, 50);
    first.proc.kill(9);
    await first.proc.exited;
    expect(existsSync(tmp.path(`${out}.lock`))).toBe(true);
    const before = rowCount(tmp.path(out));
    expect(before).toBeLessThan(n);

    const r = await runProcess([bin, "run", "--workflow", "coral", "--llm", "sim", "--seeds", "dead.jsonl", "--out", out], { cwd: tmp.dir, timeoutMs: 60_000 });
    expect(r.code).toBe(0);
    expectExact(tmp.path(out), n);
    expect(existsSync(tmp.path(`${out}.lock`))).toBe(false);

    // a lock naming a live pid that is not its writer (this test's own, started at another time): stale too
    const other = "reused/x.jsonl";
    mkdirSync(tmp.path("reused"));
    writeFileSync(
      tmp.path(`${other}.lock`),
      JSON.stringify({ pid: process.pid, host: hostname(), started: new Date().toISOString(), procStart: "1", command: "matrixd run" }),
    );
    const again = await runProcess([bin, "run", "--workflow", "coral", "--llm", "sim", "--seeds", "dead.jsonl", "--out", other], { cwd: tmp.dir, timeoutMs: 60_000 });
    expect(again.code).toBe(0);
    expectExact(tmp.path(other), n);
  }, 150_000);

  test("output full - a full disk ends the run with one line, exit 1, no stack; the resumed run with space completes the file exactly", async () => {
    if (!(await mountTmpfs(tmp.path("full"), "256k"))) return;
    const n = 400;
    writeLines(tmp.path("full.jsonl"), coralSeeds(n, "full"));
    const r = await runProcess([bin, "run", "--workflow", "coral", "--llm", "sim", "--seeds", "full.jsonl", "--out", "full/x.jsonl"], {
      cwd: tmp.dir,
      timeoutMs: 60_000,
    });
    expect(r.code).toBe(1);
    expect(r.stderr).not.toMatch(/^\s+at /m);
    expect(r.stderr).not.toContain("Bun v");
    const lines = messages(r.stderr);
    expect(lines.length).toBe(1);
    const m = /^matrixd run: cannot write full\/x\.jsonl: no space left on device after ([\d,]+) rows; free space and run again to resume$/.exec(lines[0] ?? "");
    expect(m).not.toBeNull();
    const kept = Number(m?.[1]?.replaceAll(",", ""));
    expect(kept).toBeGreaterThan(0);
    expect(kept).toBeLessThan(n);
    // the file holds exactly the rows it says, each whole
    const text = readFileSync(tmp.path("full/x.jsonl"), "utf8");
    expect(text.endsWith("\n")).toBe(true);
    expect(readRows(tmp.path("full/x.jsonl")).length).toBe(kept);
    expect(existsSync(tmp.path("full/x.jsonl.lock"))).toBe(false);

    mkdirSync(tmp.path("roomy"));
    copyFileSync(tmp.path("full/x.jsonl"), tmp.path("roomy/x.jsonl"));
    const resumed = await runProcess([bin, "run", "--workflow", "coral", "--llm", "sim", "--seeds", "full.jsonl", "--out", "roomy/x.jsonl"], {
      cwd: tmp.dir,
      timeoutMs: 60_000,
    });
    expect(resumed.code).toBe(0);
    expect(resumed.stdout).toContain(`${kept} resumed`);
    expectExact(tmp.path("roomy/x.jsonl"), n);
  }, 150_000);

  test("output unwritable - a dataset on a read-only file system, or under /proc: one line naming it; writable again, the run resumes exactly", async () => {
    const dir = tmp.path("ro");
    if (!(await mountTmpfs(dir, "16m"))) return;
    const n = 200;
    writeLines(tmp.path("ro.jsonl"), coralSeeds(n, "ro"));
    // a first run leaves part of the dataset (kill -9), then the file system turns read-only
    const run = startRun(["--seeds", "ro.jsonl", "--out", "ro/x.jsonl", "--config", "slow.yaml"]);
    await waitFor("the first rows", () => rowCount(tmp.path("ro/x.jsonl")) > 10 || undefined, 60_000, 50);
    run.proc.kill(9);
    await run.proc.exited;
    const ro = await runProcess(["mount", "-o", "remount,ro", dir], { timeoutMs: 10_000 });
    expect(ro.stderr).toBe("");

    for (const out of ["ro/x.jsonl", "/proc/x.jsonl"]) {
      const r = await runProcess([bin, "run", "--workflow", "coral", "--llm", "sim", "--seeds", "ro.jsonl", "--out", out], { cwd: tmp.dir, timeoutMs: 30_000 });
      expect(r.code).not.toBe(0);
      expect(r.stderr).not.toMatch(/^\s+at /m);
      const lines = messages(r.stderr);
      expect(lines).toEqual([lines[0] ?? ""]);
      expect(lines[0]).toStartWith("matrixd run: ");
      expect(lines[0]).toContain(out);
    }

    // the lock the read-only file system kept is stale: the resumed run goes on and completes the file
    expect((await runProcess(["mount", "-o", "remount,rw", dir], { timeoutMs: 10_000 })).code).toBe(0);
    const resumed = await runProcess([bin, "run", "--workflow", "coral", "--llm", "sim", "--seeds", "ro.jsonl", "--out", "ro/x.jsonl"], { cwd: tmp.dir, timeoutMs: 60_000 });
    expect(resumed.code).toBe(0);
    expectExact(tmp.path("ro/x.jsonl"), n);
  }, 150_000);
});
