import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { jetstreamManager, type JetStreamManager } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { BUCKET_STREAMS } from "../src/store/setup.ts";
import { openNatsCluster, Streams } from "../src/store/index.ts";
import { comparable } from "./engine-cases.ts";
import { type JoinProcess, metric, spawnJoin, waitDone } from "./support/join-process.ts";
import { matrixdBin, referenceRun, runProcess } from "./support/matrixd.ts";
import { coralSeeds } from "./support/seeds.ts";
import { tempDir } from "./support/files.ts";
import { capturingLogger } from "./support/log.ts";
import { waitFor } from "./support/wait.ts";
import { type NatsServerCluster, natsServerMissing, startNatsCluster, startNatsServer } from "./support/nats-server.ts";

/**
 * matrixd on a 3-server NATS cluster with `nats.replicas: 3`: every stream
 * and bucket has three copies, so a nats-server killed with SIGKILL in the
 * middle of a job loses nothing. `matrixd join` processes of the compiled
 * binary, each given all three server URLs; the dataset is compared with
 * `matrixd run`'s for the same seeds and settings.
 */

const missing = natsServerMissing();
if (missing) console.warn(`cluster-nats-r3: ${missing}; skipped`);

const SIM = { lenMedian: 40, maxLen: 128, timeScale: 0.02 };
const JOB = { seed: 1, concurrency: 600 };
const N = 1500;
// The nodes' sim runs slower than the reference's, so the job is still well under way when a server dies;
// its answers, and so the dataset, do not depend on its speed.
const CONFIG = { nats: { ackWaitSec: 3, memberTtlSec: 3, replicas: 3 }, sim: { ...SIM, timeScale: 0.05 }, log: { level: "info" } };
const ALL_STREAMS = [...Object.values(Streams), ...BUCKET_STREAMS];

const tmp = tempDir("matrixd-nats-r3-");
const seeds = coralSeeds(N, "r");
let nats: NatsServerCluster;
let nc: NatsConnection;
let jsm: JetStreamManager;
// biome-ignore lint/suspicious/noExplicitAny: rows read back
let reference: any[] = [];
const procs: JoinProcess[] = [];

const logs = () => procs.map((p) => `--- ${p.name}\n${p.log(1500)}`).join("\n");

/** Replicas of each of matrixd's streams and buckets, by stream name. */
async function replicasOf(): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const name of ALL_STREAMS) out[name] = (await jsm.streams.info(name)).config.num_replicas;
  return out;
}

/** How many matrixd nodes (connections named q<N>) a server has, from its /connz. */
async function connectedNodes(monitorPort: number): Promise<number> {
  const res = await fetch(`http://127.0.0.1:${monitorPort}/connz?limit=1024`, { signal: AbortSignal.timeout(5000) });
  const body = (await res.json()) as { connections?: { name?: string }[] };
  return (body.connections ?? []).filter((c) => /^q\d$/.test(c.name ?? "")).length;
}

