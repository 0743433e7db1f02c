import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { readRows, tempDir, writeLines } from "./support/files.ts";
import { type JoinProcess, spawnJoin, waitDone } from "./support/join-process.ts";
import { BUN, MATRIXD, ROOT } from "./support/matrixd.ts";
import { type NatsServer, natsServerMissing, startNatsServer } from "./support/nats-server.ts";
import { coralSeeds } from "./support/seeds.ts";
import { waitFor } from "./support/wait.ts";

/**
 * `matrixd submit --wait --out` and `matrixd results` against a real
 * two-node cluster (nats-server, two `matrixd join` processes with the
 * simulated LLM) whose node the client talks to is killed with kill -9
 * mid-job: the client carries on through the other member and ends with
 * the job's full status and its whole dataset, no row twice.
 */

const missing = natsServerMissing();
if (missing) console.warn(`cli-failover: ${missing}; skipped`);

const N = 1200;
// slow enough that the job is well under way, and not done, when the node dies
const CONFIG = { nats: { ackWaitSec: 3, memberTtlSec: 3 }, sim: { lenMedian: 40, maxLen: 128, timeScale: 0.08 }, log: { level: "info" } };
const tmp = tempDir("matrixd-cli-failover-");
let srv: NatsServer;
let procs: JoinProcess[] = [];
let nodeNo = 0;

async function twoNodes(): Promise<[JoinProcess, JoinProcess]> {
  const [a, b] = await Promise.all(
    [0, 1].map(() => spawnJoin({ name: `f${++nodeNo}`, nats: srv.url, dir: tmp.dir, config: CONFIG, args: ["--llm", "sim"], command: MATRIXD })),
  );
  procs.push(a!, b!);
  // the client learns the members from the first node: it must see both
  await waitFor("both members in the first node's view", async () => (await a!.members().catch(() => [])).length === 2, 15_000, 100);
  return [a!, b!];
}

function client(args: string[]) {
  return Bun.spawn([BUN, "cmd/matrixd.ts", ...args], {
    cwd: ROOT,
    env: { ...process.env, MATRIXD_TOKEN: "", MATRIXD_SERVER: "" },
    stdout: "pipe",
    stderr: "pipe",
  });
}

/** Wait until the job has at least `rows` rows, as `p` counts them. */
async function waitRows(p: JoinProcess, id: string, rows: number): Promise<void> {
  await waitFor(`job ${id} to reach ${rows} rows`, async () => {
    const st = await p.job(id).catch(() => undefined);
    return st !== undefined && st.ok + st.failed >= rows;
  }, 60_000, 50);
}

describe.skipIf(missing !== undefined)("cli failover", () => {
  beforeAll(async () => {
    srv = await startNatsServer();
    writeLines(tmp.path("seeds.jsonl"), coralSeeds(N, "f"));
  }, 30_000);

  afterEach(async () => {
    await Promise.all(procs.filter((p) => p.alive).map((p) => p.kill9()));
    procs = [];
  });

  afterAll(async () => {
    await srv?.close();
    if (process.env.MATRIXD_KEEP_LOGS) console.log(`cli-failover: logs kept in ${tmp.dir}`);
    else tmp.remove();
  });

  test("cli failover - submit --wait --out: the node it talks to killed with kill -9 mid-job, it follows the job through the other member to its full status and dataset", async () => {
    const [a, b] = await twoNodes();
    const out = tmp.path("waited.jsonl");
    const proc = client(["submit", "--server", a.url, "--workflow", "coral", tmp.path("seeds.jsonl"), "--wait", "--out", out, "--progress-every", "1"]);
    const stdout = new Response(proc.stdout).text();
    const stderr = new Response(proc.stderr).text();
    const id = (await waitFor("the job id on stdout", async () => {
      const jobs = await b.get<{ jobs: { id: string }[] }>("/v1/jobs").catch(() => ({ jobs: [] }));
      return jobs.jobs[0]?.id;
    }, 30_000, 50)) as string;
    await waitRows(b, id, N * 0.2);
    await a.kill9();
    const code = await proc.exited;
    const err = await stderr;
    expect({ code, err }).toEqual({ code: 0, err: expect.stringContaining(`stopped answering; following job ${id} through ${b.url}`) });
    expect((await stdout).trim()).toBe(id);
    expect(err).toContain(`job ${id} (coral): done`);
    expect(err).toMatch(new RegExp(`rows ${N.toLocaleString("en-US")}/${N.toLocaleString("en-US")} \\(100\\.0%\\)`));
    const rows = readRows(out);
    expect(rows.length).toBe(N);
    expect(new Set(rows.map((r) => r.id)).size).toBe(N);
    expect(existsSync(`${out}.part`)).toBe(false);
  }, 150_000);

  test("cli failover - results of a running job: the node it downloads from killed with kill -9, it goes on through the other member with no row twice", async () => {
    const [a, b] = await twoNodes();
    const { id } = await a.submit("coral", coralSeeds(N, "r"), { seed: 2 });
    await waitRows(a, id, N * 0.1);
    const out = tmp.path("results.jsonl");
    // a running job is followed: the download is under way when the node dies
    const proc = client(["results", id, "--server", a.url, "--out", out]);
    const stderr = new Response(proc.stderr).text();
    await waitFor("some rows downloaded", async () => existsSync(`${out}.part`) && Bun.file(`${out}.part`).size > 0, 30_000, 50);
    await waitRows(b, id, N * 0.3);
    await a.kill9();
    const code = await proc.exited;
    const err = await stderr;
    expect({ code, err }).toEqual({ code: 0, err: expect.stringContaining(`carrying on through ${b.url}`) });
    const st = await waitDone([b], id, 60_000);
    expect(st.ok + st.failed).toBe(N);
    const rows = readRows(out);
    expect(rows.length).toBe(N);
    expect(new Set(rows.map((r) => r.id)).size).toBe(N);
    // to stdout as well, from the surviving node, the same rows
    const again = client(["results", id, "--server", b.url]);
    const text = await new Response(again.stdout).text();
    expect(await again.exited).toBe(0);
    expect(text.trim().split("\n").length).toBe(N);
  }, 150_000);

  test("cli - join --log-file: the JSON log goes to the file (appended), nothing to stdout", async () => {
    const log = tmp.path("join.log");
    writeFileSync(log, "earlier line\n");
    const proc = Bun.spawn([...MATRIXD, "join", "--nats", srv.url, "--http", "127.0.0.1:0", "--name", "logger", "--log-level", "info", "--log-file", log], {
      cwd: ROOT,
      stdout: "pipe",
      stderr: "pipe",
      stdin: "ignore",
    });
    const stdout = new Response(proc.stdout).text();
    await waitFor("the node's log in the file", async () => readFileSync(log, "utf8").includes('"msg":"HTTP API listening"'), 30_000, 100);
    proc.kill("SIGTERM");
    expect(await proc.exited).toBe(0);
    expect(await stdout).toBe("");
    const [first, ...lines] = readFileSync(log, "utf8").trim().split("\n");
    expect(first).toBe("earlier line");
    for (const l of lines) expect(JSON.parse(l).name).toBe("matrixd");
  }, 60_000);
});
