import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { tempDir } from "./support/files.ts";
import { type JoinProcess, spawnJoin, waitDone } from "./support/join-process.ts";
import { ROOT } from "./support/matrixd.ts";
import { type NatsServer, natsServerMissing, startNatsServer } from "./support/nats-server.ts";
import { type PrometheusServer, type PromSample, prometheusMissing, promtoolCheck, startPrometheus } from "./support/prometheus.ts";
import { coralSeeds } from "./support/seeds.ts";
import { type SimProcess, startSims } from "./support/sim-llm.ts";
import { waitFor } from "./support/wait.ts";

/**
 * /metrics as a real Prometheus sees it: two `matrixd join` processes (one
 * behind a bearer token) on a real nats-server run a coral job against
 * `matrixd sim-llm`; Prometheus scrapes both every second, and the queries
 * a user writes (rows per second of a job, LLM requests waiting per
 * endpoint, step latency quantiles) answer with the expected series.
 * promtool has nothing to say of either node's exposition, and every
 * metric the Grafana dashboard queries exists.
 */

const natsMissing = natsServerMissing();
const promMissing = prometheusMissing();
if (natsMissing) console.warn(`metrics-prometheus: ${natsMissing}; skipped`);
if (promMissing) console.warn(`metrics-prometheus: ${promMissing}; the Prometheus tests are skipped`);

const TOKEN = "scrape-token-42";
const N = 400;
const tmp = tempDir("matrixd-prom-");
let srv: NatsServer;
let sim: SimProcess;
let open: JoinProcess;
let guarded: JoinProcess;
let prom: PrometheusServer | undefined;
let jobId = "";

/** A node's /metrics, with the token where it needs one. */
async function scrape(p: JoinProcess): Promise<string> {
  const headers: Record<string, string> = p === guarded ? { authorization: `Bearer ${TOKEN}` } : {};
  const res = await fetch(`${p.url}/metrics`, { headers, signal: AbortSignal.timeout(10_000) });
  if (!res.ok) throw new Error(`/metrics of ${p.name}: ${res.status}`);
  return res.text();
}

/** The families an exposition declares (its TYPE lines), with their types. */
function families(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const m of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) out.set(m[1] as string, m[2] as string);
  return out;
}

/** Poll a query until `ok` holds of its answer; the error shows the last answer. */
async function until(expr: string, ok: (r: PromSample[]) => boolean, timeoutMs = 30_000): Promise<PromSample[]> {
  let last: PromSample[] = [];
  try {
    return await waitFor(expr, async () => {
      last = await (prom as PrometheusServer).query(expr);
      return ok(last) ? last : undefined;
    }, timeoutMs, 500);
  } catch (err) {
    throw new Error(`${String(err)}; last answer: ${JSON.stringify(last)}`);
  }
}

const value = (s: PromSample) => Number(s.value[1]);

