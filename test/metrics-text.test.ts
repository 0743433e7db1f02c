import { describe, expect, test } from "bun:test";
import { newBusStats } from "../src/bus/nats/stats.ts";
import { shownJobs } from "../src/cluster/figures.ts";
import { type NodeFigures, prometheusText } from "../src/cluster/metrics.ts";
import { Accounting } from "../src/engine/accounting.ts";
import { StepTimes } from "../src/engine/step-times.ts";
import { DURATION_BUCKETS_MS, Histogram, RecentHistogram } from "../src/metrics/histogram.ts";
import { label, PromWriter } from "../src/metrics/text.ts";
import type { JobRecord } from "../src/store/index.ts";
import { join } from "node:path";
import { ROOT } from "./support/matrixd.ts";
import { PROMTOOL, prometheusMissing, promtoolCheck } from "./support/prometheus.ts";

const noPromtool = prometheusMissing();

/** A node's figures with every family filled, labels that need escaping included. */
function figures(): NodeFigures {
  const state = "running" as const;
  const steps = new StepTimes();
  steps.observe("coral", "teacher", 12, 1000);
  steps.observe("coral", "teacher", 700, 1000);
  const calls = new Histogram(DURATION_BUCKETS_MS);
  calls.observe(250);
  return {
    node: 'n"1',
    engine: { steps: 2, hops: 1, ok: 1, failed: 0, running: 0, promptTokens: 5, completionTokens: 7, stepErrors: 0, restarts: 0 },
    bus: newBusStats(),
    results: { stored: 1, duplicates: 0, oversized: 0, garbage: 0 },
    link: { connected: true, disconnects: 0, reconnects: 0, errors: 0 },
    roles: { "coral.teacher": { slots: 4, busy: 1, queued: 0 } },
    groups: { llm: { slots: 8, busy: 1 } },
    kvGarbage: 0,
    eventGarbage: 0,
    admitted: 0,
    keepalives: 0,
    draining: false,
    steps: steps.roles(),
    endpoints: [{ url: "http://127.0.0.1:8000/v1", models: ["m"], inFlight: 1, limit: 8, healthy: true, requests: 3, errors: 0, promptTokens: 5, completionTokens: 7, waiting: 2, serverRunning: 1 }],
    calls: [{ endpoint: "http://127.0.0.1:8000/v1", model: "m\\x", hist: calls }],
    jobs: [{ id: "job-1", workflow: "coral", state, total: 3, queued: 1, running: 1, ok: 1, failed: 0, promptTokens: 5, completionTokens: 7, rate: 1, createdAt: 0, updatedAt: 0, acceptedBy: "n" }],
    stored: (job) => (job === "job-1" ? { ok: 1, failed: 0, promptTokens: 5, completionTokens: 7, sums: {} } : undefined),
  };
}

