import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import type { ClusterEvent } from "../src/cluster/types.ts";
import { freePort } from "../src/util/net.ts";
import { tempDir } from "./support/files.ts";
import { type JoinProcess, killAll, spawnJoin, waitDone } from "./support/join-process.ts";
import { MATRIXD, ROOT } from "./support/matrixd.ts";
import { type NatsServer, natsServerMissing, startNatsServer } from "./support/nats-server.ts";
import { coralSeeds } from "./support/seeds.ts";
import { type SimProcess, startSims } from "./support/sim-llm.ts";
import { waitFor } from "./support/wait.ts";

/**
 * `matrixd submit --retry-failed` on a cluster of real `matrixd join`
 * processes: a job run against a simulated LLM that answers some requests
 * with 500 (and no LLM retries) ends with failed rows; run again against a
 * healthy one, only those tasks run, each new row replaces its failed row,
 * and the dataset has one row per task, every one ok, with the job's counts
 * corrected. What cannot run again is refused with one line; a node killed
 * with kill -9 while the failed tasks run again loses nothing.
 */

const missing = natsServerMissing();
if (missing) console.warn(`cluster-retry-failed: ${missing}; skipped`);

const tmp = tempDir("matrixd-retry-failed-");
let srv: NatsServer;
let procs: JoinProcess[] = [];
let sims: SimProcess[] = [];

beforeAll(async () => {
  if (!missing) srv = await startNatsServer();
});
afterEach(async () => {
  await killAll(procs);
  await Promise.all(sims.splice(0).map((s) => s.kill()));
});
afterAll(async () => {
  await srv?.stop();
  tmp.remove();
});

async function sim(port: number, args: string[] = []): Promise<void> {
  sims.push(await startSims([...args, "--port", String(port)]));
}

async function nodes(prefix: string, n: number, port: number): Promise<JoinProcess[]> {
  // no LLM retries: a request answered 500 fails its task
  const config = { nats: { ackWaitSec: 3, memberTtlSec: 3 }, llm: { retries: 0, backoffMs: 20, maxBackoffMs: 200 } };
  for (let i = 1; i <= n; i++) {
    procs.push(await spawnJoin({ name: `${prefix}${i}`, nats: srv.url, dir: tmp.dir, config, args: ["--llm", `http://127.0.0.1:${port}/v1`] }));
  }
  return procs;
}

async function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const proc = Bun.spawn([...MATRIXD, "submit", ...args], { cwd: ROOT, stdout: "pipe", stderr: "pipe" });
  const killer = setTimeout(() => proc.kill(9), 150_000);
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  clearTimeout(killer);
  return { code, stdout, stderr };
}

async function post(p: JoinProcess, path: string): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`${p.url}${path}`, { method: "POST", signal: AbortSignal.timeout(30_000) });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

async function events(p: JoinProcess, job: string): Promise<ClusterEvent[]> {
  return (await p.get<{ events: ClusterEvent[] }>(`/v1/events?job=${encodeURIComponent(job)}&limit=1000`)).events;
}

/** A job run against a sim that fails some requests: its rows, the ids of the failed ones. */
async function failingJob(a: JoinProcess, seeds: unknown[], concurrency: number) {
  const { id } = await a.submit("coral", seeds, { seed: 1, concurrency, stepRetries: 0 });
  // a job still running is refused
  const early = await post(a, `/v1/jobs/${id}/retry-failed`);
  expect(early.status).toBe(409);
  expect(String(early.body.error)).toContain("still running");
  const st = await waitDone(procs, id, 120_000);
  expect(st.state).toBe("done");
  const rows = await a.results(id);
  expect(rows.length).toBe(seeds.length);
  const failed = rows.filter((r) => r.status === "failed").map((r) => r.id as string);
  expect(failed.length).toBeGreaterThan(0);
  expect(failed.length).toBeLessThan(seeds.length);
  return { id, rows, failed };
}

function expectAllOk(rows: { id: string; status: string; error?: string }[], n: number, failed: readonly string[]): void {
  expect(rows.length).toBe(n);
  expect(new Set(rows.map((r) => r.id)).size).toBe(n);
  expect(rows.filter((r) => r.status !== "ok").map((r) => r.error)).toEqual([]);
  const byId = new Map(rows.map((r) => [r.id, r]));
  for (const id of failed) expect(byId.get(id)?.status).toBe("ok");
}

