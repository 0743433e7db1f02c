import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { Kvm } from "@nats-io/kv";
import { connect, headers, type NatsConnection } from "@nats-io/transport-node";
import { builtinWorkflows } from "../plugins/index.ts";
import { createApp } from "../src/api/app.ts";
import type { RunningClusterNode } from "../src/cluster/node.ts";
import { silentLogger } from "../src/log.ts";
import { Registry } from "../src/plugin/registry.ts";
import { Buckets, jobKey, Subjects } from "../src/store/names.ts";
import { startNodes, waitJob } from "./support/cluster-nodes.ts";
import { type NatsServer, natsServerMissing, startNatsServer } from "./support/nats-server.ts";
import { coralSeeds } from "./support/seeds.ts";
import { waitFor } from "./support/wait.ts";

const missing = natsServerMissing();
if (missing) console.warn(`cluster-garbage: ${missing}; skipped`);

/** Every line of a job's dataset, each checked to be JSON; the ids of its rows. */
async function download(node: RunningClusterNode, id: string): Promise<{ lines: string[]; ids: string[] }> {
  const lines: string[] = [];
  for await (const line of node.results(id)) lines.push(...line.split("\n"));
  const ids = lines.map((l) => (JSON.parse(l) as { id: string }).id);
  return { lines, ids };
}

/** An "ok" status header on garbage: what the tally once took for a row. */
function okHeaders() {
  const h = headers();
  h.set("Mx-Status", "ok");
  h.set("Mx-Usage", "1,1");
  return h;
}

describe.skipIf(missing !== undefined)("cluster garbage on matrixd's subjects (in-process nodes, open nats-server)", () => {
  let srv: NatsServer;
  let nodes: RunningClusterNode[];
  let nc: NatsConnection;
  beforeAll(async () => {
    srv = await startNatsServer();
    nodes = await startNodes(srv, ["g1", "g2"]);
    nc = await connect({ servers: srv.url });
  });
  afterAll(async () => {
    await nc?.close();
    for (const n of nodes ?? []) await n.close();
    await srv?.close();
  });

  test("cluster - messages with an ok status on a job's row subjects are not counted as rows", async () => {
    const job = "forged";
    const seeds = coralSeeds(300);
    // Forged before and while the job runs: on made-up subjects, and row-like bodies on them.
    for (let i = 0; i < 300; i++) nc.publish(`mx.row.${job}.fake${i}`, i % 2 ? "garbage" : JSON.stringify({ id: `fake${i}`, status: "ok" }), { headers: okHeaders() });
    await nc.flush();
    const a = nodes[0] as RunningClusterNode;
    const { id } = await a.submit({ workflow: "coral-dummy", seeds, config: { job } });
    for (let i = 300; i < 400; i++) nc.publish(`mx.row.${job}.fake${i}`, "garbage", { headers: okHeaders() });
    const st = await waitJob(a, id);
    expect(st.state).toBe("done");
    expect(st.ok + st.failed).toBe(300);
    const { ids } = await download(a, id);
    expect(ids.sort()).toEqual(seeds.map((s) => String(s.id)).sort());
  }, 60_000);

  test("cluster - garbage first on a real task's row subject does not take its row's place", async () => {
    const job = "first";
    const seeds = coralSeeds(200);
    // Before the job: not JSON, JSON over two lines, a row of another task, each with an ok status.
    for (let i = 0; i < 60; i++) {
      const sid = String(seeds[i]?.id);
      const body = [
        "not a row",
        `{"id": ${JSON.stringify(sid)},\n"status": "ok"}`,
        JSON.stringify({ id: "someone-else", job, status: "ok" }),
      ][i % 3] as string;
      nc.publish(Subjects.row(job, sid), body, { headers: okHeaders() });
    }
    await nc.flush();
    const b = nodes[1] as RunningClusterNode;
    const { id } = await b.submit({ workflow: "coral-dummy", seeds, config: { job } });
    const st = await waitJob(b, id, 45_000);
    expect(st.state).toBe("done");
    expect(st.ok + st.failed).toBe(200);
    const { lines, ids } = await download(b, id);
    expect(lines.length).toBe(200);
    expect(ids.sort()).toEqual(seeds.map((s) => String(s.id)).sort());
    // Each task's own row, and it alone, where garbage came first.
    for (let i = 0; i < 60; i++) {
      const row = JSON.parse((await b.task(id, String(seeds[i]?.id))) ?? "null") as { id: string; workflow: string } | null;
      expect(row?.id).toBe(String(seeds[i]?.id));
      expect(row?.workflow).toBe("coral-dummy");
    }
    // Garbage after the job's end is not a row either.
    nc.publish(Subjects.row(job, String(seeds[0]?.id)), "late garbage", { headers: okHeaders() });
    await nc.flush();
    expect((await download(b, id)).lines.length).toBe(200);
  }, 60_000);

  test("cluster - a row stored by an earlier matrixd (an ok row with no task header) is counted, from its body", async () => {
    const job = "earlier";
    const seeds = coralSeeds(20, "e");
    for (const seed of seeds) {
      const id = String(seed.id);
      const row = { id, job, workflow: "coral-dummy", trial: 0, seed, status: "ok", output: null, history: [], metrics: {}, usage: { prompt: 1, completion: 1 } };
      nc.publish(Subjects.row(job, id), JSON.stringify(row), { headers: okHeaders() });
    }
    await nc.flush();
    const a = nodes[0] as RunningClusterNode;
    const { id } = await a.submit({ workflow: "coral-dummy", seeds, config: { job } });
    const st = await waitJob(a, id);
    expect(st.state).toBe("done");
    expect(st.ok).toBe(20);
    expect((await download(a, id)).lines.length).toBe(20);
  }, 60_000);

  test("cluster - a job whose record is garbage is reported broken, and its download ends with an error", async () => {
    const job = "broken";
    const a = nodes[0] as RunningClusterNode;
    await a.submit({ workflow: "coral-dummy", seeds: coralSeeds(20_000), config: { job, concurrency: 8 } });
    const kv = await new Kvm(nc).open(Buckets.jobs);
    await kv.put(jobKey(job), new TextEncoder().encode("not a job record"));
    const started = Date.now();
    const error = async (p: Promise<unknown>) => p.then(() => "no error", (err: unknown) => String(err));
    await Bun.sleep(500);
    for (const n of nodes) {
      expect(await error(n.job(job))).toContain(`job record "${job}"`);
      expect(await error(download(n, job))).toContain(`job record "${job}"`);
    }
    // Over HTTP: the status and the download answer at once with the error, naming the record.
    const app = createApp(a, { registry: new Registry(builtinWorkflows), log: silentLogger });
    for (const path of [`/v1/jobs/${job}`, `/v1/jobs/${job}/results`]) {
      const res = await app.request(path, { signal: AbortSignal.timeout(10_000) });
      expect(res.status).toBe(500);
      expect(((await res.json()) as { error: string }).error).toContain(`job record "${job}"`);
    }
    expect(Date.now() - started).toBeLessThan(15_000);
    // Purging it is how it goes away, on every node.
    expect((await app.request(`/v1/jobs/${job}?purge=1`, { method: "DELETE" })).status).toBe(200);
    for (const n of nodes) await waitFor(`job ${job} gone on a node`, async () => (await n.job(job).catch(() => "broken")) === undefined, 10_000, 100);
    // The nodes go on: another job runs to its end.
    const { id } = await a.submit({ workflow: "coral-dummy", seeds: coralSeeds(30, "after"), config: { job: "after-broken" } });
    expect((await waitJob(nodes[1] as RunningClusterNode, id)).state).toBe("done");
  }, 60_000);
});
