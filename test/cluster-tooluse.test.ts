import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { builtinWorkflows } from "../plugins/index.ts";
import { type RunningClusterNode, startClusterNode } from "../src/cluster/node.ts";
import { createEnvService, parseEnvConfig } from "../src/env/index.ts";
import type { Env, EnvService } from "../src/env/types.ts";
import { createLlmClient } from "../src/llm/index.ts";
import { silentLogger } from "../src/log.ts";
import { type SimServer, startSim } from "../src/sim/index.ts";
import { readResults, TEST_TIMINGS, waitJob } from "./support/cluster-nodes.ts";
import { waitFor } from "./support/wait.ts";
import { ROOT } from "./support/matrixd.ts";
import { tempDir } from "./support/files.ts";
import { type NatsServer, natsServerMissing, startNatsServer } from "./support/nats-server.ts";

const missing = natsServerMissing();
const tmp = tempDir();
afterAll(() => tmp.remove());

/** A bubblewrap environment service for a node, its state under the test's folder. */
function bwrapEnv(node: string, capacity: number): Promise<EnvService> {
  return createEnvService(parseEnvConfig({ driver: "bwrap", node, stateDir: join(tmp.dir, node), capacity }), silentLogger);
}

/** A cluster node with its own environment service and an LLM client to the shared sim. */
function startEnvNode(name: string, env: EnvService, srv: NatsServer, sim: SimServer): Promise<RunningClusterNode> {
  return startClusterNode({
    name,
    nats: { servers: [srv.url] },
    workflows: builtinWorkflows,
    llm: createLlmClient({ endpoints: [{ url: `${sim.url}/v1`, maxConcurrency: 8 }] }),
    services: { env },
    log: silentLogger,
    timings: TEST_TIMINGS,
    heartbeatMs: 500,
    shareLlm: false,
  });
}

/**
 * For the describe it is called in: a nats-server, a sim with `simSlots`,
 * and one node per `[name, environments]` with its own bwrap environments
 * (as `wrap` returns them); all started before the tests and stopped after.
 */
function envCluster<E extends EnvService>(
  sim: { slots: number; timeScale: number },
  specs: readonly (readonly [string, number])[],
  wrap: (env: EnvService) => E,
) {
  const f = { srv: undefined as unknown as NatsServer, sim: undefined as unknown as SimServer, nodes: [] as RunningClusterNode[], envs: [] as E[] };
  beforeAll(async () => {
    f.srv = await startNatsServer();
    f.sim = await startSim(sim);
    chmodSync(tmp.dir, 0o755);
    for (const [name, capacity] of specs) {
      const env = wrap(await bwrapEnv(name, capacity));
      f.envs.push(env);
      f.nodes.push(await startEnvNode(name, env, f.srv, f.sim));
    }
  }, 30_000);
  afterAll(async () => {
    for (const n of f.nodes) await n.close();
    for (const e of f.envs) await e.close();
    await f.sim?.stop();
    await f.srv?.close();
  });
  return f;
}

describe.skipIf(missing !== undefined)("cluster with environments", () => {
  // Few LLM slots: hops overflow to the other node unless a task is pinned to its environment.
  const { nodes, envs } = envCluster({ slots: 4, timeScale: 0.01 }, [["tu-a", 8], ["tu-b", 8]], (e) => e);

  test("cluster - a tool-use task stays on the node holding its environment; every row ok; environments released", async () => {
    const seeds = readFileSync(join(ROOT, "configs/seeds/tool-use.jsonl"), "utf8").split("\n").filter(Boolean).slice(0, 24);
    const { id } = await nodes[0]!.submit({ workflow: "tool-use", seeds, config: { concurrency: 12 } });
    const status = await waitJob(nodes[1]!, id, 40_000);
    expect(status.state).toBe("done");
    const rows = await readResults(nodes[1]!, id);
    expect(rows.length).toBe(24);
    expect(rows.filter((r) => r.status !== "ok").map((r) => r.error)).toEqual([]);
    // After its setup step a task never left its node.
    expect(rows.every((r) => r.provenance.nodes.length === 1)).toBe(true);
    const members = await nodes[0]!.members();
    expect(members.map((m) => m.services.env?.driver).sort()).toEqual(["bwrap", "bwrap"]);
    expect(envs.map((e) => e.inUse())).toEqual([0, 0]);
  }, 120_000);
});

