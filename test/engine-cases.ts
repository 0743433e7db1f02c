import { expect, test } from "bun:test";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { z } from "zod";
import { coralDummy } from "../plugins/coral-dummy/index.ts";
import { makeJobRuntime } from "../src/engine/job.ts";
import { runJob } from "../src/engine/run.ts";
import { silentLogger } from "../src/log.ts";
import type { AnyWorkflow } from "../src/plugin/api.ts";
import { defineWorkflow } from "../src/plugin/api.ts";
import { loadPlugin } from "../src/plugin/registry.ts";
import { readRows, writeLines } from "./support/files.ts";
import { coralSeeds } from "./support/seeds.ts";

/**
 * Engine checks written once and run on every bus: the in-process bus (as
 * `matrixd run` uses it) and the NATS bus (as `matrixd join` does).
 */

/** A job as the cases give it to a bus. */
export interface CaseJob {
  workflow: AnyWorkflow;
  seeds: Record<string, unknown>[];
  concurrency: number;
  stepRetries: number;
  seed: number;
  options?: Record<string, unknown>;
  /** tasks per seed (default 1) */
  trials?: number;
}

/** Runs jobs on some bus. */
export interface BusRunner {
  name: string;
  /** Run one job to its end and return its rows. */
  run(job: CaseJob): Promise<Row[]>;
  /**
   * Run one job, stop it once at least `after` rows are stored (as a crash
   * or a restart of every node would), start it again and let it end.
   * Returns its rows and how many there were when it started again.
   */
  interrupted(job: CaseJob, after: number): Promise<{ rows: Row[]; resumedFrom: number }>;
}

/** The in-process bus, as `matrixd run` drives it: seeds and rows in files under `dir`. */
export function localRunner(dir: { path(name: string): string }): BusRunner {
  let jobNo = 0;
  const runFiles = async (job: CaseJob, seedsPath: string, outPath: string) => {
    const rt = makeJobRuntime({ workflow: job.workflow, options: job.options ?? {}, seed: job.seed, stepRetries: job.stepRetries });
    return runJob({ job: rt, seedsPath, outPath, concurrency: job.concurrency, trials: job.trials ?? 1, log: silentLogger, node: "n1" });
  };
  return {
    name: "local",
    async run(job) {
      const n = ++jobNo;
      writeLines(dir.path(`seeds-${n}.jsonl`), job.seeds);
      await runFiles(job, dir.path(`seeds-${n}.jsonl`), dir.path(`out-${n}.jsonl`));
      return readRows(dir.path(`out-${n}.jsonl`));
    },
    async interrupted(job, after) {
      const n = ++jobNo;
      const seeds = dir.path(`seeds-${n}.jsonl`);
      const out = dir.path(`out-${n}.jsonl`);
      writeLines(seeds, job.seeds);
      await runFiles(job, seeds, out);
      // Keep `after` complete rows and half of the next, as a crash leaves them.
      const lines = readFileSync(out, "utf8").split("\n");
      const torn = lines[after] as string;
      writeFileSync(out, `${lines.slice(0, after).join("\n")}\n${torn.slice(0, torn.length >> 1)}`);
      const s = await runFiles(job, seeds, out);
      expect(s.tornBytes).toBe(torn.length >> 1);
      return { rows: readRows(out), resumedFrom: s.resumed };
    },
  };
}

// biome-ignore lint/suspicious/noExplicitAny: rows read back are checked by each test
export type Row = any;

/** A workflow whose steps sleep a random while and fail on request, watching how many tasks are live at once. */
export function jittery(watch: { live: Set<string>; maxLive: number }, name = "jittery") {
  return defineWorkflow({
    name,
    description: "test workflow",
    seedSchema: z.looseObject({ id: z.string(), hops: z.number().int(), mode: z.string().default("ok") }),
    configSchema: z.strictObject({}),
    roles: {
      a: {
        kind: "cpu",
        async run(state, ctx) {
          watch.live.add(state.id);
          watch.maxLive = Math.max(watch.maxLive, watch.live.size);
          await Bun.sleep(Math.floor(ctx.random() * 4));
          if (state.seed.mode === "throw") throw new Error("agent a broke");
          if (state.seed.mode === "fail") return { fail: "refused this seed" };
          return { turns: [{ text: `a${state.steps}` }], vars: { n: ((state.vars.n as number) ?? 0) + 1 } };
        },
      },
      b: {
        kind: "cpu",
        async run(state, ctx) {
          await Bun.sleep(Math.floor(ctx.random() * 3));
          return { turns: [{ text: `b${state.steps}` }] };
        },
      },
    },
    start: () => ({ next: "a", vars: { n: 0 } }),
    next: (state, _c, ran) => {
      if (ran === "a") return "b";
      if (state.seed.mode === "loop") return "a";
      if ((state.vars.n as number) >= (state.seed.hops as number)) {
        watch.live.delete(state.id);
        return null;
      }
      return "a";
    },
    output: (state) => ({ output: { n: state.vars.n }, metrics: { n: state.vars.n } }),
    maxSteps: () => 30,
  });
}

