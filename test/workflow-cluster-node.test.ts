import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { builtinWorkflows } from "../plugins/index.ts";
import { createApp } from "../src/api/app.ts";
import { roleKey } from "../src/bus/bus.ts";
import type { RunningClusterNode } from "../src/cluster/node.ts";
import { createLlmClient } from "../src/llm/index.ts";
import { silentLogger } from "../src/log.ts";
import { loadPlugin, Registry } from "../src/plugin/registry.ts";
import { startSim } from "../src/sim/index.ts";
import { loadWorkflowFile, parseWorkflowText } from "../src/workflow/index.ts";
import { readResults, startNodes, waitJob } from "./support/cluster-nodes.ts";
import { json } from "./support/api.ts";
import { capturingLogger } from "./support/log.ts";
import { ROOT } from "./support/matrixd.ts";
import { type NatsServer, natsServerMissing, startNatsServer } from "./support/nats-server.ts";
import { BROKEN, COUNTER_YAML, problemsOf } from "./support/workflow-defs.ts";

/**
 * Jobs that carry their workflow on in-process cluster nodes over a real
 * nats-server: the nodes compile and host it when they see the job, with
 * no restart; a node that cannot compile it leaves its tasks to others.
 */

const missing = natsServerMissing();
if (missing) console.warn(`workflow-cluster-node: ${missing}; skipped`);

const TOKEN = "carried-node-token";
const auth = { Authorization: `Bearer ${TOKEN}` };

/** `ts` roles that run the echo plugin's roles: only a node with that plugin can run it. */
const ECHO_FILE = `
name: echo-file
seed: { type: object, properties: { word: { type: string }, bounces: { type: integer } }, required: [word, bounces] }
vars: { n: 0 }
start: ping
roles:
  ping: { kind: ts, workflow: echo, role: ping, next: pong }
  pong:
    kind: ts
    workflow: echo
    role: pong
    next:
      - { if: "vars.n >= seed.bounces", then: end }
      - { then: ping }
output: { word: "seed.word", n: "vars.n" }
metrics: { bounces: "vars.n" }
`;

