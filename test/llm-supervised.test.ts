/**
 * `matrixd run` as a process with its LLM services: a supervised sim-llm
 * killed mid-job, budgets and prices in the summary.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, statSync, writeFileSync } from "node:fs";
import { coralSeeds } from "./support/seeds.ts";
import { readRows, tempDir, writeLines } from "./support/files.ts";
import { pidsWith, serverPids } from "./support/procs.ts";
import { waitFor } from "./support/wait.ts";
import { MATRIXD } from "./support/matrixd.ts";
import { startSims } from "./support/sim-llm.ts";

const tmp = tempDir();
afterAll(() => tmp.remove());

async function run(args: string[], timeoutMs = 100_000): Promise<{ code: number; stdout: string; stderr: string }> {
  const proc = Bun.spawn([...MATRIXD, "run", ...args], { cwd: tmp.dir, stdout: "pipe", stderr: "pipe" });
  const timer = setTimeout(() => proc.kill(9), timeoutMs);
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  clearTimeout(timer);
  return { code, stdout, stderr };
}

describe("llm services in matrixd run", () => {
  test("llm services - a supervised server killed mid-job: requests wait for its restart, no retries spent, every row ok", async () => {
    writeLines(tmp.path("k.jsonl"), coralSeeds(120, "k"));
    // no retries at all: only waiting through the restart can save the requests in flight
    writeFileSync(tmp.path("k.yaml"), "concurrency: 64\nllm:\n  retries: 0\n");
    const marker = `kill-${process.pid}`;
    const sup = `${marker}=${MATRIXD.join(" ")} sim-llm --port {port} --model ${marker} --slots 16 --decode-tps 6000`;
    const proc = Bun.spawn([...MATRIXD, "run", "--workflow", "coral", "--seeds", "k.jsonl", "--out", "k.out", "--config", "k.yaml", "--log-level", "info", "--supervise", sup], {
      cwd: tmp.dir,
      stdout: "pipe",
      stderr: "pipe",
    });
    const output = Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
    await waitFor("the first rows", () => (existsSync(tmp.path("k.out")) && statSync(tmp.path("k.out")).size > 0) || undefined, 60_000);
    const [victim] = serverPids(marker);
    expect(victim).toBeGreaterThan(0);
    process.kill(victim as number, "SIGKILL");
    const timer = setTimeout(() => proc.kill(9), 100_000);
    const code = await proc.exited;
    clearTimeout(timer);
    const [, stderr] = await output;
    expect(code).toBe(0);
    const rows = readRows(tmp.path("k.out"));
    expect(rows.length).toBe(120);
    expect(rows.filter((r) => r.status !== "ok").map((r) => r.error)).toEqual([]);
    expect(stderr).toContain("restarting the LLM server");
    expect(stderr).toContain("LLM endpoint back");
    expect(pidsWith(marker)).toEqual([]);
  }, 120_000);

  test("llm services - a token budget stops the job: exit 1 with a one-line reason, summary says so", async () => {
      const sim = await startSims(["--slots", "32", "--decode-tps", "40000"]);
      try {
        writeLines(tmp.path("b.jsonl"), coralSeeds(500, "b"));
        writeFileSync(
          tmp.path("b.yaml"),
          `concurrency: 16\nbudget:\n  tokens: 20000\nprices:\n  sim-llm: { prompt: 0.5, completion: 1.5 }\n`,
        );
        const r = await run(["--workflow", "coral", "--seeds", "b.jsonl", "--out", "b.out", "--config", "b.yaml", "--llm", sim.urls[0] as string]);
        expect(r.code).toBe(1);
        const reason = r.stderr.split("\n").filter((l) => l.startsWith("matrixd run: budget reached"));
        expect(reason.length).toBe(1);
        expect(reason[0]).toMatch(/^matrixd run: budget reached: [\d,]+ tokens of 20,000; no new tasks were admitted/);
        expect(r.stdout).toMatch(/\(budget reached: [\d,]+ tokens of 20,000\)/);
        expect(r.stdout).toMatch(/role teacher: [\d,]+ requests, prompt [\d,]+, completion [\d,]+ tokens, \$\d+\.\d{4}/);
        expect(r.stdout).toMatch(/model sim-llm: [\d,]+ requests/);
        expect(r.stdout).toMatch(/cost \$\d+\.\d{4}/);
        const rows = readRows(tmp.path("b.out"));
        expect(rows.length).toBeLessThan(500);
        expect(rows.every((x) => x.status === "ok")).toBe(true);
      } finally {
        await sim.stop();
      }
    }, 60_000);

  test("llm services - a bad budget is a config error naming the key", async () => {
    writeLines(tmp.path("x.jsonl"), coralSeeds(2, "x"));
    writeFileSync(tmp.path("x.yaml"), "budget:\n  tokens: -5\n");
    const r = await run(["--workflow", "coral", "--seeds", "x.jsonl", "--out", "x.out", "--config", "x.yaml", "--llm", "sim"], 30_000);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('"budget.tokens"');
  }, 40_000);
});
