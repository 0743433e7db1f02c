import { afterAll, describe, expect, test } from "bun:test";
import { appendFileSync, readFileSync, writeFileSync } from "node:fs";
import { coralDummy } from "../plugins/coral-dummy/index.ts";
import { makeJobRuntime } from "../src/engine/job.ts";
import { runJob } from "../src/engine/run.ts";
import { silentLogger } from "../src/log.ts";
import { engineCases, jittery, localRunner } from "./engine-cases.ts";
import { readRows, tempDir, writeLines } from "./support/files.ts";
import { coralSeeds } from "./support/seeds.ts";

const tmp = tempDir();
afterAll(() => tmp.remove());
const local = localRunner(tmp);

describe("local bus", () => engineCases(() => local));

describe("engine", () => {
  test("engine - bad seed lines give failed rows naming the line and what is wrong, beside the good ones", async () => {
    const wf = jittery({ live: new Set(), maxLive: 0 });
    writeLines(tmp.path("bad.jsonl"), [
      { id: "good", hops: 2 },
      { id: "thrower", hops: 2, mode: "throw" },
      { id: "refuser", hops: 2, mode: "fail" },
      { id: "looper", hops: 2, mode: "loop" },
      "{not json",
      { id: "nohops" },
      [1, 2],
      { id: "good", hops: 1 },
      "",
      { id: "last", hops: 1 },
    ]);
    const job = makeJobRuntime({ workflow: wf, options: {}, seed: 1, stepRetries: 2 });
    const s = await runJob({ job, seedsPath: tmp.path("bad.jsonl"), outPath: tmp.path("bad.out"), concurrency: 4, trials: 1, log: silentLogger, node: "n1" });
    const rows = readRows(tmp.path("bad.out"));
    const byId = Object.fromEntries(rows.map((r) => [r.id, r]));
    expect(rows.length).toBe(9);
    expect(s.ok).toBe(2);
    expect(s.failed).toBe(7);
    expect(byId.good.status).toBe("ok");
    expect(byId.last.status).toBe("ok");
    expect(byId.thrower.error).toBe("a: agent a broke (after 3 tries)");
    expect(byId["line-5"].error).toStartWith("seed line 5: not JSON");
    expect(byId.nohops.error).toContain('seed line 6: "hops"');
    expect(byId["line-7"].error).toBe("seed line 7: must be a JSON object");
    expect(byId["good@line8"].error).toBe('seed line 8: duplicate seed id "good"');
  });

  test("engine - resume skips tasks already in the output, drops a torn last line and refuses a bad line before the last", async () => {
    const seeds = coralSeeds(300);
    writeLines(tmp.path("r.jsonl"), seeds);
    const out = tmp.path("r.out");
    const job = makeJobRuntime({ workflow: coralDummy, options: { agreeAfter: 3 }, seed: 5, stepRetries: 0 });
    const full = tmp.path("full.out");
    await runJob({ job, seedsPath: tmp.path("r.jsonl"), outPath: full, concurrency: 50, trials: 1, log: silentLogger, node: "n1" });
    // Keep 120 complete rows and half of the next, as a crash would leave them.
    const lines = readFileSync(full, "utf8").split("\n");
    writeFileSync(out, `${lines.slice(0, 120).join("\n")}\n${(lines[120] as string).slice(0, 200)}`);
    const s = await runJob({ job, seedsPath: tmp.path("r.jsonl"), outPath: out, concurrency: 50, trials: 1, log: silentLogger, node: "n2" });
    expect(s.resumed).toBe(120);
    expect(s.tornBytes).toBe(200);
    expect(s.written).toBe(180);
    expect(readRows(out).length).toBe(300);
    // A bad line that is not the last one is refused, not silently dropped.
    appendFileSync(out, "garbage\n{\"id\":\"x\",\"status\":\"ok\"}\n");
    await expect(runJob({ job, seedsPath: tmp.path("r.jsonl"), outPath: out, concurrency: 5, trials: 1, log: silentLogger, node: "n3" })).rejects.toThrow("line 301 is not a row");
  });

  test("engine - a 200,000-line seed file streams through with bounded in-flight", async () => {
    const path = tmp.path("big.jsonl");
    const seeds = coralSeeds(200_000);
    writeLines(path, seeds);
    const job = makeJobRuntime({ workflow: coralDummy, options: { agreeAfter: 1, textBytes: 16 }, seed: 0, stepRetries: 0 });
    let maxInFlight = 0;
    let read = 0;
    const s = await runJob({
      job, seedsPath: path, outPath: tmp.path("big.out"), concurrency: 256, trials: 1, log: silentLogger, node: "n",
      onStart: (p) => {
        const t = setInterval(() => {
          const now = p();
          maxInFlight = Math.max(maxInFlight, now.inFlight);
          read = now.read;
          if (now.done === 200_000) clearInterval(t);
        }, 5);
      },
    });
    expect(s.ok).toBe(200_000);
    expect(maxInFlight).toBeLessThanOrEqual(256);
    expect(read).toBeGreaterThan(0);
  }, 120_000);
});
