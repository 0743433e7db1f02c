import { afterAll, describe, expect, test } from "bun:test";
import { parse as parseYaml } from "yaml";
import { startVars } from "../plugins/coral/flow.ts";
import { handOff } from "../src/bus/nats/index.ts";
import { silentLogger } from "../src/log.ts";
import { takeLarge } from "../src/protocol/claim.ts";
import { encode } from "../src/protocol/codec.ts";
import type { TaskState } from "../src/protocol/task.ts";
import { hopMsgId, openNatsCluster, Subjects } from "../src/store/index.ts";
import { startNodes, TEST_TIMINGS } from "./support/cluster-nodes.ts";
import { coralSeeds } from "./support/seeds.ts";
import { tempDir } from "./support/files.ts";
import { type JoinProcess, metric, spawnJoin, waitDone } from "./support/join-process.ts";
import { type NatsServer, natsServerMissing, startNatsServer } from "./support/nats-server.ts";
import { waitFor } from "./support/wait.ts";

/**
 * Task states and rows far over NATS's max_payload (1 MiB): their large
 * texts travel in the object store (claim checks). Real nats-server, real
 * `matrixd join` processes of the compiled binary, every hop through NATS.
 */

const missing = natsServerMissing();
if (missing) console.warn(`cluster-offload: ${missing}; skipped`);

const TURNS = 12;
const TASKS = 20;
/** one word (the sim counts words as tokens), 256 KiB */
const FILLER = "abcdefghijklmnop".repeat(16 * 1024);

/** Twelve LLM turns, each answered with a 256 KiB text that names its task and turn. */
const LONG_YAML = `
name: longtext
description: twelve long answers
seed: { type: object, properties: { id: { type: string } }, required: [id] }
vars: { i: 0 }
start: writer
roles:
  writer:
    kind: llm
    max_tokens: 1000
    messages: [ { role: user, content: "id={{ seed.id }} turn={{ vars.i }}" } ]
    set: { i: "vars.i + 1" }
    next:
      - { if: "vars.i >= ${TURNS}", then: end }
      - { then: writer }
output: { turns: "vars.i" }
maxSteps: 40
`;

const SIM = {
  timeScale: 0.001,
  contextTokens: 100_000_000,
  script: [{ match: "/id=(\\S+) turn=(\\d+)/", text: `{{1}}/{{2}}:${FILLER}` }],
};

const tmp = tempDir("matrixd-offload-");
let srv: NatsServer | undefined;
let procs: JoinProcess[] = [];

async function join(name: string, extra: Record<string, unknown> = {}): Promise<JoinProcess> {
  const config = {
    nats: { ackWaitSec: 3, memberTtlSec: 3 },
    sim: SIM,
    // every hop through NATS, so every state crosses the wire
    localFirst: false,
    log: { level: "info" },
    ...extra,
  };
  const p = await spawnJoin({ name, nats: srv!.url, dir: tmp.dir, config, args: ["--llm", "sim"] });
  procs.push(p);
  return p;
}

/** The OBJ_ streams (object store buckets) on the server. */
async function buckets(): Promise<string[]> {
  const nats = await openNatsCluster({ servers: [srv!.url], name: "lister", log: silentLogger, timings: { ackWaitMs: 3000, memberTtlMs: 3000 } });
  try {
    const out: string[] = [];
    for await (const si of nats.link.jsm.streams.list()) if (si.config.name.startsWith("OBJ_")) out.push(`${si.config.name}:${si.state.messages}`);
    return out;
  } finally {
    await nats.close();
  }
}

