import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { openNatsCluster } from "../src/store/index.ts";
import { encode } from "../src/protocol/codec.ts";
import { silentLogger } from "../src/log.ts";
import { comparable } from "./engine-cases.ts";
import { coralSeeds } from "./support/seeds.ts";
import { tempDir } from "./support/files.ts";
import { type JoinProcess, metric, spawnJoin, waitDone } from "./support/join-process.ts";
import { referenceRun } from "./support/matrixd.ts";
import { type NatsServer, natsServerMissing, startNatsServer } from "./support/nats-server.ts";
import { waitFor } from "./support/wait.ts";

/**
 * The cluster as users run it: a real nats-server, `matrixd join` processes
 * of the compiled binary with the simulated LLM, jobs over HTTP. Every
 * dataset is compared with `matrixd run`'s for the same seeds and settings.
 */

const missing = natsServerMissing();
if (missing) console.warn(`cluster-process: ${missing}; skipped`);

const SIM = { lenMedian: 40, maxLen: 128, timeScale: 0.02 };
const JOB = { seed: 1, concurrency: 600 };
const N = 2000;
const CONFIG = { nats: { ackWaitSec: 3, memberTtlSec: 3 }, sim: SIM, log: { level: "info" } };

const tmp = tempDir("matrixd-cluster-");
const seeds = coralSeeds(N, "c");
let srv: NatsServer;
// biome-ignore lint/suspicious/noExplicitAny: rows read back
let reference: any[] = [];
let procs: JoinProcess[] = [];
let nodeNo = 0;

async function join(extra: Record<string, unknown> = {}): Promise<JoinProcess> {
  // Only the sim's speed may differ between tests: its answers, and so the dataset, do not depend on it.
  const p = await spawnJoin({ name: `p${++nodeNo}`, nats: srv.url, dir: tmp.dir, config: { ...CONFIG, ...extra }, args: ["--llm", "sim"] });
  procs.push(p);
  return p;
}

/** Wait until the job has at least `rows` rows (as a live node counts them). */
async function waitRows(p: JoinProcess, id: string, rows: number, timeoutMs = 60_000): Promise<void> {
  let last: unknown;
  const reached = async () => {
    try {
      const st = await p.job(id);
      return st.ok + st.failed >= rows || st.state !== "running";
    } catch (err) {
      // a status request may be slow on a loaded machine; the job's progress is what is waited for
      last = err;
      return false;
    }
  };
  await waitFor(`job ${id} to reach ${rows} rows`, reached, timeoutMs, 50).catch((err: unknown) => {
    throw new Error(`${String(err)}; last error: ${String(last)}`);
  });
}

/** The dataset is complete, has one row per task, and equals `matrixd run`'s. */
async function checkDataset(p: JoinProcess, id: string): Promise<void> {
  const st = await waitDone(procs, id, 90_000);
  expect(st.state).toBe("done");
  const rows = await p.results(id);
  expect(rows.length).toBe(N);
  expect(new Set(rows.map((r) => r.id)).size).toBe(N);
  expect(st.ok + st.failed).toBe(N);
  expect(comparable(rows)).toEqual(comparable(reference));
}

