import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { loadWorkflowFile } from "../src/workflow/index.ts";
import { comparable } from "./engine-cases.ts";
import { readRows, tempDir, writeLines } from "./support/files.ts";
import { type JoinProcess, spawnJoin, waitDone } from "./support/join-process.ts";
import { matrixdBin, ROOT, runProcess } from "./support/matrixd.ts";
import { type NatsServer, natsServerMissing, startNatsServer } from "./support/nats-server.ts";
import { waitFor } from "./support/wait.ts";
import { BROKEN, problemsOf } from "./support/workflow-defs.ts";

/**
 * A workflow file submitted to a running cluster of `matrixd join`
 * processes (the compiled binary, the simulated LLM, a real nats-server)
 * with `matrixd submit --workflow FILE`: the nodes never heard of it, need
 * no restart and no plugin, and give the dataset `matrixd run --workflow
 * FILE` gives.
 */

const missing = natsServerMissing();
if (missing) console.warn(`workflow-cluster: ${missing}; skipped`);

const TOKEN = "carried-cluster-token";
const SIM = { lenMedian: 40, maxLen: 128, timeScale: 0.02 };
const JOB = { seed: 3, concurrency: 200 };
const N = 240;
const CONFIG = { nats: { ackWaitSec: 3, memberTtlSec: 3 }, sim: SIM, log: { level: "info" } };
const WRITER_CRITIC = join(ROOT, "configs/workflows/writer-critic.yaml");

const tmp = tempDir("matrixd-carried-");
const seeds = Array.from({ length: N }, (_, i) => ({ id: `q${i}`, question: `What is ${i} times ${i % 7}?` }));
let srv: NatsServer;
let procs: JoinProcess[] = [];
let nodeNo = 0;

async function joinNode(args: string[] = [], config: Record<string, unknown> = CONFIG): Promise<JoinProcess> {
  const p = await spawnJoin({ name: `wf${++nodeNo}`, nats: srv.url, dir: tmp.dir, config, args: ["--llm", "sim", ...args] });
  procs.push(p);
  return p;
}

/** `matrixd ARGS` (the compiled binary), as a user runs it. */
async function matrixd(args: string[], env: Record<string, string> = {}) {
  return runProcess([await matrixdBin(), ...args], { timeoutMs: 120_000, env: { MATRIXD_TOKEN: "", MATRIXD_SERVER: "", ...env } });
}

/** The dataset of `matrixd run --workflow FILE` on the same seeds and settings. */
// biome-ignore lint/suspicious/noExplicitAny: rows read back
async function reference(file: string, out: string): Promise<any[]> {
  const r = await matrixd(["run", "--workflow", file, "--seeds", tmp.path("seeds.jsonl"), "--out", out, "--llm", "sim", "--config", tmp.path("run.json")]);
  if (r.code !== 0) throw new Error(`matrixd run failed: ${r.stderr}`);
  return readRows(out);
}

/** Jobs a node lists. */
async function jobCount(p: JoinProcess): Promise<number> {
  return (await p.get<{ jobs: unknown[] }>("/v1/jobs")).jobs.length;
}

