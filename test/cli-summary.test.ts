import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync, writeFileSync } from "node:fs";
import type { JobStatus } from "../src/protocol/job.ts";
import { tempDir, writeLines } from "./support/files.ts";
import { spawnJoin } from "./support/join-process.ts";
import { MATRIXD, runProcess } from "./support/matrixd.ts";
import { type NatsServer, natsServerMissing, startNatsServer } from "./support/nats-server.ts";
import { coralSeeds } from "./support/seeds.ts";
import { waitFor } from "./support/wait.ts";

/**
 * The failure summaries of `matrixd run` and `matrixd submit --wait`, with
 * tasks failing for real: the simulated LLM answering 500 (no retries),
 * and bad seed lines. In the cluster the reasons travel through each
 * node's counters in NATS while the job runs, and through the stored
 * rows once it has ended.
 */

const tmp = tempDir("matrixd-cli-summary-");
const ERR = { errorRate: 1 };
const REASON = "teacher: LLM request failed after N attempt: http://127.0.0.1:N/v1 answered 500 Internal Server Error: Simulated internal server error.";

const matrixd = (args: string[]) => runProcess([...MATRIXD, ...args], { env: { MATRIXD_TOKEN: "", MATRIXD_SERVER: "" }, timeoutMs: 120_000 });

beforeAll(() => {
  writeLines(tmp.path("c40.jsonl"), coralSeeds(40, "c"));
  writeLines(tmp.path("mixed.jsonl"), [...coralSeeds(10, "m"), { id: "b1", question: 7 }, { id: "b2", question: 8 }, "{broken"]);
  writeFileSync(tmp.path("fail.yaml"), `sim:\n  errorRate: 1\nllm:\n  retries: 0\n`);
});

afterAll(() => tmp.remove());