describe.skipIf(missing !== undefined)("cluster of matrixd join processes", () => {
  beforeAll(async () => {
    srv = await startNatsServer();
    reference = await referenceRun(tmp.dir, seeds, { sim: SIM, ...JOB }, 120_000);
    expect(reference.length).toBe(N);
  }, 180_000);

  afterEach(async () => {
    await Promise.all(procs.filter((p) => p.alive).map((p) => p.kill9()));
    procs = [];
  });

  afterAll(async () => {
    await srv?.close();
    if (process.env.MATRIXD_KEEP_LOGS) console.log(`cluster-process: logs kept in ${tmp.dir}`);
    else tmp.remove();
  });

  test("cluster - a node killed with kill -9 mid-job: the dataset is complete, one row per task, equal to matrixd run's", async () => {
    const [a, b, c] = await Promise.all([join(), join(), join()]);
    const { id, total } = await a!.submit("coral", seeds, JOB);
    expect(total).toBe(N);
    await waitRows(a!, id, N * 0.25);
    // the node about to die has taken a share of the job
    const before = await b!.metrics();
    expect(metric(before, "matrixd_seeds_taken_total")).toBeGreaterThan(0);
    await b!.kill9();
    await checkDataset(c!, id);
  }, 150_000);

  test("cluster - the node that accepted the job killed with kill -9 mid-job: the job goes on to a complete dataset", async () => {
    const [a, b] = await Promise.all([join(), join(), join()]);
    const { id } = await a!.submit("coral", seeds, JOB);
    await waitRows(b!, id, N * 0.25);
    await a!.kill9();
    await checkDataset(b!, id);
  }, 150_000);

  test("cluster - nats-server restarted mid-job: nodes reconnect, the dataset is complete, and the member view comes back", async () => {
    const [a, b, c] = await Promise.all([join(), join(), join()]);
    const { id } = await a!.submit("coral", seeds, JOB);
    await waitRows(a!, id, N * 0.25);
    await srv.restart();
    await checkDataset(b!, id);
    expect(metric(await a!.metrics(), "matrixd_nats_reconnects_total")).toBeGreaterThanOrEqual(1);
    // The member view lives in memory at the server, so the restart lost it: it comes back.
    const want = [a!.name, b!.name, c!.name].sort();
    const names = async () => (await a!.members()).map((m) => m.node).sort();
    await waitFor(`the member view to be ${want} again`, async () => JSON.stringify(await names().catch(() => [])) === JSON.stringify(want), 15_000, 200);
  }, 150_000);

  test("cluster - a node joining mid-job takes work, a node leaving on SIGTERM hands its tasks back, and garbage on matrixd's subjects is counted and dropped", async () => {
    const slow = { sim: { ...SIM, timeScale: 0.06 } };
    const [a, b] = await Promise.all([join(slow), join(slow)]);
    const { id } = await a!.submit("coral", seeds, { ...JOB, concurrency: 300 });
    await waitRows(a!, id, N * 0.1);
    // garbage on every kind of subject matrixd reads
    const nats = await openNatsCluster({ servers: [srv.url], name: "garbage", log: silentLogger, timings: { ackWaitMs: 3000, memberTtlMs: 3000 } });
    try {
      const nc = nats.link.nc;
      const junk = [new Uint8Array([0xff, 0x00, 0x13]), new TextEncoder().encode("not cbor at all"), encode({ v: 1, state: { hello: 1 } })];
      for (const data of junk) {
        await nats.link.js.publish("mx.task.coral.teacher", data);
        await nats.link.js.publish("mx.task.coral.matcher", data);
        await nats.link.js.publish(`mx.seed.${id}`, data);
        await nats.link.js.publish(`mx.row.${id}.garbage${junk.indexOf(data)}`, data);
        nc.publish("mx.done.p1", data);
      }
      await nc.flush();
    } finally {
      await nats.close();
    }
    const late = await join(slow);
    // the newcomer takes a share; then b leaves cleanly while it holds tasks
    await waitFor("the newcomer to run steps", async () => metric(await late.metrics(), "matrixd_steps_total") > 0, 30_000, 100);
    // b leaves while it is running steps, so it has tasks to hand back
    await waitFor("b to run steps", async () => metric(await b!.metrics(), "matrixd_steps_running") > 0, 30_000, 20).catch(() => undefined);
    expect(await b!.term()).toBe(0);
    const handedBack = Number(/"handedBack":(\d+),"msg":"left the cluster"/.exec(b!.log())?.[1] ?? -1);
    expect(handedBack).toBeGreaterThan(0);
    await checkDataset(a!, id);
    let garbage = 0;
    for (const p of procs.filter((x) => x.alive)) garbage += metric(await p.metrics(), "matrixd_garbage_total");
    // 3 task + 3 task + 3 seed messages taken off consumers; rows read back by the results call
    expect(garbage).toBeGreaterThanOrEqual(9);
  }, 150_000);

  test("cluster - membership: a node appears within seconds, and is gone within seconds of kill -9 and of SIGTERM", async () => {
    const [a, b, c] = await Promise.all([join(), join(), join()]);
    const names = async () => (await a!.members()).map((m) => m.node).sort();
    // nodes of earlier tests, killed, age out of the view first
    const want = [a!.name, b!.name, c!.name].sort();
    await waitFor(`the member view to be ${want}`, async () => JSON.stringify(await names()) === JSON.stringify(want), 15_000, 200);
    // A node's record names its HTTP API once that listens (announced at once, not at the next heartbeat).
    await waitFor("b's record to name its HTTP API", async () => (await a!.members()).find((m) => m.node === b!.name)?.http !== undefined, 5_000, 50);
    const member = (await a!.members()).find((m) => m.node === b!.name);
    expect(member?.roles["coral.teacher"]?.slots).toBeGreaterThan(0);
    expect(member?.services.llm.length).toBe(1);
    expect(member?.http).toBe(b!.url);

    await b!.kill9();
    await waitFor("the killed node to leave the member view", async () => !(await names()).includes(b!.name), 15_000, 200);
    expect(await c!.term()).toBe(0);
    expect(await names()).toEqual([a!.name]);
  }, 60_000);
});