describe.skipIf(missing !== undefined)("cluster - large task states through the object store", () => {
  afterAll(async () => {
    await Promise.all(procs.filter((p) => p.alive).map((p) => p.kill9()));
    await srv?.close();
    if (process.env.MATRIXD_KEEP_LOGS) console.log(`cluster-offload: logs kept in ${tmp.dir}`);
    else tmp.remove();
  });

  test(
    "offload - twenty tasks of twelve 256 KiB turns through three nodes, one killed with kill -9 mid-job: every row ok and whole, and no object left once the job is purged",
    async () => {
      srv = await startNatsServer();
      const [a, b, c] = await Promise.all([join("o1"), join("o2"), join("o3")]);
      const seeds = Array.from({ length: TASKS }, (_, i) => ({ id: `s${i}` }));
      const res0 = await fetch(`${a!.url}/v1/jobs`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ definition: parseYaml(LONG_YAML), seeds, config: { concurrency: TASKS, seed: 1 } }),
      });
      expect(res0.status).toBe(201);
      const { id } = (await res0.json()) as { id: string };
      // b dies with its share of the job under way
      await waitFor("o2 to run steps", async () => metric(await b!.metrics(), "matrixd_steps_total") >= 20, 60_000, 50);
      await b!.kill9();
      expect((await a!.job(id)).state).toBe("running");
      const st = await waitDone(procs, id, 150_000);
      expect(st.state).toBe("done");
      const rows = await c!.results(id);
      expect(rows.length).toBe(TASKS);
      expect(new Set(rows.map((r) => r.id)).size).toBe(TASKS);
      for (const r of rows) {
        expect({ id: r.id, status: r.status, error: r.error }).toEqual({ id: r.id, status: "ok", error: undefined });
        const texts = (r.history as { role: string; text: string }[]).filter((t) => t.role === "writer").map((t) => t.text);
        expect(texts.length).toBe(TURNS);
        texts.forEach((t, i) => expect(t === `${r.id}/${i}:${FILLER}`).toBe(true));
      }
      // a row over max_payload read alone is whole too
      const one = await c!.get<{ history: { text: string }[] }>(`/v1/jobs/${id}/tasks/s3`);
      expect(one.history.filter((t) => t.text === `s3/${one.history.indexOf(t)}:${FILLER}`).length).toBe(TURNS);
      // the objects of the task states went with the rows and the job's end; the rows' stay until the purge
      const live = await buckets();
      expect(live.filter((n) => n.startsWith("OBJ_mx-hop-"))).toEqual([]);
      expect(live.some((n) => n.startsWith(`OBJ_mx-row-${id}:`))).toBe(true);
      expect(metric(await c!.metrics(), "matrixd_tasks_failed_total")).toBe(0);
      const res = await fetch(`${c!.url}/v1/jobs/${id}?purge=1`, { method: "DELETE" });
      expect(res.status).toBe(200);
      expect(await buckets()).toEqual([]);
    },
    240_000,
  );
});

describe.skipIf(missing !== undefined)("cluster - a task message referring to a missing object", () => {
  test("offload - the task fails with a reason naming the object; the next task, whole, goes on", async () => {
    const server = await startNatsServer();
    // the node hosts only the matcher: the job's own tasks never start, the two sent below are all it runs
    const [node] = await startNodes(server, ["g1"], { offloadBytes: 1024, roles: (_wf, role) => (role === "matcher" ? 4 : undefined) });
    const sender = await openNatsCluster({ servers: [server.url], name: "sender", log: silentLogger, timings: TEST_TIMINGS, offloadBytes: 1024 });
    try {
      const seeds = coralSeeds(3, "g");
      const { id } = await node!.submit({ workflow: "coral-dummy", seeds });
      const text = (i: number) => `${i}:${"long words ".repeat(500)}`;
      const state = (i: number): TaskState => ({
        v: 1,
        job: id,
        id: `g${i}`,
        trial: 0,
        workflow: "coral-dummy",
        next: "matcher",
        seed: seeds[i]!,
        history: [{ role: "teacher", text: text(i), at: Date.now(), ms: 1 }],
        vars: { ...startVars().vars, turn: 20 },
        attempts: {},
        steps: 3,
        timings: { admitted: Date.now(), updated: Date.now() },
        provenance: { nodes: [], endpoints: [], models: [] },
      });
      // g0's message names an object that was never written
      const broken = takeLarge(state(0), 1024, (sha) => `never-written/${sha}`);
      const env = { v: 1, state: broken.value, parts: broken.taken.map((t) => t.claim), sent: Date.now() };
      await sender.link.js.publish(Subjects.task("coral-dummy", "matcher"), encode(env), { msgID: hopMsgId(id, "g0", 3, {}) });
      // g1's goes as any large state does
      expect(await handOff(sender.link, state(1), undefined, { log: silentLogger, stop: () => false, parts: sender.parts })).toBe("stored");
      expect(sender.parts.stats.put).toBe(1);
      await waitFor("two rows", async () => (await node!.job(id))!.ok + (await node!.job(id))!.failed >= 2, 30_000, 50);
      // the job stays live (its own tasks never start): read the two rows by task
      const byId = { g0: JSON.parse((await node!.task(id, "g0"))!), g1: JSON.parse((await node!.task(id, "g1"))!) };
      expect(byId.g0.status).toBe("failed");
      expect(byId.g0.error).toContain(`object "never-written/${broken.taken[0]!.claim.sha256}" of bucket mx-hop-${id} is missing`);
      expect(byId.g1.status).toBe("ok");
      expect(byId.g1.history[0].text).toBe(text(1));
      expect(await node!.purge(id)).toBe(true);
    } finally {
      await sender.close();
      await node?.close();
      await server.close();
    }
  }, 60_000);
});