describe.skipIf(missing !== undefined)("matrixd on a 3-server NATS cluster with replicas 3", () => {
  beforeAll(async () => {
    nats = await startNatsCluster();
    nc = await connect({ servers: nats.urls });
    jsm = await jetstreamManager(nc);
    reference = await referenceRun(tmp.dir, seeds, { sim: SIM, ...JOB }, 60_000);
    expect(reference.length).toBe(N);
  }, 90_000);

  afterAll(async () => {
    await Promise.all(procs.filter((p) => p.alive).map((p) => p.kill9()));
    await nc?.close();
    await nats?.close();
    if (process.env.MATRIXD_KEEP_LOGS) console.log(`cluster-nats-r3: logs kept in ${tmp.dir}`);
    else tmp.remove();
  });

  test("nats-r3 - config: replicas out of range or of the wrong type exit 2 naming nats.replicas; more than 1 on a single nats-server exits 2 saying so", async () => {
    const bin = await matrixdBin();
    const join = async (cfg: unknown, url: string) => {
      writeFileSync(tmp.path("bad.json"), JSON.stringify(cfg));
      return runProcess([bin, "join", "--nats", url, "--config", tmp.path("bad.json"), "--log-level", "error"], { timeoutMs: 20_000 });
    };
    for (const replicas of [0, 6, 2.5, "3"]) {
      const r = await join({ nats: { replicas } }, "nats://127.0.0.1:9");
      expect({ replicas, code: r.code }).toEqual({ replicas, code: 2 });
      expect(r.stderr).toContain('"nats.replicas"');
    }
    const r = await join({ nats: { replicaz: 3 } }, "nats://127.0.0.1:9");
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('unknown key "nats.replicaz"');
    const single = await startNatsServer();
    try {
      const s = await join({ nats: { replicas: 3 } }, single.url);
      expect(s.code).toBe(2);
      expect(s.stderr).toMatch(/nats\.replicas is 3, but the NATS server at .* is not part of a cluster/);
    } finally {
      await single.close();
    }
  }, 30_000);

  test("nats-r3 - streams and buckets made with 1 replica are raised to 3 by a node with replicas 3; a node with replicas 1 warns and lowers nothing", async () => {
    const timings = { ackWaitMs: 3000, memberTtlMs: 3000 };
    const first = await openNatsCluster({ servers: nats.urls, name: "r1", log: capturingLogger().log, timings, replicas: 1 });
    await first.close();
    expect(Object.values(await replicasOf())).toEqual(ALL_STREAMS.map(() => 1));

    const up = capturingLogger();
    const second = await openNatsCluster({ servers: nats.urls, name: "r3", log: up.log, timings, replicas: 3 });
    await second.close();
    expect(Object.values(await replicasOf())).toEqual(ALL_STREAMS.map(() => 3));
    expect(up.lines().filter((l) => /now has 3 replicas \(was 1\)/.test(String(l.msg))).length).toBe(ALL_STREAMS.length);

    const down = capturingLogger();
    const third = await openNatsCluster({ servers: nats.urls, name: "r1b", log: down.log, timings, replicas: 1 });
    await third.close();
    expect(Object.values(await replicasOf())).toEqual(ALL_STREAMS.map(() => 3));
    const warned = down.lines().filter((l) => l.level === 40 && /has 3 replicas and nats\.replicas of this node is 1/.test(String(l.msg)));
    expect(warned.map((l) => l.stream).sort()).toEqual([...ALL_STREAMS].sort());
  }, 30_000);

  test("nats-r3 - a nats-server killed with SIGKILL mid-job: the dataset is complete, one row per task, equal to matrixd run's, the member view stays whole, and a new job runs with the server still gone", async () => {
    // Each node lists all three servers, starting with a different one.
    const urls = (i: number) => [...nats.urls.slice(i), ...nats.urls.slice(0, i)].join(",");
    procs.push(...(await Promise.all([0, 1, 2].map((i) => spawnJoin({ name: `q${i + 1}`, nats: urls(i), dir: tmp.dir, config: CONFIG, args: ["--llm", "sim"] })))));
    const [a, b, c] = procs as [JoinProcess, JoinProcess, JoinProcess];
    expect(Object.values(await replicasOf())).toEqual(ALL_STREAMS.map(() => 3));

    const { id, total } = await a.submit("coral", seeds, JOB);
    expect(total).toBe(N);
    // Rows stored, counted by the stream itself (the job's status follows a little behind).
    const stored = async () => (await jsm.streams.info(Streams.rows)).state.messages;
    await waitFor(`job ${id} to store ${N * 0.25} rows`, async () => (await stored()) >= N * 0.25, 30_000, 50).catch((err: unknown) => {
      throw new Error(`${String(err)}\n${logs()}`);
    });
    // Kill the server most nodes are connected to (they must reconnect to another), the task stream's leader among those.
    const leader = (await jsm.streams.info(Streams.tasks)).cluster?.leader;
    const nodesOn = await Promise.all(nats.servers.map((s) => connectedNodes(s.monitorPort)));
    const score = (i: number) => 2 * (nodesOn[i] ?? 0) + (nats.servers[i]?.name === leader ? 1 : 0);
    const victim = [0, 1, 2].reduce((best, i) => (score(i) > score(best) ? i : best), 0);
    expect(nodesOn[victim]).toBeGreaterThan(0);
    const before = await stored();
    await nats.stop(victim, "SIGKILL");
    expect(before).toBeLessThan(N);

    const st = await waitDone(procs, id, 45_000);
    expect(st.state).toBe("done");
    expect(st.ok + st.failed).toBe(N);
    const rows = await c.results(id);
    expect(rows.length).toBe(N);
    expect(new Set(rows.map((r) => r.id)).size).toBe(N);
    expect(comparable(rows)).toEqual(comparable(reference));
    expect(procs.every((p) => p.alive)).toBe(true);
    // With one server of three still gone, every node reads the dataset and the job's status.
    for (const p of [a, b]) {
      expect((await p.results(id)).length).toBe(N);
      expect((await p.job(id)).ok + (await p.job(id)).failed).toBe(N);
    }
    let reconnects = 0;
    for (const p of procs) reconnects += metric(await p.metrics(), "matrixd_nats_reconnects_total");
    expect(reconnects).toBeGreaterThanOrEqual(nodesOn[victim] ?? 1);

    // The member bucket has three copies too: every node is still in the view.
    const want = procs.map((p) => p.name).sort();
    const names = async () => (await a.members()).map((m) => m.node).sort();
    const whole = async () => JSON.stringify(await names().catch(() => [])) === JSON.stringify(want);
    await waitFor(`the member view to be ${want} after the job`, whole, 10_000, 200).catch(async (err: unknown) => {
      throw new Error(`${String(err)}; it is ${await names().catch(String)}\n${logs()}`);
    });

    // A new job, with the server still gone, runs to a complete dataset too.
    const more = coralSeeds(300, "s");
    const next = await b.submit("coral", more, JOB);
    expect((await waitDone(procs, next.id, 45_000)).state).toBe("done");
    const moreRows = await a.results(next.id);
    expect(moreRows.length).toBe(more.length);
    expect(new Set(moreRows.map((r) => r.id)).size).toBe(more.length);
  }, 90_000);
});