describe.skipIf(missing !== undefined)("cluster with environments: a node leaves mid-job", () => {
  // Its nodes start in the test, one of them to leave.
  const f = envCluster({ slots: 8, timeScale: 0.02 }, [], (e) => e);

  test("cluster - tasks whose environments were on a node that left start over on another node; every row ok, one per task", async () => {
    const open = async (name: string) => {
      const env = await bwrapEnv(name, 8);
      return { env, node: await startEnvNode(name, env, f.srv, f.sim) };
    };
    const stay = await open("tl-a");
    const leave = await open("tl-b");
    try {
      const seeds = readFileSync(join(ROOT, "configs/seeds/tool-use.jsonl"), "utf8").split("\n").filter(Boolean).slice(0, 30);
      const { id } = await leave.node.submit({ workflow: "tool-use", seeds, config: { concurrency: 16 } });
      await waitFor("the leaving node to hold environments in use", () => leave.env.inUse() >= 3, 20_000, 5);
      // It leaves with tasks in the middle of their conversations; what it held goes with it.
      await leave.node.close();
      await leave.env.close();
      const status = await waitJob(stay.node, id, 60_000);
      expect(status.state).toBe("done");
      const rows = await readResults(stay.node, id);
      expect(rows.length).toBe(30);
      expect(new Set(rows.map((r) => r.id)).size).toBe(30);
      expect(rows.filter((r) => r.status !== "ok").map((r) => r.error)).toEqual([]);
      // A task started over ran every step of its last start on the node that stayed.
      const restarted = rows.filter((r) => (r.provenance.attempts.restart ?? 0) > 0);
      expect(restarted.length).toBe(stay.node.engine.stats.restarts);
      expect(restarted.every((r) => r.provenance.nodes.at(-1) === "tl-a")).toBe(true);
      expect(stay.env.inUse()).toBe(0);
    } finally {
      await leave.node.close().catch(() => undefined);
      await leave.env.close().catch(() => undefined);
      await stay.node.close();
      await stay.env.close();
    }
  }, 120_000);
});

/** An environment service that counts the acquires that had to wait and the most environments alive at once. */
function watched(env: EnvService): EnvService & { waited: number; most: number } {
  const w = {
    driver: env.driver,
    capacity: env.capacity,
    waited: 0,
    most: 0,
    inUse: () => env.inUse(),
    async acquire(owner: string, spec?: Parameters<EnvService["acquire"]>[1], signal?: AbortSignal): Promise<Env> {
      if (env.inUse() >= env.capacity) w.waited++;
      const got = await env.acquire(owner, spec, signal);
      w.most = Math.max(w.most, env.inUse());
      return got;
    },
    find: (id: string) => env.find(id),
    onRelease: (listener: () => void) => env.onRelease?.(listener) ?? (() => {}),
    releaseOwner: (owner: string) => env.releaseOwner(owner),
    close: () => env.close(),
  };
  return w;
}

describe.skipIf(missing !== undefined)("cluster admission with few environments", () => {
  const { nodes, envs } = envCluster({ slots: 16, timeScale: 0.01 }, [["tg-a", 2], ["tg-b", 8]], watched);

  test("cluster - a node admits a tool-use task only while it has a free environment; no setup step waits", async () => {
    const seeds = readFileSync(join(ROOT, "configs/seeds/tool-use.jsonl"), "utf8").split("\n").filter(Boolean).slice(0, 16);
    const most = [0, 0];
    const sampler = setInterval(() => envs.forEach((e, i) => (most[i] = Math.max(most[i]!, e.inUse()))), 5);
    try {
      const { id } = await nodes[0]!.submit({ workflow: "tool-use", seeds, config: { concurrency: 12 } });
      const status = await waitJob(nodes[1]!, id, 40_000);
      expect(status.state).toBe("done");
      const rows = await readResults(nodes[1]!, id);
      expect(rows.length).toBe(16);
      expect(rows.filter((r) => r.status !== "ok").map((r) => r.error)).toEqual([]);
    } finally {
      clearInterval(sampler);
    }
    expect(envs.map((e) => e.waited)).toEqual([0, 0]);
    expect(Math.max(most[0]!, envs[0]!.most)).toBeLessThanOrEqual(2);
    // Both nodes took tasks.
    expect(envs.every((e) => e.most > 0)).toBe(true);
    expect(envs.map((e) => e.inUse())).toEqual([0, 0]);
  }, 120_000);
});