describe.skipIf(missing !== undefined)("carried workflow on a cluster of matrixd join processes", () => {
  beforeAll(async () => {
    srv = await startNatsServer();
    writeLines(tmp.path("seeds.jsonl"), seeds);
    writeFileSync(tmp.path("run.json"), JSON.stringify({ sim: SIM, ...JOB }));
    writeFileSync(tmp.path("job.json"), JSON.stringify(JOB));
    expect(await reference(WRITER_CRITIC, tmp.path("ref.jsonl"))).toHaveLength(N);
  }, 60_000);

  afterEach(async () => {
    await Promise.all(procs.filter((p) => p.alive).map((p) => p.kill9()));
    procs = [];
  });

  afterAll(async () => {
    await srv?.close();
    if (process.env.MATRIXD_KEEP_LOGS) console.log(`workflow-cluster: logs kept in ${tmp.dir}`);
    else tmp.remove();
  });

  test("carried - matrixd submit --workflow FILE --wait: three nodes that never heard of it run it; every row once, with the hash; the dataset is matrixd run's", async () => {
    const wc = loadWorkflowFile(WRITER_CRITIC);
    const ref = readRows(tmp.path("ref.jsonl"));
    const nodes = await Promise.all([joinNode(), joinNode(), joinNode()]);
    const [a] = nodes;
    const sub = await matrixd(["submit", "--server", a!.url, "--workflow", WRITER_CRITIC, tmp.path("seeds.jsonl"), "--config", tmp.path("job.json"), "--wait", "--out", tmp.path("out.jsonl")]);
    expect(sub.stderr).toContain(`ok ${N}, failed 0`);
    expect(sub.code).toBe(0);
    const id = sub.stdout.trim();
    const rows = readRows(tmp.path("out.jsonl"));
    expect(rows).toHaveLength(N);
    expect(new Set(rows.map((r) => r.id)).size).toBe(N);
    expect(rows.every((r) => r.job === id && r.workflow === wc.workflow.name && r.provenance.workflow_hash === wc.hash)).toBe(true);
    expect(comparable(rows)).toEqual(comparable(ref));
    // every node hosted its roles when it saw the job, and they shared the work
    for (const p of nodes) expect(p.log(200_000)).toContain(`"workflow":"${wc.workflow.name}","hash":"${wc.hash}","roles":["writer","critic","revise"],"msg":"hosting the roles of a workflow a job carries"`);
    expect(new Set(rows.flatMap((r) => r.provenance.nodes)).size).toBeGreaterThanOrEqual(2);
    const st = await nodes[2]!.job(id);
    expect(st).toMatchObject({ state: "done", workflow: wc.workflow.name, ok: N });
    expect(Object.keys(st.metrics ?? {}).sort()).toEqual(["approved", "rounds"]);
  }, 180_000);

  test("carried - a changed definition of the same name runs beside the first, through a node with a token, without mixing", async () => {
    const changedPath = tmp.path("writer-critic.yaml");
    const text = readFileSync(WRITER_CRITIC, "utf8").replace("options: { maxRounds: 3,", "options: { maxRounds: 1,");
    writeFileSync(changedPath, text.replace('output: { answer: "vars.draft",', "output: { variant: \"'b'\", answer: \"vars.draft\","));
    const first = loadWorkflowFile(WRITER_CRITIC);
    const second = loadWorkflowFile(changedPath);
    expect(second.file.name).toBe(first.file.name);
    expect(second.hash).not.toBe(first.hash);
    const [refA, refB, nodes] = await Promise.all([
      readRows(tmp.path("ref.jsonl")),
      reference(changedPath, tmp.path("ref-b.jsonl")),
      Promise.all([joinNode(), joinNode(), joinNode(["--token", TOKEN])]),
    ]);
    const guarded = nodes[2]!;

    // the guarded node refuses a definition posted without its token, as any request
    const before = await jobCount(nodes[0]!);
    const refused = await fetch(`${guarded.url}/v1/jobs`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ definition: second.definition, seeds }),
    });
    expect(refused.status).toBe(401);
    const cli = await matrixd(["submit", "--server", guarded.url, "--workflow", changedPath, tmp.path("seeds.jsonl")]);
    expect(cli.code).toBe(2);
    expect(cli.stderr).toContain("missing bearer token");
    expect(await jobCount(nodes[0]!)).toBe(before);

    const [subA, subB] = await Promise.all([
      matrixd(["submit", "--server", nodes[0]!.url, "--workflow", WRITER_CRITIC, tmp.path("seeds.jsonl"), "--config", tmp.path("job.json"), "--out", tmp.path("a.jsonl")]),
      matrixd(["submit", "--server", guarded.url, "--workflow", changedPath, tmp.path("seeds.jsonl"), "--config", tmp.path("job.json"), "--out", tmp.path("b.jsonl")], { MATRIXD_TOKEN: TOKEN }),
    ]);
    expect(`${subA.code} ${subA.stderr}`).toStartWith("0 ");
    expect(`${subB.code} ${subB.stderr}`).toStartWith("0 ");
    for (const [out, def, ref, variant] of [
      ["a.jsonl", first, refA, undefined],
      ["b.jsonl", second, refB, "b"],
    ] as const) {
      const rows = readRows(tmp.path(out));
      expect(rows).toHaveLength(N);
      expect(new Set(rows.map((r) => r.id)).size).toBe(N);
      expect(rows.every((r) => r.workflow === def.workflow.name && r.provenance.workflow_hash === def.hash && r.output.variant === variant)).toBe(true);
      expect(comparable(rows)).toEqual(comparable(ref));
    }
    expect(comparable(refA)).not.toEqual(comparable(refB));
  }, 180_000);

  test("carried - a node killed with kill -9 mid-job: the carried job's dataset is complete, one row per task", async () => {
    const wc = loadWorkflowFile(WRITER_CRITIC);
    // A slower sim (its answers do not depend on its speed) so the kill comes mid-job on a fast machine too.
    const slow = { ...CONFIG, sim: { ...SIM, timeScale: 0.1 } };
    const [a, b, c] = await Promise.all([joinNode([], slow), joinNode([], slow), joinNode([], slow)]);
    const sub = await matrixd(["submit", "--server", a!.url, "--workflow", WRITER_CRITIC, tmp.path("seeds.jsonl"), "--config", tmp.path("job.json")]);
    expect(sub.code).toBe(0);
    const id = sub.stdout.trim();
    const mid = await waitFor("a quarter of the rows", async () => {
      const st = await c!.job(id);
      return st.ok + st.failed >= N / 4 || st.state !== "running" ? st : undefined;
    }, 60_000, 50);
    await b!.kill9();
    expect(mid.state).toBe("running");
    const st = await waitDone(procs, id, 90_000);
    expect(st).toMatchObject({ state: "done", ok: N, failed: 0 });
    const rows = await c!.results(id);
    expect(rows).toHaveLength(N);
    expect(new Set(rows.map((r) => r.id)).size).toBe(N);
    expect(rows.every((r) => r.provenance.workflow_hash === wc.hash)).toBe(true);
    expect(comparable(rows)).toEqual(comparable(readRows(tmp.path("ref.jsonl"))));
  }, 180_000);

  test("carried - a broken workflow file: matrixd submit exits 2 listing each problem, sends nothing; a node answers a broken definition 400 naming each", async () => {
    const [a] = await Promise.all([joinNode()]);
    writeFileSync(tmp.path("broken.json"), JSON.stringify(BROKEN, null, 2));
    const before = await jobCount(a!);
    const r = await matrixd(["submit", "--server", a!.url, "--workflow", tmp.path("broken.json"), tmp.path("seeds.jsonl"), "--wait"]);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe("");
    expect(r.stderr).toContain("broken.json: 3 problems:");
    for (const p of problemsOf(BROKEN)) {
      const path = p.slice(0, p.indexOf(":"));
      expect(r.stderr).toMatch(new RegExp(`broken\\.json:\\d+ ${path.replace(/[.[\]]/g, "\\$&")}:`));
    }
    expect(await jobCount(a!)).toBe(before);

    const res = await fetch(`${a!.url}/v1/jobs`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ definition: BROKEN, seeds: [{ id: "x" }] }),
    });
    expect(res.status).toBe(400);
    const body = (await res.json()) as { error: string; details: string[] };
    expect(body.details).toEqual(problemsOf(BROKEN));
    expect(await jobCount(a!)).toBe(before);
  }, 60_000);

  test("carried - matrixd run --workflow FILE resumes a file killed mid-write: one row per task, the same dataset", async () => {
    const ref = readRows(tmp.path("ref.jsonl"));
    const lines = readFileSync(tmp.path("ref.jsonl"), "utf8").split("\n");
    // the first third of the rows, and a torn last line
    writeFileSync(tmp.path("resume.jsonl"), `${lines.slice(0, N / 3).join("\n")}\n${lines[N / 3]?.slice(0, 40)}`);
    const r = await matrixd(["run", "--workflow", WRITER_CRITIC, "--seeds", tmp.path("seeds.jsonl"), "--out", tmp.path("resume.jsonl"), "--llm", "sim", "--config", tmp.path("run.json")]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`${N - N / 3} this run, ${N / 3} resumed`);
    const rows = readRows(tmp.path("resume.jsonl"));
    expect(rows).toHaveLength(N);
    expect(new Set(rows.map((x) => x.id)).size).toBe(N);
    expect(comparable(rows)).toEqual(comparable(ref));
  }, 60_000);
});