describe("cli summary", () => {
  test("cli summary - run where every task fails: one line says so first, with the reason; the reasons list counts and an example task; exit 1", async () => {
    const r = await matrixd(["run", "--workflow", "coral", "--seeds", tmp.path("c40.jsonl"), "--out", tmp.path("all.jsonl"), "--llm", "sim", "--config", tmp.path("fail.yaml")]);
    expect(r.code).toBe(1);
    const lines = r.stdout.trim().split("\n");
    expect(lines[0]).toBe(`every task failed (40 of 40): ${REASON} (40)`);
    expect(lines[1]).toMatch(/^coral: 40 rows \(ok 0, failed 40;/);
    expect(r.stdout).toContain("  failures by reason:\n");
    expect(r.stdout).toMatch(new RegExp(`^    40  ${escape(REASON)}  \\(e\\.g\\. task c\\d+\\)$`, "m"));
  }, 60_000);

  test("cli summary - run where some tasks fail: no every-failed line; each reason with its count and an example task, most first", async () => {
    const r = await matrixd(["run", "--workflow", "coral", "--seeds", tmp.path("mixed.jsonl"), "--out", tmp.path("mixed.out"), "--llm", "sim"]);
    expect(r.code).toBe(0);
    expect(r.stdout).not.toContain("every task failed");
    expect(r.stdout).toMatch(/^coral: 13 rows \(ok 10, failed 3;/);
    const reasons = r.stdout.split("\n").filter((l) => /^ {4}\d/.test(l));
    expect(reasons).toEqual([
      expect.stringMatching(/^ {4}2 {2}seed line N: "question": .* \(e\.g\. task b[12]\)$/),
      expect.stringMatching(/^ {4}1 {2}seed line N: not JSON .* \(e\.g\. task line-13\)$/),
    ]);
    // run again on the same output: nothing left to do, and the reasons are counted from the rows already there
    const again = await matrixd(["run", "--workflow", "coral", "--seeds", tmp.path("mixed.jsonl"), "--out", tmp.path("mixed.out"), "--llm", "sim"]);
    expect(again.stdout).toMatch(/^coral: 13 rows \(ok 10, failed 3; 0 this run, 13 resumed\)/);
    expect(again.stdout.split("\n").filter((l) => /^ {4}\d/.test(l))).toEqual(reasons);
  }, 60_000);
});

const missing = natsServerMissing();
if (missing) console.warn(`cli-summary: ${missing}; cluster cases skipped`);

describe.skipIf(missing !== undefined)("cli summary in a cluster", () => {
  let srv: NatsServer;
  beforeAll(async () => {
    srv = await startNatsServer();
  });
  afterAll(async () => {
    await srv?.close();
  });

  test("cli summary - the reasons flow through the nodes' counters while the job runs and stay in its final status; submit --wait prints them", async () => {
    // half the LLM calls fail, slowly enough that the job is seen running with failures
    const config = { sim: { errorRate: 0.5, lenMedian: 40, maxLen: 128, timeScale: 0.06 }, llm: { retries: 0 }, log: { level: "info" } };
    const node = await spawnJoin({ name: "s1", nats: srv.url, dir: tmp.dir, config, args: ["--llm", "sim"], command: MATRIXD });
    try {
      const { id } = await node.submit("coral", coralSeeds(150, "h"), { concurrency: 50 });
      // biome-ignore lint/suspicious/noExplicitAny: the last status seen, said when the wait times out
      let seen: any;
      const running = await waitFor("a running job with failure reasons", async () => {
        const st = await node.job(id);
        seen = st;
        return st.state === "running" && (st.failures?.length ?? 0) > 0 ? st : undefined;
      }, 60_000, 100).catch((err) => {
        const { timeline: _, ...last } = seen ?? {};
        throw new Error(`${(err as Error).message}; last status: ${JSON.stringify(last)}; node log tail:\n${readFileSync(node.logPath, "utf8").split("\n").slice(-40).join("\n")}`);
      });
      checkFailures(running);
      const ended = await waitFor("the job to end", async () => {
        const st = await node.job(id);
        return st.state !== "running" ? st : undefined;
      }, 90_000, 200);
      checkFailures(ended);
      expect(ended.failures?.reduce((s, f) => s + f.count, 0)).toBe(ended.failed);
      const st = await matrixd(["status", "--server", node.url, "--job", id]);
      expect(st.stdout).toMatch(/failures by reason:\n {4}[\d,]+ {2}\S+: LLM request failed after N attempt: .*answered 500 .*\(e\.g\. task h\d+\)/);

      // all failing: submit --wait says so first, then the job, then the reasons; exit 1
      writeLines(tmp.path("s20.jsonl"), coralSeeds(20, "w"));
      const all = await spawnJoin({ name: "s2", nats: srv.url, dir: tmp.dir, config: { ...config, sim: { ...config.sim, ...ERR } }, args: ["--llm", "sim"], command: MATRIXD });
      try {
        await node.term();
        const r = await matrixd(["submit", "--server", all.url.replace(/^http:\/\//, ""), "--workflow", "coral", tmp.path("s20.jsonl"), "--wait"]);
        expect(r.code).toBe(1);
        // the summary follows the progress lines (timestamped, off a terminal)
        const lines = r.stderr.trim().split("\n").filter((l) => !/^\d{4}-\d\d-\d\dT/.test(l));
        expect(lines[0]).toBe(`every task failed (20 of 20): ${REASON} (20)`);
        expect(lines[1]).toMatch(/^job \S+ \(coral\): done/);
        expect(r.stderr).toMatch(new RegExp(`^    20  ${escape(REASON)}  \\(e\\.g\\. task w\\d+\\)$`, "m"));
      } finally {
        await all.kill9();
      }
    } finally {
      if (node.alive) await node.kill9();
    }
  }, 180_000);
});

function checkFailures(st: JobStatus): void {
  const f = st.failures ?? [];
  expect(f.length).toBeGreaterThan(0);
  expect(f.length).toBeLessThanOrEqual(10);
  for (let i = 1; i < f.length; i++) expect(f[i - 1]!.count).toBeGreaterThanOrEqual(f[i]!.count);
  expect(f[0]!.reason).toMatch(/^\S+: LLM request failed after N attempt: http:\/\/127\.0\.0\.1:N\/v1 answered 500 /);
  expect(f[0]!.task).toMatch(/^h\d+$/);
  expect(f[0]!.error).toMatch(/answered 500 Internal Server Error/);
}

function escape(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}