describe("metrics text", () => {
  test("metrics - a family written twice, or a counter without _total, is refused", () => {
    expect(() => new PromWriter().one("a_total", "counter", "A.", 1).one("a_total", "counter", "A.", 2)).toThrow("written twice");
    expect(() => new PromWriter().one("a_count", "counter", "A.", 1)).toThrow("must end in _total");
    expect(new PromWriter(label("node", "x")).one("g", "gauge", "G.", 1, label("k", 'a"b\\c\nd')).text()).toBe(
      '# HELP g G.\n# TYPE g gauge\ng{node="x",k="a\\"b\\\\c\\nd"} 1\n',
    );
  });

  test("metrics - histograms: cumulative buckets in seconds, quantiles of the recent window only", () => {
    const h = new RecentHistogram([10, 100, 1000], 60_000);
    for (let i = 0; i < 99; i++) h.observeAt(5, 1000);
    h.observeAt(500, 1000);
    expect(h.recentQuantile(0.5, 1000)).toBeLessThanOrEqual(10);
    expect(h.recentQuantile(0.995, 1000)).toBeGreaterThan(100);
    // a minute on, the last window still counts; two minutes on, nothing recent is left
    expect(h.recentQuantile(0.5, 62_000)).toBeLessThanOrEqual(10);
    h.observeAt(800, 125_000);
    expect(h.recentQuantile(0.5, 125_000)).toBeGreaterThan(100);
    expect(h.recentQuantile(0.5, 400_000)).toBeUndefined();
    expect(h.count).toBe(101);
    const text = new PromWriter().histogram("x_seconds", "X.", [["", h]]).text();
    expect(text).toContain('x_seconds_bucket{le="0.01"} 99\nx_seconds_bucket{le="0.1"} 99\nx_seconds_bucket{le="1"} 101\nx_seconds_bucket{le="+Inf"} 101\n');
    expect(text).toContain("x_seconds_sum 1.795\nx_seconds_count 101\n");
  });

  test("metrics - step times give each role's p50 and p99 by its bus key", () => {
    const t = new StepTimes();
    expect(t.latency("coral.teacher")).toBeUndefined();
    for (let i = 0; i < 100; i++) t.observe("coral", "teacher", i < 98 ? 20 : 4000, performance.now());
    const l = t.latency("coral.teacher");
    expect(l?.p50Ms).toBeGreaterThan(10);
    expect(l?.p50Ms).toBeLessThanOrEqual(25);
    expect(l?.p99Ms).toBeGreaterThan(2500);
    expect([...t.roles()].map((r) => `${r.workflow}.${r.role}`)).toEqual(["coral.teacher"]);
  });

  test("metrics - ended jobs leave /metrics after a while, live ones stay", () => {
    const rec = (id: string, state: string, updatedAt: number) => ({ id, state, updatedAt }) as unknown as JobRecord;
    const now = 1_000_000;
    const shown = shownJobs([rec("live", "running", 0), rec("fresh", "done", now - 1000), rec("old", "done", now - 700_000), rec("gone", "cancelled", now - 900_000)], now, 600_000);
    expect(shown.map((r) => r.id)).toEqual(["live", "fresh"]);
  });

  test("metrics - node figures: workflow and role labels, job_id, node on every sample", () => {
    const text = prometheusText(figures()).text();
    expect(text).toContain('matrixd_role_busy{node="n\\"1",workflow="coral",role="teacher"} 1');
    expect(text).toContain('matrixd_job_tasks{node="n\\"1",job_id="job-1",workflow="coral",state="queued"} 1');
    expect(text).toContain('matrixd_job_rows_total{node="n\\"1",job_id="job-1",workflow="coral",status="ok"} 1');
    expect(text).toContain('matrixd_llm_endpoint_waiting{node="n\\"1",endpoint="http://127.0.0.1:8000/v1"} 2');
    expect(text).toContain('matrixd_step_duration_seconds_bucket{node="n\\"1",workflow="coral",role="teacher",le="+Inf"} 2');
    expect(text).toContain('matrixd_llm_request_duration_seconds_count{node="n\\"1",endpoint="http://127.0.0.1:8000/v1",model="m\\\\x"} 1');
    // a server that has not reported lately has no server_waiting sample
    expect(text).not.toContain("matrixd_llm_endpoint_server_waiting{");
    for (const line of text.split("\n")) if (line && !line.startsWith("#")) expect(line).toMatch(/^matrixd_[a-z_]+\{node="n\\"1"/);
  });

  test.skipIf(noPromtool !== undefined)("metrics - promtool finds nothing in the node figures and the accounts, and does find a bad exposition", async () => {
    const w = prometheusText(figures());
    const acct = new Accounting({ m: { prompt: 1, completion: 2 } });
    acct.setBudget("job-1", { tokens: 100 });
    acct.add("job-1", "teacher", { usage: { prompt: 3, completion: 4 }, model: "m", endpoint: "http://127.0.0.1:8000/v1" });
    expect(await promtoolCheck(acct.prometheus(w).text())).toEqual({ code: 0, output: "" });
    const bad = await promtoolCheck("# HELP foo_x X.\n# TYPE foo_x counter\nfoo_x 1\n");
    expect(bad.output).toContain('should have "_total" suffix');
  });

  test.skipIf(noPromtool !== undefined)("metrics - the example scrape config is one promtool accepts", async () => {
    const proc = Bun.spawn([PROMTOOL, "check", "config", "--syntax-only", join(ROOT, "configs/prometheus/prometheus.yml")], { stdout: "pipe", stderr: "pipe" });
    const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
    expect({ code, out: out.trim(), err: err.trim() }).toEqual({ code: 0, out: expect.stringContaining("SUCCESS"), err: "" });
  });
});
