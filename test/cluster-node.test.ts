import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { z } from "zod";
import { coralDummy } from "../plugins/coral-dummy/index.ts";
import { SeedBatchError } from "../src/cluster/submit.ts";
import { ConfigError } from "../src/errors.ts";
import { defineWorkflow } from "../src/plugin/api.ts";
import { openNatsCluster } from "../src/store/index.ts";
import { createLlmClient } from "../src/llm/index.ts";
import { silentLogger } from "../src/log.ts";
import { startSim } from "../src/sim/index.ts";
import { readResults, startNodes, TEST_TIMINGS, waitJob } from "./support/cluster-nodes.ts";
import { waitFor } from "./support/wait.ts";
import { comparable, DETERMINISM_JOB } from "./engine-cases.ts";
import { coralSeeds } from "./support/seeds.ts";
import { type NatsServer, natsServerMissing, startNatsServer } from "./support/nats-server.ts";

const missing = natsServerMissing();
if (missing) console.warn(`cluster-node: ${missing}; skipped`);

/** Two roles; `slow` sleeps, and the test watches how many of its steps run at once on each node. */
function slowFlow(name: string, watch: { now: Map<string, number>; max: Map<string, number> }, sleepMs = 20, hops = 3) {
  return defineWorkflow({
    name,
    description: "test workflow",
    seedSchema: z.looseObject({ id: z.string() }),
    configSchema: z.strictObject({}),
    roles: {
      slow: {
        kind: "cpu",
        async run(state, ctx) {
          const n = (watch.now.get(ctx.node) ?? 0) + 1;
          watch.now.set(ctx.node, n);
          watch.max.set(ctx.node, Math.max(watch.max.get(ctx.node) ?? 0, n));
          await new Promise((r) => {
            const t = setTimeout(r, sleepMs);
            ctx.signal.addEventListener("abort", () => {
              clearTimeout(t);
              r(undefined);
            });
          });
          watch.now.set(ctx.node, (watch.now.get(ctx.node) ?? 1) - 1);
          if (ctx.signal.aborted) throw new Error("aborted");
          return { turns: [{ text: `slow ${state.steps}` }], vars: { n: ((state.vars.n as number) ?? 0) + 1 } };
        },
      },
      fast: {
        kind: "cpu",
        async run() {
          return {};
        },
      },
    },
    start: () => ({ next: "slow", vars: { n: 0 } }),
    next: (state, _c, ran) => (ran === "slow" ? "fast" : (state.vars.n as number) >= hops ? null : "slow"),
    output: (state) => ({ output: { n: state.vars.n, nodes: state.provenance.nodes.length }, metrics: {} }),
  });
}

const watcher = () => ({ now: new Map<string, number>(), max: new Map<string, number>() });

