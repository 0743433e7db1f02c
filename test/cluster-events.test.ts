import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { coralDummy } from "../plugins/coral-dummy/index.ts";
import { createApp } from "../src/api/app.ts";
import type { ClusterEvent, ClusterNode } from "../src/cluster/types.ts";
import { silentLogger } from "../src/log.ts";
import { Registry } from "../src/plugin/registry.ts";
import { encode } from "../src/protocol/codec.ts";
import { builtinWorkflows } from "../plugins/index.ts";
import { openNatsCluster } from "../src/store/index.ts";
import { createLlmClient } from "../src/llm/index.ts";
import { startSim } from "../src/sim/index.ts";
import { freePort } from "../src/util/net.ts";
import { DETERMINISM_JOB } from "./engine-cases.ts";
import { coralSeeds } from "./support/seeds.ts";
import { tempDir } from "./support/files.ts";
import { type JoinProcess, metric, spawnJoin, waitDone } from "./support/join-process.ts";
import { MATRIXD, matrixdBin } from "./support/matrixd.ts";
import { json } from "./support/api.ts";
import { startNodes, TEST_TIMINGS, waitJob } from "./support/cluster-nodes.ts";
import { type NatsServer, natsServerMissing, startNatsServer } from "./support/nats-server.ts";
import { serverPids } from "./support/procs.ts";
import { waitFor } from "./support/wait.ts";

/**
 * The events feed on real nodes and a real nats-server: members joining,
 * leaving and lost, tasks taken over, endpoints down and up, jobs changing
 * state; each stored once however many nodes saw it, read back from any
 * node through GET /v1/events.
 */

const missing = natsServerMissing();
if (missing) console.warn(`cluster-events: ${missing}; skipped`);

let srv: NatsServer;
const tmp = tempDir("matrixd-events-");

/** `matrixd sim-llm` on a given port (started again on the same one after a kill); resolves once it listens. */
async function simAt(port: number): Promise<{ kill(): Promise<void> }> {
  const proc = Bun.spawn([...MATRIXD, "sim-llm", "--port", String(port)], { stdin: "ignore", stdout: "pipe", stderr: "ignore" });
  const reader = proc.stdout.getReader();
  let text = "";
  const deadline = setTimeout(() => proc.kill(9), 20_000);
  while (!text.includes("listening on")) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`sim-llm on port ${port} did not start: ${text}`);
    text += new TextDecoder().decode(value);
  }
  clearTimeout(deadline);
  void (async () => {
    while (!(await reader.read()).done) {}
  })().catch(() => {});
  return {
    async kill() {
      proc.kill(9);
      await proc.exited;
    },
  };
}

/** Every event of the feed, read through a node (oldest first). */
async function feed(node: ClusterNode): Promise<ClusterEvent[]> {
  const out: ClusterEvent[] = [];
  for (;;) {
    const page = await node.events({ after: out.at(-1)?.seq ?? 0, limit: 1000 });
    if (page.length === 0) return out;
    out.push(...page);
  }
}

const of = (events: ClusterEvent[], kind: string, subject?: string) =>
  events.filter((e) => e.kind === kind && (subject === undefined || e.subject === subject));

/** Wait until the feed has an event of `kind` (about `subject`); bounded. */
function waitEvent(node: ClusterNode, kind: string, subject?: string, timeoutMs = 20_000): Promise<ClusterEvent> {
  return waitFor(`a ${kind} event${subject ? ` about ${subject}` : ""}`, async () => of(await feed(node), kind, subject)[0], timeoutMs, 100);
}