describe.skipIf(natsMissing !== undefined)("metrics a real Prometheus scrapes", () => {
  beforeAll(async () => {
    srv = await startNatsServer();
    // few slots and a short queue: requests wait, in the client and at the server
    sim = await startSims(["--slots", "8", "--len-median", "60", "--max-len", "160", "--time-scale", "0.1"]);
    const llm = sim.urls[0] as string;
    // coral's roles only: the idle pullers of every workflow's LLM roles would reserve the whole small LLM slot group
    const config = { nats: { ackWaitSec: 3, memberTtlSec: 3 }, roles: { "coral.*": {} }, llm: { endpoints: [{ url: llm, maxConcurrency: 12 }] } };
    [open, guarded] = await Promise.all([
      spawnJoin({ name: "prom-a", nats: srv.url, dir: tmp.dir, config }),
      spawnJoin({ name: "prom-b", nats: srv.url, dir: tmp.dir, config, args: ["--token", TOKEN] }),
    ]);
    if (!promMissing) {
      prom = await startPrometheus(tmp.dir, [
        { job: "matrixd", targets: [new URL(open.url).host] },
        { job: "matrixd-token", targets: [new URL(guarded.url).host], token: TOKEN },
      ]);
    }
    jobId = (await open.submit("coral", coralSeeds(N, "p"), { seed: 7, concurrency: 64 })).id;
  }, 120_000);

  afterAll(async () => {
    await prom?.stop();
    await Promise.all([open, guarded].filter((p) => p?.alive).map((p) => p.term(10_000)));
    await sim?.stop();
    await srv?.close();
    tmp.remove();
  });

  test.skipIf(promMissing !== undefined)("metrics - Prometheus scrapes both nodes: targets up, no label renamed", async () => {
    const targets = await waitFor("both targets up", async () => {
      const t = await (prom as PrometheusServer).targets();
      return t.length === 2 && t.every((x) => x.health === "up") ? t : undefined;
    }, 20_000, 250);
    expect(targets.map((t) => t.labels.job).sort()).toEqual(["matrixd", "matrixd-token"]);
    const nodes = await until("count by (node) (matrixd_build_info)", (r) => r.length === 2);
    expect(nodes.map((s) => s.metric.node).sort()).toEqual(["prom-a", "prom-b"]);
    // `job` is the scrape job's: nothing of matrixd's is renamed exported_job
    expect(await prom?.query('{exported_job!=""}')).toEqual([]);
    expect(await prom?.query('{__name__=~"matrixd_.+", node=""}')).toEqual([]);
  }, 40_000);

  test.skipIf(promMissing !== undefined)("metrics - the queries a user writes answer while the job runs", async () => {
    const rows = await until(`sum by (job_id) (rate(matrixd_job_rows_total{job_id="${jobId}"}[5s]))`, (r) => r.length === 1 && value(r[0] as PromSample) > 0);
    expect(rows[0]?.metric).toEqual({ job_id: jobId });
    // the cluster's counts, as each node reads them: its four states add up to the job's tasks
    const states = await until(`max by (state) (matrixd_job_tasks{job_id="${jobId}"})`, (r) => r.length === 4);
    expect(states.map((s) => s.metric.state).sort()).toEqual(["failed", "ok", "queued", "running"]);
    const totals = await prom?.query(`sum by (node) (matrixd_job_tasks{job_id="${jobId}"})`);
    expect(totals?.map((s) => [s.metric.node, value(s)]).sort()).toEqual([["prom-a", N], ["prom-b", N]]);
    // both nodes ran steps of the job, each with its own node label
    await until(`sum by (node) (rate(matrixd_steps_total[5s])) > 0`, (r) => r.length === 2);
    const waiting = await until("sum by (endpoint) (matrixd_llm_endpoint_waiting)", (r) => r.length === 1);
    expect(waiting[0]?.metric.endpoint).toBe(sim.urls[0]);
    const running = await until("max by (endpoint) (matrixd_llm_endpoint_server_running)", (r) => r.length === 1 && value(r[0] as PromSample) > 0);
    expect(running[0]?.metric.endpoint).toBe(sim.urls[0]);
    await until("sum by (endpoint) (matrixd_llm_endpoint_in_flight) > 0", (r) => r.length === 1);
    const p99 = await until(
      "histogram_quantile(0.99, sum by (le, workflow, role) (rate(matrixd_step_duration_seconds_bucket[10s])))",
      (r) => r.some((s) => s.metric.role === "teacher" && value(s) > 0),
    );
    for (const s of p99.filter((x) => Number.isFinite(value(x)))) {
      expect(s.metric.workflow).toBe("coral");
      expect(value(s)).toBeLessThan(300);
    }
    const calls = await until(
      "histogram_quantile(0.5, sum by (le, endpoint, model) (rate(matrixd_llm_request_duration_seconds_bucket[10s])))",
      (r) => r.length === 1 && value(r[0] as PromSample) > 0,
    );
    expect(calls[0]?.metric.endpoint).toBe(sim.urls[0]);
    const tokens = await until(`sum by (job_id) (rate(matrixd_llm_completion_tokens_total[5s]))`, (r) => r.length === 1 && value(r[0] as PromSample) > 0);
    expect(tokens[0]?.metric.job_id).toBe(jobId);
  }, 90_000);

  test("metrics - promtool has nothing to say of a live /metrics; role load carries step p50/p99", async () => {
    await waitFor("steps on both nodes", async () => (await Promise.all([open, guarded].map(scrape))).every((t) => /^matrixd_steps_total\{[^}]*\} [1-9]/m.test(t)), 60_000, 250);
    for (const p of [open, guarded]) {
      const text = await scrape(p);
      expect(text).toContain(`matrixd_job_tasks{node="${p.name}",job_id="${jobId}",workflow="coral",state="ok"}`);
      expect(text).toMatch(/^matrixd_step_duration_seconds_bucket\{node="[^"]+",workflow="coral",role="teacher",le="\+Inf"\} [1-9]/m);
      expect(text.split("\n").filter((l) => /[{,]job="/.test(l))).toEqual([]);
      if (!promMissing) expect(await promtoolCheck(text)).toEqual({ code: 0, output: "" });
    }
    const member = await waitFor("a role load with step latency", async () => {
      const all = await open.members();
      return all.find((m) => m.roles["coral.teacher"]?.p50Ms !== undefined);
    }, 20_000, 250);
    const teacher = member.roles["coral.teacher"];
    expect(teacher?.p50Ms).toBeGreaterThan(0);
    expect(teacher?.p99Ms).toBeGreaterThanOrEqual(teacher?.p50Ms ?? 0);
  }, 90_000);

  test("metrics - every metric the Grafana dashboard queries exists in a live /metrics", async () => {
    const dash = JSON.parse(readFileSync(join(ROOT, "configs/grafana/matrixd.json"), "utf8"));
    const exprs: string[] = [];
    const walk = (v: unknown): void => {
      if (Array.isArray(v)) v.forEach(walk);
      else if (v && typeof v === "object") {
        for (const [k, x] of Object.entries(v)) {
          if ((k === "expr" || k === "query") && typeof x === "string") exprs.push(x);
          else walk(x);
        }
      }
    };
    walk(dash);
    expect(exprs.length).toBeGreaterThan(8);
    const known = families((await Promise.all([open, guarded].map(scrape))).join("\n"));
    const unknown: string[] = [];
    for (const expr of exprs) {
      for (const [name] of expr.matchAll(/\bmatrixd_[a-z0-9_]+/g)) {
        const base = name.replace(/_(bucket|sum|count)$/, "");
        const ok = known.has(name) || (base !== name && known.get(base) === "histogram");
        if (!ok) unknown.push(`${name} (in ${expr})`);
      }
    }
    expect(unknown).toEqual([]);
  }, 60_000);

  test("metrics - the job ends; its gauges say so", async () => {
    const st = await waitDone([open], jobId, 120_000);
    expect(st.ok + st.failed).toBe(N);
    const text = await scrape(guarded);
    expect(text).toContain(`matrixd_job_live{node="prom-b",job_id="${jobId}",workflow="coral"} 0`);
    expect(text).toMatch(new RegExp(`matrixd_job_tasks\\{node="prom-b",job_id="${jobId}",workflow="coral",state="ok"\\} ${st.ok}\\n`));
  }, 130_000);
});
