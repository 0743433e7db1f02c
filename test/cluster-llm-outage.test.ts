import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { freePort } from "../src/util/net.ts";
import type { ClusterEvent } from "../src/protocol/event.ts";
import type { JobStatus } from "../src/protocol/job.ts";
import { tempDir } from "./support/files.ts";
import { type JoinProcess, spawnJoin, waitDone } from "./support/join-process.ts";
import { type NatsServer, natsServerMissing, startNatsServer } from "./support/nats-server.ts";
import { type SimProcess, startSims } from "./support/sim-llm.ts";
import { coralSeeds } from "./support/seeds.ts";
import { waitFor } from "./support/wait.ts";

/**
 * Two `matrixd join` nodes, each with its own LLM server (a real
 * `matrixd sim-llm`); one server is killed with kill -9 mid-job: its node
 * stops taking new seeds and holds its tasks in flight (an
 * `admission.paused` event in the feed, no failed row), the other node
 * takes every seed left, and once the server is started again on its port
 * the held tasks go on to every row ok (`admission.resumed`). With one
 * server for both, a short llm.waitOnlineMs and no server coming back, the
 * tasks fail naming the setting and the job still ends.
 */

const missing = natsServerMissing();
if (missing) console.warn(`cluster-llm-outage: ${missing}; skipped`);

const N = 400;
/** slow enough that the job is well under way, and far from done, when the server dies */
const SIM = ["--time-scale", "0.3", "--len-median", "40", "--max-len", "96"];

describe.skipIf(missing !== undefined)("cluster with its only LLM server down", () => {
  const tmp = tempDir("matrixd-outage-");
  let srv: NatsServer;
  let nodes: JoinProcess[] = [];
  let sims: SimProcess[] = [];

  beforeAll(async () => {
    srv = await startNatsServer();
  });
  afterEach(async () => {
    await Promise.all(nodes.filter((n) => n.alive).map((n) => n.kill9()));
    await Promise.all(sims.map((s) => s.kill()));
    nodes = [];
    sims = [];
  });
  afterAll(async () => {
    await srv?.close();
    tmp.remove();
  });

  const sim = async (port: number) => {
    const s = await startSims([...SIM, "--port", String(port)]);
    sims.push(s);
    return s;
  };
  /** two nodes, each with its own server (or both with the one) */
  const start = (tag: string, ports: [number, number], waitOnlineMs: number) =>
    Promise.all(
      ["a", "b"].map((n, i) =>
        spawnJoin({
          name: `${tag}${n}`,
          nats: srv.url,
          dir: tmp.dir,
          config: { llm: { backoffMs: 20, maxBackoffMs: 500, waitOnlineMs }, defaultSlots: 32, log: { level: "info" } },
          args: ["--llm", `http://127.0.0.1:${ports[i]}/v1`],
        }),
      ),
    );
  const events = async (node: JoinProcess, job: string): Promise<ClusterEvent[]> => {
    const res = await fetch(`${node.url}/v1/events?limit=1000`);
    const body = (await res.json()) as { events: ClusterEvent[] };
    return body.events.filter((e) => e.job === undefined || e.job === job);
  };
  const status = async (node: JoinProcess, job: string) => (await fetch(`${node.url}/v1/jobs/${job}`).then((r) => r.json())) as JobStatus;

  test("outage - one node's only server killed mid-job: that node pauses admission, the other takes every seed left, nothing fails, and once the server is back every row is ok", async () => {
    const [p1, p2] = [await freePort(), await freePort()];
    const first = await sim(p1);
    await sim(p2);
    nodes = await start("p", [p1, p2], 120_000);
    const [a, b] = nodes as [JoinProcess, JoinProcess];
    const { id } = await a.submit("coral", coralSeeds(N, "o"), { concurrency: 48, seed: 3 });
    await waitFor("the job to be under way", async () => (await status(a, id)).ok >= 20 || undefined, 60_000, 100);
    await first.kill();
    sims = sims.filter((s) => s !== first);
    await waitFor("an admission.paused event of the node whose server died", async () => (await events(b, id)).some((e) => e.kind === "admission.paused" && e.subject === a.name) || undefined, 30_000, 200);
    // The node still served goes on alone: every seed is admitted while the other's server is down
    // (a node that kept taking seeds would end up holding all of the job's concurrency, waiting).
    const drained = await waitFor("every seed admitted while one server is down", async () => {
      const st = await status(b, id);
      return st.queued === 0 ? st : undefined;
    }, 120_000, 250);
    expect(drained.failed).toBe(0);
    expect(drained.ok).toBeLessThan(N);
    await sim(p1);
    const st = await waitDone(nodes, id, 120_000);
    expect(st.state).toBe("done");
    expect(st.ok).toBe(N);
    expect(st.failed).toBe(0);
    const rows = await b.results(id);
    expect(rows.length).toBe(N);
    expect(new Set(rows.map((r) => r.id)).size).toBe(N);
    expect(rows.filter((r) => r.status !== "ok").map((r) => r.error)).toEqual([]);
    const kinds = (await events(a, id)).filter((e) => e.kind.startsWith("admission.")).map((e) => `${e.kind} ${e.subject}`);
    expect(kinds).toContain(`admission.resumed ${a.name}`);
    expect(kinds.filter((k) => k.endsWith(` ${b.name}`))).toEqual([]);
    expect(readFileSync(a.logPath, "utf8")).toContain('"event":"admission.paused"');
  }, 300_000);

  test("outage - the server never comes back: past llm.waitOnlineMs the tasks fail naming it, and the job ends", async () => {
    const port = await freePort();
    const first = await sim(port);
    nodes = await start("g", [port, port], 2000);
    const [a] = nodes as [JoinProcess, JoinProcess];
    const { id } = await a.submit("coral", coralSeeds(N, "g"), { concurrency: 48, seed: 3 });
    await waitFor("the job to be under way", async () => (await status(a, id)).ok >= 20 || undefined, 60_000, 100);
    await first.kill();
    sims = [];
    const st = await waitDone(nodes, id, 150_000);
    expect(st.state).toBe("done");
    expect(st.ok + st.failed).toBe(N);
    expect(st.failed).toBeGreaterThan(0);
    const rows = await a.results(id);
    expect(rows.length).toBe(N);
    for (const r of rows.filter((x) => x.status === "failed")) {
      expect(r.error).toMatch(/llm\.waitOnlineMs/);
    }
  }, 220_000);
});
