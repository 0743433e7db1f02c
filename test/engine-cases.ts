import { expect, test } from "bun:test";
import { z } from "zod";
import { coralDummy } from "../plugins/coral-dummy/index.ts";
import type { AnyWorkflow } from "../src/plugin/api.ts";
import { defineWorkflow } from "../src/plugin/api.ts";
import { coralSeeds } from "./support/seeds.ts";

/**
 * Engine checks written once and run on every bus: the in-process bus (as
 * `matrixd run` uses it) and the NATS bus (as `matrixd join` does).
 */

/** Runs one job to its end on some bus and returns its rows. */
export interface BusRunner {
  name: string;
  run(job: {
    workflow: AnyWorkflow;
    seeds: Record<string, unknown>[];
    concurrency: number;
    stepRetries: number;
    seed: number;
    options?: Record<string, unknown>;
  }): Promise<Row[]>;
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