/**
 * A workflow whose first role pins its task to a node that is no member
 * ("gone") while the task has been started over fewer times than its seed's
 * `pins`: the state a task is left in when the node that held something
 * for it dies.
 */
export function pinning(name = "pinning") {
  return defineWorkflow({
    name,
    description: "test workflow",
    seedSchema: z.looseObject({ id: z.string(), pins: z.number().int() }),
    configSchema: z.strictObject({}),
    roles: {
      a: {
        kind: "cpu",
        async run(state) {
          // A role can pin its task only to its own node; this one writes the pin a dead node's state carries.
          if ((state.attempts.restart ?? 0) < (state.seed.pins as number)) (state as { pin?: string }).pin = "gone";
          return { turns: [{ text: "a" }] };
        },
      },
      b: {
        kind: "cpu",
        async run() {
          return { turns: [{ text: "b" }] };
        },
      },
    },
    start: () => ({ next: "a", vars: {} }),
    next: (_state, _c, ran) => (ran === "a" ? "b" : null),
    output: () => ({ output: {}, metrics: {} }),
  });
}

/**
 * A writer and a critic whose rule names a role the workflow does not have
 * ("writter") after the writer, and whose start names the seed's `first`.
 */
export function misrouted(name = "misrouted") {
  return defineWorkflow({
    name,
    description: "test workflow",
    seedSchema: z.looseObject({ id: z.string(), first: z.string().default("writer") }),
    configSchema: z.strictObject({}),
    roles: {
      writer: {
        kind: "cpu",
        async run() {
          return { turns: [{ text: "a draft" }] };
        },
      },
      critic: {
        kind: "cpu",
        async run() {
          return { turns: [{ text: "fine" }] };
        },
      },
    },
    start: (seed) => ({ next: seed.first, vars: {} }),
    next: (_state, _c, ran) => (ran === "writer" ? "writter" : null),
    output: () => ({ output: {}, metrics: {} }),
  });
}

/** The fields that must not depend on the bus, the node count or crashes. */
export function comparable(rows: Row[]): { id: string; status: string; error?: string; output: unknown; metrics: unknown }[] {
  return rows
    .map((r) => ({ id: r.id, status: r.status, error: r.error, output: r.output, metrics: r.metrics }))
    .sort((x, y) => (x.id < y.id ? -1 : x.id > y.id ? 1 : 0));
}