describe.skipIf(missing !== undefined)("cluster events", () => {
  beforeAll(async () => {
    srv = await startNatsServer();
    // the kill -9 test runs the compiled binary: built once, here, when the sources are newer
    await matrixdBin();
  }, 180_000);

  afterAll(async () => {
    await srv?.close();
    tmp.remove();
  });

  test("cluster events - a node joining and leaving cleanly is one member.joined and one member.left, and job changes are in the feed", async () => {
    const [a] = await startNodes(srv, ["ev-a"]);
    const [b] = await startNodes(srv, ["ev-b"]);
    try {
      await waitEvent(a!, "member.joined", "ev-b");
      const { id } = await b!.submit({
        workflow: coralDummy.name,
        seeds: DETERMINISM_JOB.seeds.slice(0, 20),
        config: { concurrency: 10, seed: DETERMINISM_JOB.seed, options: DETERMINISM_JOB.options },
      });
      await waitJob(a!, id);
      const done = await waitEvent(a!, "job.done");
      expect(done.job).toBe(id);
      expect(done.message).toContain("20 ok");
      // both nodes have seen b for a few member views: still one entry for its joining
      await Bun.sleep(2500);
      const all = await feed(a!);
      expect(of(all, "member.joined", "ev-b").length).toBe(1);
      expect(of(all, "member.joined", "ev-a").length).toBe(1);
      expect(of(all, "job.submitted").map((e) => [e.job, e.node])).toEqual([[id, "ev-b"]]);
      expect(of(all, "job.done").length).toBe(1);
      // a job's own events, from the other node
      expect((await b!.events({ job: id })).map((e) => e.kind)).toEqual(["job.submitted", "job.done"]);

      await b!.close();
      const left = await waitEvent(a!, "member.left", "ev-b");
      expect(left.node).toBe("ev-b");
      // a clean leave is no loss, however long the others watch
      await Bun.sleep(TEST_TIMINGS.memberTtlMs + 4500);
      const after = await feed(a!);
      expect(of(after, "member.lost", "ev-b")).toEqual([]);
      expect(of(after, "member.left", "ev-b").length).toBe(1);
    } finally {
      await Promise.all([a!.close(), b!.close()]);
    }
  }, 60_000);

  test("cluster events - GET /v1/events pages with after, answers 400 naming a bad parameter, and skips garbage on the events subjects", async () => {
    const [a] = await startNodes(srv, ["ev-c"]);
    const app = createApp(a!, { registry: new Registry(builtinWorkflows), token: "tok" });
    const get = (q: string, token = "tok") => app.request(`/v1/events${q}`, { headers: { authorization: `Bearer ${token}` } });
    const nats = await openNatsCluster({ servers: [srv.url], name: "garbage", log: silentLogger, timings: TEST_TIMINGS });
    try {
      expect((await get("", "wrong")).status).toBe(401);
      for (const [q, name] of [
        ["?limit=abc", "limit"],
        ["?limit=0", "limit"],
        ["?limit=1001", "limit"],
        ["?after=-1", "after"],
        ["?after=1.5", "after"],
        ["?job=", "job"],
      ] as const) {
        const res = await get(q);
        expect(res.status).toBe(400);
        expect((await json(res)).error).toStartWith(name);
      }
      // garbage first, then real events after it
      const junk = [new Uint8Array([0xff, 0x00, 0x13]), new TextEncoder().encode("not cbor"), encode({ kind: "member.lost", node: 1 })];
      for (const data of junk) {
        await nats.link.js.publish("mx.event.junk.x.~", data);
        await nats.link.js.publish("mx.event.member.lost.~", data);
      }
      for (let i = 0; i < 5; i++) {
        await a!.submit({ workflow: coralDummy.name, seeds: DETERMINISM_JOB.seeds.slice(0, 2), config: { options: DETERMINISM_JOB.options } });
      }
      const all = await feed(a!);
      expect(of(all, "job.submitted").length).toBeGreaterThanOrEqual(5);
      expect(metric(await a!.metrics(), "matrixd_garbage_total", 'subject="event"')).toBe(junk.length * 2);

      // pages of two, from the start, give the whole feed once, in order
      const paged: ClusterEvent[] = [];
      for (let after = 0, pages = 0; pages < 100; pages++) {
        const res = await get(`?after=${after}&limit=2`);
        expect(res.status).toBe(200);
        const { events } = (await json(res)) as { events: ClusterEvent[] };
        expect(events.length).toBeLessThanOrEqual(2);
        if (events.length === 0) break;
        paged.push(...events);
        after = events.at(-1)!.seq;
      }
      expect(paged).toEqual(all);
      expect(paged.map((e) => e.seq)).toEqual([...paged.map((e) => e.seq)].sort((x, y) => x - y));
      // at the end of the feed: nothing; without after: the latest
      const last = all.at(-1)!.seq;
      expect((await json(await get(`?after=${last}`))).events).toEqual([]);
      expect((await json(await get("?limit=3"))).events).toEqual(all.slice(-3));
      // garbage read again is not counted again
      expect(metric(await a!.metrics(), "matrixd_garbage_total", 'subject="event"')).toBe(junk.length * 2);
    } finally {
      await nats.close();
      await a!.close();
    }
  }, 60_000);

  test("cluster events - an endpoint that dies and comes back is one endpoint.down and one endpoint.up, whichever nodes use it", async () => {
    const port = await freePort();
    const url = `http://127.0.0.1:${port}/v1`;
    let sim = await simAt(port);
    const client = () => createLlmClient({ endpoints: [{ url, metrics: true }] });
    const clients = [client(), client()];
    // each node its own client of the same server
    const [f] = await startNodes(srv, ["ev-f"], { llm: clients[0] });
    const [h] = await startNodes(srv, ["ev-h"], { llm: clients[1] });
    const count = async (kind: string) => of(await feed(f!), kind, url).length;
    try {
      await sim.kill();
      await waitEvent(f!, "endpoint.down", url);
      sim = await simAt(port);
      const up = await waitEvent(h!, "endpoint.up", url);
      expect(up.message).toContain("up again");
      // both nodes saw it go and come: one entry each
      await Bun.sleep(3000);
      expect(await count("endpoint.down")).toBe(1);
      expect(await count("endpoint.up")).toBe(1);
      // the next time it goes is news again
      await sim.kill();
      await waitFor("a second endpoint.down", async () => (await count("endpoint.down")) === 2, 20_000, 100);
      await Bun.sleep(3000);
      expect(await count("endpoint.down")).toBe(2);
    } finally {
      await sim.kill();
      await Promise.all([f!.close(), h!.close()]);
      await Promise.all(clients.map((c) => c.close()));
    }
  }, 90_000);

  test("cluster events - a node killed with kill -9 mid-job is one member.lost, the survivors count the tasks they took over, and the job ends with every row", async () => {
    const N = 1500;
    const config = { nats: { ackWaitSec: 3, memberTtlSec: 3 }, sim: { lenMedian: 40, maxLen: 128, timeScale: 0.06 } };
    const procs: JoinProcess[] = [];
    try {
      for (const name of ["ev-p1", "ev-p2", "ev-p3"]) {
        procs.push(await spawnJoin({ name, nats: srv.url, dir: tmp.dir, config, args: ["--llm", "sim"] }));
      }
      const [p1, p2, p3] = procs as [JoinProcess, JoinProcess, JoinProcess];
      const events = async (q = "") => (await p1.get<{ events: ClusterEvent[] }>(`/v1/events${q}`)).events;
      const { id } = await p1.submit("coral", coralSeeds(N, "k"), { seed: 1, concurrency: 600 });
      // p2 holds tasks when it dies
      await waitFor("p2 to run steps", async () => metric(await p2.metrics(), "matrixd_steps_running") > 0, 30_000, 20);
      await Bun.sleep(500);
      await p2.kill9();
      const st = await waitDone([p1, p3], id, 120_000);
      expect(st.state).toBe("done");
      const rows = await p3.results(id);
      expect(rows.length).toBe(N);
      expect(new Set(rows.map((r) => r.id)).size).toBe(N);

      const lost = await waitFor("a member.lost of ev-p2", async () => of(await events(), "member.lost", "ev-p2")[0], 30_000, 200);
      expect(lost.message).toMatch(/heartbeat stopped \d+\.\d s ago/);
      const taken = await waitFor("a tasks.taken_over from ev-p2", async () => of(await events(), "tasks.taken_over", "ev-p2")[0], 60_000, 200);
      expect(taken.count).toBeGreaterThan(0);
      expect(["ev-p1", "ev-p3"]).toContain(taken.node);
      // both survivors saw it vanish: still one entry; and it never left cleanly
      await Bun.sleep(3000);
      const all = await events("?limit=1000");
      expect(of(all, "member.lost", "ev-p2").length).toBe(1);
      expect(of(all, "member.left", "ev-p2")).toEqual([]);
      expect(of(all, "job.submitted").filter((e) => e.job === id).length).toBe(1);
      expect(of(all, "job.done").filter((e) => e.job === id).length).toBe(1);
      // each survivor that took some over says so once
      const takers = of(all, "tasks.taken_over", "ev-p2").map((e) => e.node);
      expect(new Set(takers).size).toBe(takers.length);
      // each survivor saw it and logged it, and the feed kept one
      expect(p1.log(1_000_000)).toContain('"event":"member.lost","subject":"ev-p2"');
      expect(p3.log(1_000_000)).toContain('"event":"member.lost","subject":"ev-p2"');
    } finally {
      await Promise.all(procs.filter((p) => p.alive).map((p) => p.kill9()));
    }
  }, 240_000);

  test("cluster events - a budget reached, a job cancelled and one purged are each one entry of the job's events", async () => {
    const sim = await startSim({ slots: 16, timeScale: 0.02 });
    const llm = createLlmClient({ endpoints: [{ url: `${sim.url}/v1`, maxConcurrency: 16 }] });
    const [a, b] = await startNodes(srv, ["ev-j1", "ev-j2"], { llm });
    try {
      const { id } = await a!.submit({ workflow: "coral", seeds: coralSeeds(400, "b"), config: { seed: 1, concurrency: 8, budget: { tokens: 3000 } } });
      const st = await waitJob(b!, id, 60_000);
      expect(st.budgetReached).toBeDefined();
      const mine = await waitFor("the job's done event", async () => {
        const evs = await b!.events({ job: id });
        return evs.some((e) => e.kind === "job.done") && evs;
      }, 20_000, 100);
      expect(mine.map((e) => e.kind)).toEqual(["job.submitted", "budget.reached", "job.done"]);
      expect(mine[1]!.message).toContain("tokens of 3,000");
      expect(mine[2]!.message).toContain("at its budget");

      const long = await a!.submit({ workflow: coralDummy.name, seeds: coralSeeds(3000, "c"), config: { concurrency: 2, options: DETERMINISM_JOB.options } });
      expect(await b!.cancel(long.id)).toBe(true);
      expect(await a!.purge(long.id)).toBe(true);
      const kinds = async () => (await a!.events({ job: long.id })).map((e) => `${e.kind} ${e.node}`);
      await waitFor("the purge in the feed", async () => (await kinds()).length === 3, 10_000, 100);
      expect(await kinds()).toEqual(["job.submitted ev-j1", "job.cancelled ev-j2", "job.purged ev-j1"]);
    } finally {
      await Promise.all([a!.close(), b!.close()]);
      await llm.close();
      await sim.stop();
    }
  }, 90_000);

  test("cluster events - a supervised LLM server killed is one llm.restarted saying why, with its endpoint going down and up", async () => {
    const marker = `ev-sup-${process.pid}`;
    const sup = `${marker}=${MATRIXD.join(" ")} sim-llm --port {port} --model ${marker}`;
    const p = await spawnJoin({ name: "ev-s1", nats: srv.url, dir: tmp.dir, config: { nats: { ackWaitSec: 3, memberTtlSec: 3 } }, args: ["--supervise", sup], timeoutMs: 60_000 });
    try {
      const events = async () => (await p.get<{ events: ClusterEvent[] }>("/v1/events?limit=1000")).events.filter((e) => e.node === "ev-s1");
      const victim = await waitFor("the supervised server", () => serverPids(marker)[0], 20_000, 100);
      process.kill(victim, "SIGKILL");
      const restarted = await waitFor("an llm.restarted event", async () => of(await events(), "llm.restarted", marker)[0], 30_000, 200);
      expect(restarted.count).toBe(1);
      expect(restarted.message).toContain("exited with code");
      const up = await waitFor("its endpoint up again", async () => of(await events(), "endpoint.up")[0], 30_000, 200);
      const all = await events();
      expect(of(all, "endpoint.down", up.subject).length).toBe(1);
      expect(of(all, "endpoint.down")[0]!.seq).toBeLessThan(up.seq);
      expect(of(all, "llm.restarted").length).toBe(1);
      expect(p.log(200_000)).toContain('"event":"llm.restarted"');
    } finally {
      await p.term();
    }
  }, 120_000);

  test("cluster events - a nats-server restart loses the member view for a while, yet no member is reported lost", async () => {
    const nodes = await startNodes(srv, ["ev-r1", "ev-r2", "ev-r3"]);
    try {
      const names = nodes.map((n) => n.name).sort();
      const view = async () => (await nodes[0]!.members()).map((m) => m.node).sort();
      await waitFor("all three in the view", async () => JSON.stringify(await view().catch(() => [])) === JSON.stringify(names), 15_000, 200);
      const before = (await feed(nodes[0]!)).at(-1)?.seq ?? 0;
      await srv.restart();
      await waitFor("all three in the view again", async () => JSON.stringify(await view().catch(() => [])) === JSON.stringify(names), 30_000, 200);
      // past the time a loss would be concluded
      await Bun.sleep(2 * TEST_TIMINGS.memberTtlMs + 6000);
      const since = await nodes[1]!.events({ after: before });
      expect(since.filter((e) => e.kind === "member.lost" || e.kind === "member.left")).toEqual([]);
    } finally {
      await Promise.all(nodes.map((n) => n.close()));
    }
  }, 90_000);
});
