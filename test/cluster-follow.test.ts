import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { appendFileSync, existsSync, readFileSync } from "node:fs";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { builtinWorkflows } from "../plugins/index.ts";
import { createApp } from "../src/api/app.ts";
import type { RunningClusterNode } from "../src/cluster/node.ts";
import { silentLogger } from "../src/log.ts";
import { Registry } from "../src/plugin/registry.ts";
import { type NatsCluster, openNatsCluster, Streams, Subjects } from "../src/store/index.ts";
import { startNodes, TEST_TIMINGS, waitJob } from "./support/cluster-nodes.ts";
import { readRows, tempDir } from "./support/files.ts";
import { type JoinProcess, spawnJoin, waitDone } from "./support/join-process.ts";
import { BUN, MATRIXD, ROOT } from "./support/matrixd.ts";
import { type NatsServer, natsServerMissing, startNatsServer } from "./support/nats-server.ts";
import { coralSeeds } from "./support/seeds.ts";
import { waitFor } from "./support/wait.ts";

/**
 * Rows that leave NATS once a follower has written them (purgeRows
 * "followed"): the marker left in a row's place keeps one row per task and
 * the job's counts, and `matrixd results --follow` writes a dataset that
 * survives its own kill -9 and the death of the node it reads from.
 */

const missing = natsServerMissing();
if (missing) console.warn(`cluster-follow: ${missing}; skipped`);

/** Bytes the rows stream holds (all jobs), and the messages and subjects of one job's rows. */
async function rowsStream(nc: NatsConnection, job?: string): Promise<{ bytes: number; messages: number; subjects: number }> {
  const jsm = await jetstreamManager(nc);
  const si = await jsm.streams.info(Streams.rows, job ? { subjects_filter: Subjects.jobRows(job) } : undefined);
  const counts = Object.values(si.state.subjects ?? {});
  return { bytes: si.state.bytes, messages: job ? counts.reduce((x, y) => x + y, 0) : si.state.messages, subjects: counts.length };
}