/** Register the shared engine tests for one bus. */
export function engineCases(runner: () => BusRunner, timeout = 60_000): void {
  test(`${"engine"} - exactly one row per task whatever the order, in-flight bounded`, async () => {
    const r = runner();
    const watch = { live: new Set<string>(), maxLive: 0 };
    const seeds = Array.from({ length: 400 }, (_, i) => ({ id: `t${i}`, hops: 1 + (i % 7) }));
    const rows = await r.run({ workflow: jittery(watch), seeds, concurrency: 16, stepRetries: 1, seed: 1 });
    expect(rows.length).toBe(400);
    expect(new Set(rows.map((x) => x.id)).size).toBe(400);
    expect(rows.every((x) => x.status === "ok")).toBe(true);
    expect(watch.maxLive).toBeLessThanOrEqual(16);
    expect(watch.maxLive).toBeGreaterThan(1);
    const t6 = rows.find((x) => x.id === "t6");
    expect(t6.output).toEqual({ n: 7 });
    expect(t6.history.map((t: { role: string }) => t.role).join("")).toBe("ab".repeat(7));
    // completion order differs from seed order: row-level scheduling
    expect(rows.map((x) => x.id)).not.toEqual(seeds.map((x) => x.id));
  }, timeout);

  test("engine - agent errors, fail results and the step limit give failed rows naming the reason", async () => {
    const r = runner();
    const seeds = [
      { id: "good", hops: 2 },
      { id: "thrower", hops: 2, mode: "throw" },
      { id: "refuser", hops: 2, mode: "fail" },
      { id: "looper", hops: 2, mode: "loop" },
      { id: "last", hops: 1 },
    ];
    const rows = await r.run({ workflow: jittery({ live: new Set(), maxLive: 0 }), seeds, concurrency: 4, stepRetries: 2, seed: 1 });
    const byId = Object.fromEntries(rows.map((x) => [x.id, x]));
    expect(rows.length).toBe(5);
    expect(byId.good.status).toBe("ok");
    expect(byId.last.status).toBe("ok");
    expect(byId.thrower.error).toBe("a: agent a broke (after 3 tries)");
    expect(byId.thrower.provenance.attempts).toEqual({ a: 2 });
    expect(byId.refuser.error).toBe("a: refused this seed");
    expect(byId.looper.error).toBe("step limit reached (30 steps)");
    expect(byId.looper.history.length).toBe(30);
  }, timeout);

  test("engine - a next role or a first role the workflow does not have fails the task at once, naming it and the workflow's roles", async () => {
    const r = runner();
    // The first seed cannot start: a cluster then admits the job's tasks at another role.
    const seeds = [{ id: "unknown-start", first: "editor" }, { id: "typo" }, { id: "typo2" }];
    const rows = await r.run({ workflow: misrouted(), seeds, concurrency: 4, stepRetries: 2, seed: 1 });
    const byId = Object.fromEntries(rows.map((x) => [x.id, x]));
    expect(rows.length).toBe(3);
    for (const id of ["typo", "typo2"]) {
      expect(byId[id].status).toBe("failed");
      expect(byId[id].error).toBe('next role "writter" after "writer" is not a role of workflow "misrouted" (roles: critic, writer)');
      expect(byId[id].history.map((t: { role: string }) => t.role)).toEqual(["writer"]);
      expect(byId[id].provenance.attempts).toEqual({});
    }
    expect(byId["unknown-start"].status).toBe("failed");
    expect(byId["unknown-start"].error).toBe(
      'seed line 1: workflow cannot start: first role "editor" from start() is not a role of workflow "misrouted" (roles: critic, writer)',
    );
    expect(byId["unknown-start"].history).toEqual([]);
  }, timeout);

  test("engine - a task pinned to a node that is gone starts over from its seed, at most twice, then fails naming that node", async () => {
    const r = runner();
    const seeds = [
      { id: "never", pins: 0 },
      { id: "again", pins: 1 },
      { id: "stuck", pins: 3 },
    ];
    const rows = await r.run({ workflow: pinning(), seeds, concurrency: 4, stepRetries: 0, seed: 1 });
    const byId = Object.fromEntries(rows.map((x) => [x.id, x]));
    expect(rows.length).toBe(3);
    expect(byId.never.status).toBe("ok");
    expect(byId.never.provenance.attempts).toEqual({});
    expect(byId.again.status).toBe("ok");
    expect(byId.again.provenance.attempts).toEqual({ restart: 1 });
    // Started over: the history is the new start's alone.
    expect(byId.again.history.map((t: { role: string }) => t.role)).toEqual(["a", "b"]);
    expect(byId.again.provenance.nodes).not.toContain("gone");
    expect(byId.stuck.status).toBe("failed");
    expect(byId.stuck.error).toBe('the node it was pinned to (gone) is gone or does not host role "b", and it was started over 2 times already');
  }, timeout);

  test("engine - a job stopped part-way and started again ends with one row per task, the dataset of a run straight through", async () => {
    const r = runner();
    const job = { workflow: coralDummy as AnyWorkflow, seeds: coralSeeds(300), concurrency: 10, stepRetries: 0, seed: 5, options: { agreeAfter: 3 } };
    const straight = await r.run(job);
    const { rows, resumedFrom } = await r.interrupted(job, 100);
    expect(resumedFrom).toBeGreaterThanOrEqual(100);
    expect(resumedFrom).toBeLessThan(300);
    expect(rows.length).toBe(300);
    expect(new Set(rows.map((x) => x.id)).size).toBe(300);
    expect(comparable(rows)).toEqual(comparable(straight));
  }, timeout);

  test("engine - trials give one task per seed and trial with distinct ids", async () => {
    const r = runner();
    const rows = await r.run({ workflow: coralDummy as AnyWorkflow, seeds: coralSeeds(10), concurrency: 8, stepRetries: 0, seed: 0, trials: 3 });
    expect(rows.length).toBe(30);
    expect(new Set(rows.map((x) => x.id)).size).toBe(30);
    expect(rows.filter((x) => x.id === "q3#2" && x.trial === 2).length).toBe(1);
    expect(rows.filter((x) => x.trial === 0).length).toBe(10);
  }, timeout);

  test("engine - a workflow file from the test folder loads as a plugin and runs", async () => {
    const r = runner();
    const [echo] = await loadPlugin(join(import.meta.dir, "fixtures/echo-workflow.js"));
    expect(echo?.name).toBe("echo");
    const seeds = [{ word: "hi", bounces: 3 }, { word: "explode", bounces: 1 }];
    const rows = await r.run({ workflow: echo as AnyWorkflow, seeds, concurrency: 8, stepRetries: 0, seed: 0, options: { suffix: "?" } });
    expect(rows.length).toBe(2);
    const hi = rows.find((x) => x.seed.word === "hi");
    expect(hi.id).toMatch(/^s-[0-9a-f]{16}$/);
    expect(hi.output).toEqual({ word: "hi", bounces: 3 });
    expect(hi.metrics).toEqual({ bounces: 3 });
    expect(hi.history[0].text).toBe("ping hi?");
    expect(rows.find((x) => x.seed.word === "explode").error).toBe("pong: pong cannot bounce explode (after 1 tries)");
  }, timeout);
}

/** The coral-dummy job both buses run for the determinism check. */
export const DETERMINISM_JOB = {
  workflow: coralDummy as AnyWorkflow,
  seeds: coralSeeds(300),
  concurrency: 50,
  stepRetries: 0,
  seed: 5,
  options: { agreeAfter: 3 },
};
