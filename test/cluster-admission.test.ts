import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { silentLogger } from "../src/log.ts";
import { openNatsCluster, Streams, Subjects } from "../src/store/index.ts";
import { coralSeeds } from "./support/seeds.ts";
import { tempDir } from "./support/files.ts";
import { type JoinProcess, killAll, metric, spawnJoin, waitDone } from "./support/join-process.ts";
import { type NatsServer, natsServerMissing, startNatsServer } from "./support/nats-server.ts";
import { waitFor } from "./support/wait.ts";

/**
 * Admission across the cluster: the job's concurrency is a limit on the
 * whole cluster, whatever the nodes' slots, and it holds while seeds are
 * taken by waiting pull requests and through the death of the node that
 * accepted the job. Tasks in flight are read from the dataset itself: each
 * row says when its task was admitted, and NATS says when the row was
 * stored; between the two a task is admitted and without a row.
 */

const missing = natsServerMissing();
if (missing) console.warn(`cluster-admission: ${missing}; skipped`);

const SIM = { lenMedian: 40, maxLen: 128, timeScale: 0.02 };
const CONFIG = { nats: { ackWaitSec: 3, memberTtlSec: 3 }, sim: SIM, log: { level: "info" }, defaultSlots: 400 };
const N = 1500;
const LIMIT = 120;

const tmp = tempDir("matrixd-admission-");
let srv: NatsServer;
const procs: JoinProcess[] = [];
let nodeNo = 0;

async function join(): Promise<JoinProcess> {
  const p = await spawnJoin({ name: `a${++nodeNo}`, nats: srv.url, dir: tmp.dir, config: CONFIG, args: ["--llm", "sim"] });
  procs.push(p);
  return p;
}

/** Each row of a job as NATS stored it: its task, when it was admitted and when its row was stored (epoch ms). */
async function storedRows(job: string): Promise<{ id: string; admitted: number; stored: number }[]> {
  const nats = await openNatsCluster({ servers: [srv.url], name: "reader", log: silentLogger, timings: { ackWaitMs: 3000, memberTtlMs: 3000 } });
  try {
    const consumer = await nats.link.js.consumers.get(Streams.rows, { filter_subjects: Subjects.jobRows(job) });
    const out: { id: string; admitted: number; stored: number }[] = [];
    let left = (await consumer.info()).num_pending;
    while (left > 0) {
      const batch = await consumer.fetch({ max_messages: Math.min(left, 500), expires: 5000 });
      let got = 0;
      for await (const m of batch) {
        got++;
        const row = JSON.parse(new TextDecoder().decode(m.data));
        out.push({ id: row.id, admitted: row.timings.admitted, stored: Math.floor(m.info.timestampNanos / 1e6) });
      }
      if (got === 0) break;
      left -= got;
    }
    await consumer.delete().catch(() => undefined);
    return out;
  } finally {
    await nats.close();
  }
}

/** The most tasks admitted and without a row at any moment, from their rows (a row stored counts before an admission at the same ms). */
function mostInFlight(rows: { admitted: number; stored: number }[]): number {
  const events = rows.flatMap((r) => [
    [r.admitted, 1],
    [r.stored, -1],
  ]);
  events.sort((a, b) => (a[0] as number) - (b[0] as number) || (a[1] as number) - (b[1] as number));
  let now = 0;
  let most = 0;
  for (const [, d] of events) {
    now += d as number;
    most = Math.max(most, now);
  }
  return most;
}

describe.skipIf(missing !== undefined)("cluster admission", () => {
  beforeAll(async () => {
    srv = await startNatsServer();
  }, 60_000);
  afterEach(() => killAll(procs));
  afterAll(async () => {
    await srv?.close();
    tmp.remove();
  });

  test("cluster - three nodes with more slots than the job's concurrency never hold more of its tasks admitted and without a row than that, and reach it", async () => {
    const [a, b, c] = await Promise.all([join(), join(), join()]);
    const { id } = await a!.submit("coral", coralSeeds(N, "l"), { seed: 1, concurrency: LIMIT });
    const st = await waitDone(procs, id, 120_000);
    expect(st.state).toBe("done");
    const rows = await storedRows(id);
    expect(rows.length).toBe(N);
    expect(new Set(rows.map((r) => r.id)).size).toBe(N);
    const most = mostInFlight(rows);
    expect(most).toBeLessThanOrEqual(LIMIT);
    // the limit was what bound the job (not the nodes' slots, 3 x 400), so the check above could fail
    expect(most).toBeGreaterThanOrEqual(LIMIT * 0.9);
    // every node took seeds
    for (const p of [a!, b!, c!]) expect(metric(await p.metrics(), "matrixd_seeds_taken_total")).toBeGreaterThan(0);
  }, 150_000);

  test("cluster - the accepting node killed with kill -9 mid-job: one row per task, and the limit held throughout", async () => {
    const [a, b] = await Promise.all([join(), join(), join()]);
    const { id } = await a!.submit("coral", coralSeeds(N, "k"), { seed: 1, concurrency: LIMIT });
    await waitFor("a third of the rows", async () => {
      const s = await b!.job(id).catch(() => undefined);
      return s !== undefined && s.ok + s.failed >= N / 3;
    }, 60_000, 50);
    expect(metric(await a!.metrics(), "matrixd_seeds_taken_total")).toBeGreaterThan(0);
    await a!.kill9();
    const st = await waitDone(procs, id, 120_000);
    expect(st.state).toBe("done");
    const rows = await storedRows(id);
    expect(rows.length).toBe(N);
    expect(new Set(rows.map((r) => r.id)).size).toBe(N);
    expect(mostInFlight(rows)).toBeLessThanOrEqual(LIMIT);
    const got = await b!.results(id);
    expect(got.length).toBe(N);
    expect(new Set(got.map((r) => r.id)).size).toBe(N);
  }, 150_000);
});
