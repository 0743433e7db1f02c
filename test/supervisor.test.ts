import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { coralSeeds } from "./support/seeds.ts";
import { matrixdBin, runProcess } from "./support/matrixd.ts";
import { readRows, tempDir, writeLines } from "./support/files.ts";
import { pidsWith } from "./support/procs.ts";
import { waitFor } from "./support/wait.ts";

const tmp = tempDir();
let bin = "";
beforeAll(async () => {
  bin = await matrixdBin();
}, 120_000);
afterAll(() => tmp.remove());

describe("supervisor", () => {
  test("supervisor - a server that dies mid-job is restarted and no task fails", async () => {
    writeLines(tmp.path("s.jsonl"), coralSeeds(300, "s"));
    writeFileSync(tmp.path("c.yaml"), "concurrency: 64\nllm:\n  retries: 12\n  backoffMs: 100\n  maxBackoffMs: 1000\n");
    const marker = `die-${process.pid}`;
    const r = await runProcess(
      [bin, "run", "--workflow", "coral", "--seeds", "s.jsonl", "--out", "s.out", "--config", "c.yaml", "--log-level", "info",
        "--supervise", `${marker}=${bin} sim-llm --port {port} --model ${marker} --slots 32 --time-scale 0.02 --die-after 2`],
      { cwd: tmp.dir, timeoutMs: 110_000 },
    );
    expect(r.code).toBe(0);
    const rows = readRows(tmp.path("s.out"));
    expect(rows.length).toBe(300);
    expect(rows.filter((x) => x.status !== "ok").map((x) => x.error)).toEqual([]);
    const restarts = r.stderr.split("\n").filter((l) => l.includes("restarting the LLM server")).length;
    expect(restarts).toBeGreaterThanOrEqual(1);
    expect(r.stderr).toContain("the LLM server is ready");
    expect(pidsWith(marker)).toEqual([]);
  }, 120_000);

  test("supervisor - no server outlives matrixd killed with kill -9", async () => {
    writeLines(tmp.path("k.jsonl"), coralSeeds(2000, "k"));
    const marker = `orphan-${process.pid}`;
    const proc = Bun.spawn(
      [bin, "run", "--workflow", "coral", "--seeds", "k.jsonl", "--out", "k.out", "--concurrency", "32",
        "--supervise", `${bin} sim-llm --port {port} --model ${marker} --slots 8 --time-scale 0.5`],
      { cwd: tmp.dir, stdout: "ignore", stderr: "ignore" },
    );
    // matrixd, the guard and the server all carry the marker on their command lines.
    const servers = () =>
      pidsWith(marker).filter((pid) => {
        const cmd = readFileSync(`/proc/${pid}/cmdline`, "utf8");
        return !cmd.includes("--supervise") && !cmd.includes("__guard");
      });
    await waitFor("the supervised server to start", () => servers().length >= 1 || undefined, 30_000);
    await waitFor("the first rows", () => (existsSync(tmp.path("k.out")) && statSync(tmp.path("k.out")).size > 0) || undefined, 60_000);
    expect(pidsWith(marker).length).toBeGreaterThanOrEqual(3);
    proc.kill(9);
    await proc.exited;
    await waitFor("the supervised server to go away", () => pidsWith(marker).length === 0 || undefined, 20_000, 100);
    expect(pidsWith(marker)).toEqual([]);
  }, 90_000);

  test("supervisor - a server that never gets healthy fails the start with a clear error", async () => {
    writeLines(tmp.path("n.jsonl"), coralSeeds(3, "n"));
    writeFileSync(tmp.path("n.yaml"), "supervise:\n  - command: 'sleep 30 # {port}'\n    startTimeoutMs: 1500\n    graceMs: 500\n");
    const r = await runProcess([bin, "run", "--workflow", "coral", "--seeds", "n.jsonl", "--out", "n.out", "--config", "n.yaml"], { cwd: tmp.dir, timeoutMs: 30_000 });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/not healthy within 1500 ms of starting/);
    expect(pidsWith("sleep 30 # ")).toEqual([]);
  }, 40_000);

  test("supervisor - a command without {port} is a config error", async () => {
    writeLines(tmp.path("p.jsonl"), coralSeeds(1, "p"));
    const r = await runProcess([bin, "run", "--workflow", "coral", "--seeds", "p.jsonl", "--out", "p.out", "--supervise", "vllm serve x"], { cwd: tmp.dir });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--supervise #1: "command": must contain \{port\}/);
  });
});