describe.skipIf(missing !== undefined)("cluster rows handed to a follower (in-process)", () => {
  let srv: NatsServer;
  let a: RunningClusterNode;
  let store: NatsCluster;
  let nc: NatsConnection;
  beforeAll(async () => {
    srv = await startNatsServer();
    [a] = (await startNodes(srv, ["h1"])) as [RunningClusterNode];
    store = await openNatsCluster({ servers: [srv.url], name: "probe", log: silentLogger, timings: TEST_TIMINGS });
    nc = await connect({ servers: srv.url });
  });
  afterAll(async () => {
    await nc?.close();
    await store?.close();
    await a?.close();
    await srv?.close();
  });

  test("cluster follow - rows reported written leave the stream; a task run again finds its row taken, and the counts stay", async () => {
    const n = 300;
    const { id } = await a.submit({ workflow: "coral-dummy", seeds: coralSeeds(n), config: { job: "handed", purgeRows: "followed" } });
    const done = await waitJob(a, id);
    expect({ state: done.state, rows: done.ok + done.failed, purgeRows: done.purgeRows }).toEqual({ state: "done", rows: n, purgeRows: "followed" });
    const rows: { seq: number; text: string }[] = [];
    for await (const r of a.rowsAfter(id, 0)) rows.push(r);
    expect(rows.length).toBe(n);
    const last = rows[rows.length - 1]?.seq ?? 0;
    const before = await rowsStream(nc);

    // the first half, then the rest, as a follower reports its checkpoints
    const half = rows[n / 2 - 1]?.seq ?? 0;
    await a.followed(id, half);
    await waitFor("the first half handed over", async () => {
      const left: number[] = [];
      for await (const r of a.rowsAfter(id, 0)) left.push(r.seq);
      return left.length === n / 2 && left[0] === rows[n / 2]?.seq;
    }, 20_000, 50);
    await a.followed(id, last);
    await waitFor("every row handed over", async () => {
      for await (const _ of a.rowsAfter(id, 0)) return false;
      return true;
    }, 20_000, 50);

    const after = await rowsStream(nc, id);
    expect(after.subjects).toBe(n); // one marker per task
    expect(after.messages).toBe(n);
    expect(after.bytes).toBeLessThan(before.bytes / 4);

    // A task delivered again after its row left: its row is refused, its task still has one.
    const row = JSON.parse(rows[0]?.text ?? "{}");
    expect((await store.results.store(row)).outcome).toBe("duplicate");
    expect(await store.results.exists(id, row.id)).toBe(true);
    expect((await rowsStream(nc, id)).messages).toBe(n);
    // The tally still counts every task once.
    const { rows: tallied, tally } = await store.results.tally(id, []);
    expect({ tallied, ok: tally.ok + tally.failed }).toEqual({ tallied: n, ok: n });

    // The whole dataset is no longer in NATS: the API says where it went.
    const app = createApp(a, { registry: new Registry(builtinWorkflows), log: silentLogger });
    const res = await app.request(`/v1/jobs/${id}/results`);
    expect(res.status).toBe(409);
    expect(((await res.json()) as { error: string }).error).toContain("--follow");
    const seqs = await app.request(`/v1/jobs/${id}/rows?after=0`);
    expect({ status: seqs.status, body: await seqs.text() }).toEqual({ status: 200, body: "" });
  }, 60_000);

  test("cluster follow - a job that keeps its rows refuses reports, and its rows stay", async () => {
    const { id } = await a.submit({ workflow: "coral-dummy", seeds: coralSeeds(20), config: { job: "kept" } });
    await waitJob(a, id);
    const app = createApp(a, { registry: new Registry(builtinWorkflows), log: silentLogger });
    const res = await app.request(`/v1/jobs/${id}/followed`, { method: "POST", headers: { "Content-Type": "application/json" }, body: '{"seq":1000000}' });
    expect(res.status).toBe(409);
    expect((await app.request(`/v1/jobs/${id}/results`)).status).toBe(200);
    expect((await rowsStream(nc, id)).messages).toBe(20);
    const lines = (await (await app.request(`/v1/jobs/${id}/rows?after=0`)).text()).trim().split("\n");
    expect(lines.length).toBe(20);
    expect(Object.keys(JSON.parse(lines[0] ?? "{}"))).toEqual(["seq", "row"]);
  }, 60_000);
});

// slow enough that the job is well under way, and not done, when the follower and the node die
const N = 1500;
const CONFIG = { nats: { ackWaitSec: 3, memberTtlSec: 3 }, sim: { lenMedian: 40, maxLen: 128, timeScale: 0.3 }, log: { level: "info" } };

