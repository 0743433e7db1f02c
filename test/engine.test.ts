import { afterAll, describe, expect, test } from "bun:test";
import { appendFileSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { coralDummy } from "../plugins/coral-dummy/index.ts";
import { LocalBus } from "../src/bus/local.ts";
import { Engine } from "../src/engine/engine.ts";
import { makeJobRuntime } from "../src/engine/job.ts";
import { runJob } from "../src/engine/run.ts";
import { silentLogger } from "../src/log.ts";
import { loadPlugin } from "../src/plugin/registry.ts";
import type { OutputRow, TaskState } from "../src/protocol/task.ts";
import { jittery } from "./engine-cases.ts";
import { coralSeeds } from "./support/seeds.ts";
import { readRows, tempDir, writeLines } from "./support/files.ts";

const tmp = tempDir();
afterAll(() => tmp.remove());

describe("engine", () => {
  // One row per task with in-flight bounded, and the failure rows, run on both buses in cluster-engine.test.ts.

  test("engine - agent errors, fail results, step limit and bad seed lines give failed rows naming the reason", async () => {
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
    expect(byId.thrower.provenance.attempts).toEqual({ a: 2 });
    expect(byId.refuser.error).toBe("a: refused this seed");
    expect(byId.looper.error).toBe("step limit reached (30 steps)");
    expect(byId.looper.history.length).toBe(30);
    expect(byId["line-5"].error).toStartWith("seed line 5: not JSON");
    expect(byId.nohops.error).toContain('seed line 6: "hops"');
    expect(byId["line-7"].error).toBe("seed line 7: must be a JSON object");
    expect(byId["good@line8"].error).toBe('seed line 8: duplicate seed id "good"');
  });

  test("engine - a task pinned to a node that is gone starts over from its seed here, at most twice, then fails naming that node", async () => {
    const job = makeJobRuntime({ id: "pinned", workflow: coralDummy, options: {}, seed: 1, stepRetries: 1 });
    const bus = new LocalBus();
    const rows: OutputRow[] = [];
    const engine = new Engine({ bus, jobs: async () => job, node: "here", log: silentLogger, finish: async (row) => void rows.push(row) });
    engine.hostWorkflow(coralDummy, () => 4);
    const [seed] = coralSeeds(1, "p");
    // Mid-way through its conversation on a node that died: its state names that node.
    const midway = (restarts: number): TaskState => {
      const s = Engine.newTask(job, "t", 0, seed as Record<string, unknown>);
      s.pin = "gone";
      s.next = "student";
      s.steps = 5;
      s.vars = { ...s.vars, broken: true };
      s.attempts = restarts > 0 ? { restart: restarts } : {};
      return s;
    };
    await engine.begin(midway(0));
    await engine.begin(midway(2));
    const deadline = Date.now() + 10_000;
    while (rows.length < 2 && Date.now() < deadline) await Bun.sleep(10);
    const [again, failed] = [rows.find((r) => r.status === "ok"), rows.find((r) => r.status === "failed")];
    expect(again?.provenance.attempts).toEqual({ restart: 1 });
    expect(again?.provenance.nodes).toEqual(["here"]);
    expect(again?.history[0]?.role).toBe("teacher");
    expect(failed?.error).toBe('the node it was pinned to (gone) is gone or does not host role "student", and it was started over 2 times already');
    expect(engine.stats.restarts).toBe(1);
  });

  test("engine - resume skips tasks already in the output and drops a torn last line", async () => {
    const seeds = coralSeeds(300);
    writeLines(tmp.path("r.jsonl"), seeds);
    const out = tmp.path("r.out");
    const job = makeJobRuntime({ workflow: coralDummy, options: { agreeAfter: 3 }, seed: 5, stepRetries: 0 });
    const full = tmp.path("full.out");
    await runJob({ job, seedsPath: tmp.path("r.jsonl"), outPath: full, concurrency: 50, trials: 1, log: silentLogger, node: "n1" });
    const fullRows = readRows(full);
    // Keep 120 complete rows and half of the next, as a crash would leave them.
    const lines = readFileSync(full, "utf8").split("\n");
    writeFileSync(out, `${lines.slice(0, 120).join("\n")}\n${(lines[120] as string).slice(0, 200)}`);
    const s = await runJob({ job, seedsPath: tmp.path("r.jsonl"), outPath: out, concurrency: 50, trials: 1, log: silentLogger, node: "n2" });
    expect(s.resumed).toBe(120);
    expect(s.tornBytes).toBe(200);
    expect(s.written).toBe(180);
    const rows = readRows(out);
    expect(rows.length).toBe(300);
    expect(new Set(rows.map((r) => r.id)).size).toBe(300);
    const strip = (r: Record<string, unknown>) => ({ id: r.id, output: r.output, metrics: r.metrics });
    const sort = (rs: Record<string, unknown>[]) => rs.map(strip).sort((x, y) => String(x.id).localeCompare(String(y.id)));
    expect(sort(rows)).toEqual(sort(fullRows));
    // A bad line that is not the last one is refused, not silently dropped.
    appendFileSync(out, "garbage\n{\"id\":\"x\",\"status\":\"ok\"}\n");
    await expect(runJob({ job, seedsPath: tmp.path("r.jsonl"), outPath: out, concurrency: 5, trials: 1, log: silentLogger, node: "n3" })).rejects.toThrow("line 301 is not a row");
  });

  test("engine - trials give one task per seed and trial with distinct ids", async () => {
    writeLines(tmp.path("t.jsonl"), coralSeeds(10));
    const job = makeJobRuntime({ workflow: coralDummy, options: {}, seed: 0, stepRetries: 0 });
    await runJob({ job, seedsPath: tmp.path("t.jsonl"), outPath: tmp.path("t.out"), concurrency: 8, trials: 3, log: silentLogger, node: "n" });
    const rows = readRows(tmp.path("t.out"));
    expect(rows.length).toBe(30);
    expect(rows.filter((r) => r.id === "q3#2" && r.trial === 2).length).toBe(1);
  });

  test("engine - a workflow file from the test folder loads as a plugin and runs", async () => {
    const [echo] = await loadPlugin(join(import.meta.dir, "fixtures/echo-workflow.js"));
    expect(echo?.name).toBe("echo");
    writeLines(tmp.path("e.jsonl"), [{ word: "hi", bounces: 3 }, { word: "explode", bounces: 1 }]);
    const job = makeJobRuntime({ workflow: echo!, options: { suffix: "?" }, seed: 0, stepRetries: 0 });
    const s = await runJob({ job, seedsPath: tmp.path("e.jsonl"), outPath: tmp.path("e.out"), concurrency: 8, trials: 1, log: silentLogger, node: "n" });
    const rows = readRows(tmp.path("e.out"));
    const hi = rows.find((r) => r.seed.word === "hi");
    expect(hi.id).toMatch(/^s-[0-9a-f]{16}$/);
    expect(hi.output).toEqual({ word: "hi", bounces: 3 });
    expect(hi.history[0].text).toBe("ping hi?");
    expect(rows.find((r) => r.seed.word === "explode").error).toBe("pong: pong cannot bounce explode (after 1 tries)");
    expect(s.metrics.bounces).toBe(2);
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