describe.skipIf(missing !== undefined)("carried workflow on cluster nodes", () => {
  let srv: NatsServer;
  const nodes: RunningClusterNode[] = [];

  beforeAll(async () => {
    srv = await startNatsServer();
  }, 30_000);

  afterAll(async () => {
    await Promise.allSettled(nodes.map((n) => n.close()));
    await srv?.close();
  });

  test("carried - writer-critic submitted to one node runs there and on a node joining mid-job, neither having heard of it; rows carry its hash, once per task", async () => {
    const sim = await startSim({ slots: 16, timeScale: 0.03 });
    try {
      const llm = () => createLlmClient({ endpoints: [{ url: `${sim.url}/v1`, maxConcurrency: 16 }] });
      const [a] = await startNodes(srv, ["wc-a"], { llm: llm(), shareLlm: false });
      nodes.push(a!);
      const wc = loadWorkflowFile(join(ROOT, "configs/workflows/writer-critic.yaml"));
      const name = wc.workflow.name;
      expect(name).toBe(`writer-critic@${wc.hash.slice(0, 12)}`);

      const registry = new Registry(builtinWorkflows);
      const app = createApp(a!, { registry, token: TOKEN, log: silentLogger });
      const seeds = Array.from({ length: 80 }, (_, i) => ({ id: `w${i}`, question: `What is ${i} and ${i}?` }));
      const res = await app.request("/v1/jobs", {
        method: "POST",
        headers: { ...auth, "content-type": "application/json" },
        body: JSON.stringify({ definition: wc.definition, seeds, config: { seed: 2, concurrency: 16 } }),
      });
      expect(res.status).toBe(201);
      const { id } = await json(res);
      // a node that joins while the job runs takes it up too
      const [b] = await startNodes(srv, ["wc-b"], { llm: llm(), shareLlm: false });
      nodes.push(b!);
      expect((await b!.job(id))?.state).toBe("running");
      const st = await waitJob(b!, id, 60_000);
      expect(st).toMatchObject({ state: "done", workflow: name, total: 80, ok: 80, failed: 0 });
      expect(Object.keys(st.metrics ?? {}).sort()).toEqual(["approved", "rounds"]);

      const rows = await readResults(b!, id);
      expect(rows).toHaveLength(80);
      expect(new Set(rows.map((r) => r.id)).size).toBe(80);
      expect(rows.every((r) => r.workflow === name && r.provenance.workflow_hash === wc.hash)).toBe(true);
      // both nodes compiled and hosted it, its LLM roles in the shared group of LLM slots
      for (const n of [a!, b!]) {
        for (const role of ["writer", "critic", "revise"]) expect(n.bus.hosts(roleKey(name, role))).toBe(true);
      }
      const load = b!.figures();
      expect(load[roleKey(name, "writer")]?.slots).toBeGreaterThan(0);
      expect(Object.keys(b!.bus.groups())).toContain("llm");
      const ran = new Set(rows.flatMap((r) => r.provenance.nodes));
      expect([...ran].sort()).toEqual(["wc-a", "wc-b"]);
    } finally {
      await Promise.allSettled(nodes.splice(0).map((n) => n.close()));
      await sim.stop();
    }
  }, 90_000);

  test("carried - a node without the plugin a ts role names logs it once and leaves the job's tasks to the node that has it", async () => {
    const echo = await loadPlugin(join(ROOT, "test/fixtures/echo-workflow.js"));
    const cap = capturingLogger("debug");
    const [a] = await startNodes(srv, ["echo-a"], { extra: echo, defaultSlots: 8 });
    const [b] = await startNodes(srv, ["plain-b"], { log: cap.log, defaultSlots: 8 });
    nodes.push(a!, b!);
    try {
      const registry = new Registry([...builtinWorkflows, ...echo]);
      const def = parseWorkflowText(ECHO_FILE, "echo-file.yaml", { workflows: (n) => (registry.names().includes(n) ? registry.get(n) : undefined) });
      const ids: string[] = [];
      for (const j of [0, 1]) {
        const seeds = Array.from({ length: 30 }, (_, i) => ({ id: `e${j}-${i}`, word: `w${i}`, bounces: 1 + (i % 3) }));
        ids.push((await a!.submit({ definition: def.definition, seeds })).id);
      }
      for (const id of ids) {
        const st = await waitJob(b!, id, 30_000);
        // the node that cannot run it still reads its metrics: bounces 1, 2, 3 in turn
        expect(st).toMatchObject({ state: "done", ok: 30, failed: 0, metrics: { bounces: 2 } });
        const rows = await readResults(b!, id);
        expect(rows).toHaveLength(30);
        expect(rows.every((r) => r.provenance.workflow_hash === def.hash && r.provenance.nodes.join() === "echo-a")).toBe(true);
        expect(rows.find((r) => r.id.endsWith("-2"))?.output).toEqual({ word: "w2", n: 3 });
      }
      const warned = cap.lines().filter((l) => l.msg === "this node cannot run a workflow a job carries; its tasks are left to other nodes");
      expect(warned).toHaveLength(1);
      expect(String(warned[0]?.err)).toContain('no workflow "echo" on this node');
      expect(b!.bus.hosts(roleKey(def.workflow.name, "ping"))).toBe(false);
      expect(a!.bus.hosts(roleKey(def.workflow.name, "ping"))).toBe(true);
    } finally {
      await Promise.allSettled(nodes.splice(0).map((n) => n.close()));
    }
  }, 60_000);

  test("carried - a broken definition, or a record past one NATS message, is refused; two definitions of one name run side by side", async () => {
    const [a, b] = await startNodes(srv, ["two-a", "two-b"], { defaultSlots: 8 });
    nodes.push(a!, b!);
    try {
      await expect(a!.submit({ definition: BROKEN, seeds: [{ id: "x" }] })).rejects.toMatchObject({ problems: problemsOf(BROKEN) });
      const first = parseWorkflowText(COUNTER_YAML, "counter.yaml");
      // a record past one NATS message (1 MiB by default) is refused before anything is stored, whole or streamed
      const before = (await a!.jobs()).length;
      const huge = { definition: first.definition, config: { options: { label: "x".repeat(1_100_000) } } };
      await expect(a!.submit({ ...huge, seeds: [{ n: 1 }] })).rejects.toThrow(/the job's record is \d+ bytes \(its workflow definition \d+ bytes\), more than the \d+ one NATS message may have here/);
      await expect(a!.intake(huge)).rejects.toThrow("one NATS message may have here");
      expect((await a!.jobs()).length).toBe(before);
      const second = parseWorkflowText(COUNTER_YAML.replace('label: "options.label"', 'label: "options.label + \'-2\'"'), "counter.yaml");
      expect(second.workflow.name).not.toBe(first.workflow.name);
      const seeds = Array.from({ length: 40 }, (_, i) => ({ id: `c${i}`, n: 1 + (i % 5) }));
      const [j1, j2] = await Promise.all([a!.submit({ definition: first.definition, seeds }), b!.submit({ definition: second.definition, seeds })]);
      for (const [job, def, label] of [
        [j1, first, "a"],
        [j2, second, "a-2"],
      ] as const) {
        const st = await waitJob(a!, job.id, 30_000);
        expect(st).toMatchObject({ state: "done", ok: 40, workflow: def.workflow.name });
        const rows = await readResults(b!, job.id);
        expect(rows).toHaveLength(40);
        expect(rows.every((r) => r.workflow === def.workflow.name && r.provenance.workflow_hash === def.hash && r.output.label === label)).toBe(true);
      }
    } finally {
      await Promise.allSettled(nodes.splice(0).map((n) => n.close()));
    }
  }, 60_000);
});