describe.skipIf(missing !== undefined)("cluster follow (matrixd join processes, matrixd results --follow)", () => {
  const tmp = tempDir("matrixd-cluster-follow-");
  let srv: NatsServer;
  let nc: NatsConnection;
  let procs: JoinProcess[] = [];
  beforeAll(async () => {
    srv = await startNatsServer();
    nc = await connect({ servers: srv.url });
  }, 30_000);
  afterEach(async () => {
    await Promise.all(procs.filter((p) => p.alive).map((p) => p.kill9()));
    procs = [];
  });
  afterAll(async () => {
    await nc?.close();
    await srv?.close();
    if (process.env.MATRIXD_KEEP_LOGS) console.log(`cluster-follow: logs kept in ${tmp.dir}`);
    else tmp.remove();
  });

  function follower(id: string, server: string, out: string) {
    const p = Bun.spawn([BUN, "cmd/matrixd.ts", "results", id, "--follow", "--out", out, "--server", server], {
      cwd: ROOT,
      env: { ...process.env, MATRIXD_TOKEN: "", MATRIXD_SERVER: "" },
      stdout: "pipe",
      stderr: "pipe",
    });
    return { p, stderr: new Response(p.stderr).text() };
  }

  /** The rows a follower's checkpoint says are in its file. */
  const checkpointRows = (out: string) => (existsSync(`${out}.pos`) ? (JSON.parse(readFileSync(`${out}.pos`, "utf8")) as { rows: number }).rows : 0);

  async function waitRows(p: JoinProcess, id: string, rows: number): Promise<void> {
    await waitFor(`job ${id} to reach ${rows} rows`, async () => {
      const st = await p.job(id).catch(() => undefined);
      return st !== undefined && st.ok + st.failed >= rows;
    }, 90_000, 50);
  }

  test("cluster follow - a follower killed with kill -9 mid-job and started again, then its node killed: one row per task, the plain job's rows, and the job's rows gone from NATS", async () => {
    const [a, b] = await Promise.all(
      ["fa", "fb"].map((name) => spawnJoin({ name, nats: srv.url, dir: tmp.dir, config: CONFIG, args: ["--llm", "sim"], command: MATRIXD })),
    );
    procs.push(a!, b!);
    await waitFor("both members in a's view", async () => (await a!.members().catch(() => [])).length === 2, 15_000, 100);
    const seeds = coralSeeds(N, "w");
    // The same seeds and job seed twice, side by side: one keeps its rows, the other hands them over.
    const plain = await b!.submit("coral", seeds, { seed: 5, job: "plain" });
    const handed = await a!.submit("coral", seeds, { seed: 5, job: "handed", purgeRows: "followed" });
    const out = tmp.path("followed.jsonl");

    await waitRows(a!, handed.id, N * 0.1);
    const first = follower(handed.id, a!.url, out);
    await waitFor("rows checkpointed by the first follower", async () => checkpointRows(out) >= N * 0.05, 60_000, 50);
    await waitRows(a!, handed.id, N * 0.3);
    first.p.kill("SIGKILL");
    await first.p.exited;
    // a write cut short by the kill: the next follower cuts it off
    appendFileSync(out, '{"id":"torn-');

    const byFirst = checkpointRows(out);
    const second = follower(handed.id, a!.url, out);
    await waitFor("rows checkpointed by the second follower", async () => checkpointRows(out) > byFirst, 60_000, 50);
    await waitRows(b!, handed.id, N * 0.5);
    await a!.kill9();
    const code = await second.p.exited;
    const err = await second.stderr;
    expect({ code, err }).toEqual({ code: 0, err: expect.stringContaining(`carrying on through ${b!.url}`) });

    const st = await waitDone([b!], handed.id, 60_000);
    expect(st.ok + st.failed).toBe(N);
    const rows = readRows(out);
    expect(rows.length).toBe(N);
    expect(new Set(rows.map((r) => r.id)).size).toBe(N);
    await waitDone([b!], plain.id, 90_000);
    const same = (r: { id: string; status: string; output: unknown; metrics: unknown }) => JSON.stringify([r.id, r.status, r.output, r.metrics]);
    const plainRows = await b!.results(plain.id);
    expect(plainRows.length).toBe(N);
    expect(rows.map(same).sort()).toEqual(plainRows.map(same).sort());

    // The handed job's rows are markers now: remove the plain job's rows and see what is left.
    let leftOver = "";
    await waitFor("every row of the handed job handed over", async () => (leftOver = await (await fetch(`${b!.url}/v1/jobs/handed/rows?after=0`)).text()) === "", 30_000, 200).catch((err) => {
      throw new Error(`${err}: ${leftOver.split("\n").length} rows left, ${leftOver.slice(0, 100)}; checkpoint ${readFileSync(`${out}.pos`, "utf8")}`);
    });
    const withPlain = await rowsStream(nc);
    const res = await fetch(`${b!.url}/v1/jobs/plain?purge=1`, { method: "DELETE" });
    expect(res.status).toBe(200);
    const left = await rowsStream(nc);
    const plainBytes = withPlain.bytes - left.bytes;
    expect((await rowsStream(nc, handed.id)).subjects).toBe(N);
    expect(left.bytes).toBeLessThan(plainBytes / 4);
    // A follower run again on a finished file has nothing to do.
    const third = follower(handed.id, b!.url, out);
    expect(await third.p.exited).toBe(0);
    expect(readRows(out).length).toBe(N);
  }, 240_000);
});
