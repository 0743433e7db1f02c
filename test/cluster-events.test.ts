import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { coralDummy } from "../plugins/coral-dummy/index.ts";
import { createApp } from "../src/api/app.ts";
import type { ClusterEvent, ClusterNode } from "../src/cluster/types.ts";
import { silentLogger } from "../src/log.ts";
import { Registry } from "../src/plugin/registry.ts";
import { encode } from "../src/protocol/codec.ts";
import { builtinWorkflows } from "../plugins/index.ts";
import { openNatsCluster } from "../src/store/index.ts";
import { DETERMINISM_JOB } from "./engine-cases.ts";
import { json } from "./support/api.ts";
import { startNodes, TEST_TIMINGS, waitJob } from "./support/cluster-nodes.ts";
import { metric } from "./support/join-process.ts";
import { type NatsServer, natsServerMissing, startNatsServer } from "./support/nats-server.ts";
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
  });

  afterAll(async () => {
    await srv?.close();
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
      expect(metric(a!.metrics(), "matrixd_garbage_total", 'subject="event"')).toBe(junk.length * 2);

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
      expect(metric(a!.metrics(), "matrixd_garbage_total", 'subject="event"')).toBe(junk.length * 2);
    } finally {
      await nats.close();
      await a!.close();
    }
  }, 60_000);
});