describe.skipIf(missing !== undefined)("cluster retry-failed", () => {
  test("cluster retry-failed - only the failed tasks run again, their rows replaced: one ok row per task, counts corrected; what cannot run again is refused", async () => {
    const N = 120;
    const port = await freePort();
    await sim(port, ["--error-rate", "0.15"]);
    const [a, b] = await nodes("rf-a", 2, port);
    const { id, rows: before, failed } = await failingJob(a!, coralSeeds(N, "rf"), 32);
    const okBefore = new Map(before.filter((r) => r.status === "ok").map((r) => [r.id, JSON.stringify(r)]));

    // the same server, healthy now
    await Promise.all(sims.splice(0).map((s) => s.kill()));
    await sim(port);
    const out = tmp.path("rf.jsonl");
    const r = await cli(["--server", b!.url, "--retry-failed", id, "--wait", "--out", out]);
    if (r.code !== 0) console.error(r.stderr);
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).toBe(id);
    expect(r.stderr).toContain(`its ${failed.length} failed tasks run again (round 1)`);

    const st = await a!.job(id);
    expect(st.state).toBe("done");
    expect(st.total).toBe(N);
    expect(st.ok).toBe(N);
    expect(st.failed).toBe(0);
    expect(st.retry).toEqual({ round: 1, tasks: failed.length });
    const fromFile = readFileSync(out, "utf8").split("\n").filter((l) => l !== "").map((l) => JSON.parse(l));
    expectAllOk(fromFile, N, failed);
    const after = await b!.results(id);
    expectAllOk(after, N, failed);
    // the rows that were ok are untouched
    for (const row of after) if (okBefore.has(row.id)) expect(JSON.stringify(row)).toBe(okBefore.get(row.id) as string);

    const evs = await waitFor("the job's second job.done", async () => {
      const e = await events(a!, id);
      return e.filter((x) => x.kind === "job.done").length >= 2 ? e : undefined;
    }, 20_000, 200);
    const retried = evs.filter((e) => e.kind === "job.retried");
    expect(retried.length).toBe(1);
    expect(retried[0]!.message).toContain(`its ${failed.length} failed tasks run again (round 1)`);

    // nothing failed is left: said, exit 0
    const none = await cli(["--server", a!.url, "--retry-failed", id]);
    expect(none.code).toBe(0);
    expect(none.stderr).toContain("has no failed row");
    // unknown, then purged: refused, one line, exit 2
    const unknown = await cli(["--server", a!.url, "--retry-failed", "no-such-job"]);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr.trim().split("\n")).toEqual([`matrixd submit: no job "no-such-job" (unknown, or purged)`]);
    const del = await fetch(`${a!.url}/v1/jobs/${id}?purge=1`, { method: "DELETE" });
    expect(del.status).toBe(200);
    const purged = await cli(["--server", a!.url, "--retry-failed", id]);
    expect(purged.code).toBe(2);
    expect(purged.stderr).toContain("unknown, or purged");
    // a job whose rows leave NATS for a follower: its failed rows cannot come back from NATS
    const followed = await a!.submit("coral", coralSeeds(6, "rf-followed"), { seed: 1, concurrency: 6, purgeRows: "followed" });
    expect((await waitDone(procs, followed.id, 60_000)).state).toBe("done");
    const handed = await post(a!, `/v1/jobs/${followed.id}/retry-failed`);
    expect(handed.status).toBe(409);
    expect(String(handed.body.error)).toContain(`hands its rows to a follower`);
  }, 240_000);

  test("cluster retry-failed - a node killed with kill -9 while the failed tasks run again: the job still ends with one ok row per task", async () => {
    const N = 300;
    const port = await freePort();
    await sim(port, ["--error-rate", "0.4"]);
    const [a, b, c] = await nodes("rk-a", 3, port);
    const { id, failed } = await failingJob(a!, coralSeeds(N, "rk"), 64);
    await Promise.all(sims.splice(0).map((s) => s.kill()));
    // slow enough that the round is under way when the node dies
    await sim(port, ["--time-scale", "0.3", "--len-median", "40", "--max-len", "96"]);
    const res = await post(a!, `/v1/jobs/${id}/retry-failed`);
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ id, round: 1, tasks: failed.length });
    let last = "";
    await waitFor("the round to be under way", async () => {
      const st = await a!.job(id);
      last = JSON.stringify(st);
      return st.state === "running" && st.ok > N - failed.length + 5;
    }, 60_000, 50).catch((err) => {
      throw new Error(`${err}; last: ${last}\n${procs.map((p) => `--- ${p.name}\n${p.log(3000)}`).join("\n")}`);
    });
    await b!.kill9();
    const st = await waitDone([a!, c!], id, 150_000);
    expect(st.state).toBe("done");
    expect(st.ok).toBe(N);
    expect(st.failed).toBe(0);
    expectAllOk(await c!.results(id), N, failed);
  }, 300_000);
});