describe.skipIf(missing !== undefined)("cluster node (in-process, real nats-server)", () => {
  let srv: NatsServer;
  beforeAll(async () => {
    srv = await startNatsServer();
  });
  afterAll(async () => {
    await srv?.close();
  });

  test("cluster - submit checks the whole batch: every bad seed is named and nothing is stored", async () => {
    const [a] = await startNodes(srv, ["v1"]);
    try {
      const seeds = [...coralSeeds(3), "{nope", { id: "x", question: "q?" }, coralSeeds(1)[0]];
      const err = await a!.submit({ workflow: "coral-dummy", seeds }).catch((e) => e);
      expect(err).toBeInstanceOf(SeedBatchError);
      expect((err as SeedBatchError).errors.map((e) => e.line)).toEqual([4, 5, 6]);
      expect((err as Error).message).toContain("seed line 4: not JSON");
      expect((err as Error).message).toContain('duplicate seed id "q0"');
      expect(await a!.jobs()).toEqual([]);
      await expect(a!.submit({ workflow: "nope", seeds: coralSeeds(1) })).rejects.toThrow('unknown workflow "nope"');
      const bad = await a!.submit({ workflow: "coral-dummy", seeds: coralSeeds(1), config: { bogus: 1 } }).catch((e) => e);
      expect(bad).toBeInstanceOf(ConfigError);
      expect((bad as Error).message).toContain('"bogus"');
      await expect(a!.submit({ workflow: "coral-dummy", seeds: coralSeeds(1), config: { options: { agreeAfter: 0 } } })).rejects.toThrow("agreeAfter");
    } finally {
      await a!.close();
    }
  }, 30_000);

  test("cluster - a role never runs more steps at once on a node than its slots; the overflow goes to the other node", async () => {
    const watch = watcher();
    const wf = slowFlow("slotted", watch);
    const roles = (workflow: string, role: string) => (workflow === "slotted" && role === "slow" ? 3 : "auto");
    const [a, b] = await startNodes(srv, ["s1", "s2"], { extra: [wf], roles });
    try {
      const seeds = Array.from({ length: 60 }, (_, i) => ({ id: `s${i}` }));
      const { id } = await a!.submit({ workflow: "slotted", seeds, config: { concurrency: 40 } });
      const st = await waitJob(b!, id);
      expect(st.ok).toBe(60);
      for (const n of ["s1", "s2"]) {
        expect(watch.max.get(n) ?? 0).toBeLessThanOrEqual(3);
        expect(watch.max.get(n) ?? 0).toBeGreaterThan(0);
      }
      const rows = await readResults(a!, id);
      expect(rows.length).toBe(60);
      // with 3 slots a node cannot keep every task: some hops went through NATS to the other node
      expect(a!.bus.stats.remoteHops + b!.bus.stats.remoteHops).toBeGreaterThan(0);
      expect(a!.bus.stats.received + b!.bus.stats.received).toBeGreaterThan(0);
    } finally {
      await Promise.all([a!.close(), b!.close()]);
    }
  }, 60_000);

  test("cluster - with local-first off every hop goes through NATS, and the dataset is the same", async () => {
    const nodes = await startNodes(srv, ["r1", "r2", "r3"], { localFirst: false });
    try {
      const { id } = await nodes[0]!.submit({
        workflow: coralDummy.name,
        seeds: DETERMINISM_JOB.seeds,
        config: { concurrency: 50, stepRetries: 0, seed: DETERMINISM_JOB.seed, options: DETERMINISM_JOB.options },
      });
      await waitJob(nodes[1]!, id);
      const rows = await readResults(nodes[2]!, id);
      const local = nodes.reduce((s, n) => s + n.bus.stats.localHops, 0);
      const remote = nodes.reduce((s, n) => s + n.bus.stats.remoteHops, 0);
      const steps = rows.reduce((s, r) => s + r.provenance.steps, 0);
      expect(local).toBe(0);
      // every step but the first of each task arrived through NATS (the first comes with the seed)
      expect(remote).toBe(steps);
      expect(nodes.reduce((s, n) => s + n.bus.stats.hopLatency.count, 0)).toBe(steps);
      const multi = rows.filter((r) => r.provenance.nodes.length > 1).length;
      expect(multi).toBeGreaterThan(0);
      // the same as the local-first run of the engine tests: compare with a fresh local-first cluster run
      const [x] = await startNodes(srv, ["r4"]);
      try {
        const again = await x!.submit({
          workflow: coralDummy.name,
          seeds: DETERMINISM_JOB.seeds,
          config: { concurrency: 50, stepRetries: 0, seed: DETERMINISM_JOB.seed, options: DETERMINISM_JOB.options },
        });
        await waitJob(x!, again.id);
        expect(comparable(await readResults(x!, again.id))).toEqual(comparable(rows));
      } finally {
        await x!.close();
      }
    } finally {
      await Promise.all(nodes.map((n) => n.close()));
    }
  }, 60_000);

  test("cluster - a node that leaves hands its tasks back; the other node finishes them, one row each", async () => {
    const watch = watcher();
    const wf = slowFlow("leaving", watch, 40, 6);
    const [a, b] = await startNodes(srv, ["l1", "l2"], { extra: [wf] });
    try {
      const seeds = Array.from({ length: 80 }, (_, i) => ({ id: `l${i}` }));
      const { id } = await a!.submit({ workflow: "leaving", seeds, config: { concurrency: 40 } });
      await waitFor("the leaving node to run steps", () => (watch.now.get("l1") ?? 0) > 0 && (watch.now.get("l2") ?? 0) > 0, 20_000, 5);
      await a!.close();
      expect(a!.bus.stats.handedBack).toBeGreaterThan(0);
      const st = await waitJob(b!, id, 60_000);
      expect(st.state).toBe("done");
      const rows = await readResults(b!, id);
      expect(rows.length).toBe(80);
      expect(new Set(rows.map((r) => r.id)).size).toBe(80);
      expect(rows.every((r) => r.status === "ok" && r.output.n === 6)).toBe(true);
      expect(st.ok).toBe(80);
    } finally {
      await Promise.all([a!.close(), b!.close()]);
    }
  }, 60_000);

  test("cluster - cancel stops admission and drops the job's tasks; the job reads cancelled everywhere", async () => {
    const watch = watcher();
    const wf = slowFlow("cancelled", watch, 30, 10);
    const [a, b] = await startNodes(srv, ["c1", "c2"], { extra: [wf] });
    try {
      const seeds = Array.from({ length: 400 }, (_, i) => ({ id: `c${i}` }));
      const { id } = await a!.submit({ workflow: "cancelled", seeds, config: { concurrency: 20 } });
      await waitFor("some rows", async () => ((await b!.job(id))?.ok ?? 0) >= 5, 20_000);
      expect(await b!.cancel(id)).toBe(true);
      expect(await a!.cancel(id)).toBe(false);
      await waitFor("both nodes to let go of the job's seeds", () => a!.bus.keeper.admitted.size + b!.bus.keeper.admitted.size === 0, 10_000);
      const st = await a!.job(id);
      expect(st?.state).toBe("cancelled");
      expect(st?.reason).toBe("cancelled on c2");
      expect(st?.queued).toBe(0);
      expect(st!.ok).toBeLessThan(400);
      const rows = (await readResults(a!, id)).length;
      await Bun.sleep(500);
      expect((await readResults(a!, id)).length).toBe(rows);
    } finally {
      await Promise.all([a!.close(), b!.close()]);
    }
  }, 60_000);

  test("cluster - a job left half-stored by a node that is gone is cancelled within seconds, naming that node", async () => {
    const [a] = await startNodes(srv, ["h1"]);
    // A node that stores a record and some seeds, then vanishes before the job is running.
    const ghost = await openNatsCluster({ servers: [srv.url], name: "ghost", log: silentLogger, timings: TEST_TIMINGS });
    try {
      const now = Date.now();
      const id = "half-stored";
      await ghost.jobs.openSeeds(id, 10);
      await ghost.jobs.create({
        v: 1,
        id,
        workflow: "coral-dummy",
        state: "submitting",
        total: 100,
        entry: "teacher",
        settings: { concurrency: 10, trials: 1, seed: 0, stepRetries: 1, options: {} },
        createdAt: now,
        updatedAt: now,
        acceptedBy: "ghost",
      });
      await ghost.jobs.storeSeeds(coralSeeds(5, "g").map((seed, i) => ({ v: 1 as const, job: id, id: `g${i}`, trial: 0, line: i + 1, seed })));
      await ghost.close();
      await waitFor("the half-stored job to end", async () => (await a!.job(id))?.state !== "running", 20_000, 200);
      const st = await a!.job(id);
      expect(st?.state).toBe("cancelled");
      expect(st?.reason).toContain("(ghost) stopped before all its seeds were stored");
    } finally {
      await ghost.close().catch(() => undefined);
      await a!.close();
    }
  }, 40_000);

  test("cluster - a job's token budget counts every node's LLM calls: admission stops on all nodes, tasks in flight finish, the job ends saying why", async () => {
    const sim = await startSim({ slots: 16, timeScale: 0.02 });
    const llm = () => createLlmClient({ endpoints: [{ url: `${sim.url}/v1`, maxConcurrency: 16 }] });
    const [a, b] = await startNodes(srv, ["b1", "b2"], { llm: llm(), shareLlm: false });
    const c = await startNodes(srv, ["b3"], { llm: llm(), shareLlm: false });
    try {
      const { id, total } = await a!.submit({ workflow: "coral", seeds: coralSeeds(300, "b"), config: { concurrency: 24, budget: { tokens: 40_000 } } });
      const st = await waitJob(b!, id, 60_000);
      expect(st.state).toBe("done");
      expect(st.budgetReached).toMatch(/^budget reached: [\d,]+ tokens of 40,000$/);
      expect(st.reason).toBe(st.budgetReached);
      const rows = await readResults(c[0]!, id);
      expect(rows.length).toBe(st.ok + st.failed);
      expect(rows.length).toBeGreaterThan(0);
      expect(rows.length).toBeLessThan(total);
      expect(new Set(rows.map((r) => r.id)).size).toBe(rows.length);
      expect(rows.filter((r) => r.status !== "ok").map((r) => r.error)).toEqual([]);
      // every node spent some of it, and the sum passed the budget
      const used = rows.reduce((n, r) => n + r.usage.prompt + r.usage.completion, 0);
      expect(used).toBeGreaterThanOrEqual(40_000);
      const nodes = new Set(rows.flatMap((r) => r.provenance.nodes));
      expect(nodes.size).toBeGreaterThan(1);
    } finally {
      await Promise.all([a!.close(), b!.close(), c[0]!.close()]);
      await sim.stop();
    }
  }, 90_000);

  test("cluster - results of a running job follow it to its end", async () => {
    const watch = watcher();
    const wf = slowFlow("followed", watch, 10, 2);
    const [a] = await startNodes(srv, ["f1"], { extra: [wf] });
    try {
      const seeds = Array.from({ length: 100 }, (_, i) => ({ id: `f${i}` }));
      const { id } = await a!.submit({ workflow: "followed", seeds, config: { concurrency: 10 } });
      const rows = await readResults(a!, id);
      expect(rows.length).toBe(100);
      expect((await a!.job(id))?.state).toBe("done");
    } finally {
      await a!.close();
    }
  }, 60_000);

  test("cluster - a row too large for one NATS message is stored whole through the object store, and with offloading off as a failed row saying so", async () => {
    const huge = defineWorkflow({
      name: "huge",
      description: "test workflow",
      seedSchema: z.looseObject({ id: z.string() }),
      configSchema: z.strictObject({}),
      roles: { big: { kind: "cpu", run: async () => ({ turns: [{ text: "x".repeat(2 * 1024 * 1024) }] }) } },
      start: () => ({ next: "big", vars: {} }),
      next: () => null,
      output: () => ({ output: "done", metrics: {} }),
    });
    const [a] = await startNodes(srv, ["h1"], { extra: [huge] });
    try {
      const { id } = await a!.submit({ workflow: "huge", seeds: [{ id: "h" }] });
      const st = await waitJob(a!, id);
      expect(st.ok).toBe(1);
      const [row] = await readResults(a!, id);
      expect(row.status).toBe("ok");
      expect(row.history[0].text.length).toBe(2 * 1024 * 1024);
    } finally {
      await a!.close();
    }
    const [off] = await startNodes(srv, ["h2"], { extra: [huge], offloadBytes: 0 });
    try {
      const { id } = await off!.submit({ workflow: "huge", seeds: [{ id: "h" }] });
      const st = await waitJob(off!, id);
      expect(st.failed).toBe(1);
      const [row] = await readResults(off!, id);
      expect(row.status).toBe("failed");
      expect(row.error).toMatch(/^row of \d+ bytes is over the \d+ bytes NATS takes in one message$/);
    } finally {
      await off!.close();
    }
  }, 30_000);
});
