import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { createApp } from "../src/api/app.ts";
import { silentLogger } from "../src/log.ts";
import { gate, testRegistry } from "./support/api.ts";
import { readRows, tempDir, writeLines } from "./support/files.ts";
import { BUN, MATRIXD, ROOT, runProcess } from "./support/matrixd.ts";
import { MemoryNode } from "./support/memory-node.ts";
import { coralSeeds } from "./support/seeds.ts";
import { waitFor } from "./support/wait.ts";

/**
 * `matrixd jobs`, `matrixd results` and `matrixd cancel` as their own
 * processes against a node's real HTTP API (behind a token).
 */

const TOKEN = "jobs-token";
const tmp = tempDir("matrixd-cli-jobs-");
const g = gate();
const registry = testRegistry(g);
const node = new MemoryNode({ name: "jobs-node", registry });
let server: ReturnType<typeof Bun.serve>;
let url = "";

const matrixd = (args: string[], env: Record<string, string> = {}) => runProcess([...MATRIXD, ...args], { env: { MATRIXD_TOKEN: TOKEN, MATRIXD_SERVER: "", ...env } });

beforeAll(() => {
  server = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: createApp(node, { registry, token: TOKEN, log: silentLogger }).fetch });
  url = `http://127.0.0.1:${server.port}`;
  writeLines(tmp.path("seeds.jsonl"), coralSeeds(30, "j"));
  writeLines(tmp.path("gated.jsonl"), [{ id: "g1", n: 1 }, { id: "g2", n: 2 }]);
});

afterAll(async () => {
  g.open();
  await server?.stop(true);
  await node.close();
  tmp.remove();
});

describe("cli jobs, results, cancel", () => {
  test("cli jobs - a table of the cluster's jobs; results to stdout and to a file; --json; the server given without its scheme", async () => {
    const sub = await matrixd(["submit", "--server", url, "--workflow", "coral-dummy", tmp.path("seeds.jsonl"), "--wait"]);
    expect(sub.stderr).toContain("ok 30, failed 0");
    expect(sub.code).toBe(0);
    const id = sub.stdout.trim();
    const table = await matrixd(["jobs", "--server", url.replace("http://", "")]);
    expect(table.code).toBe(0);
    const [head, row] = table.stdout.trim().split("\n");
    expect(head).toMatch(/^JOB\s+WORKFLOW\s+STATE\s+ROWS\s+OK\s+FAILED\s+RUNNING\s+QUEUED\s+ROWS\/S\s+TOKENS\s+AGE$/);
    expect(row).toMatch(new RegExp(`^${id}\\s+coral-dummy\\s+done\\s+30/30\\s+30\\s+0\\s+0\\s+0\\s`));
    const json = await matrixd(["jobs", "--server", url, "--json"]);
    expect(JSON.parse(json.stdout).map((j: { id: string }) => j.id)).toContain(id);

    const out = await matrixd(["results", id, "--server", url]);
    expect(out.code).toBe(0);
    const rows = out.stdout.trim().split("\n").map((l) => JSON.parse(l));
    expect(rows.map((r) => r.id).sort()).toEqual(coralSeeds(30, "j").map((s) => s.id as string).sort());
    const file = tmp.path("ds.jsonl");
    const toFile = await matrixd(["results", id, "--server", url, "--out", file]);
    expect(toFile.code).toBe(0);
    expect(toFile.stderr).toBe(`job ${id}: 30 rows written to ${file}\n`);
    expect(readRows(file)).toEqual(rows);
    expect(existsSync(`${file}.part`)).toBe(false);

    // --out into a folder not there yet: made; into a path under a file: refused before anything is sent
    const deep = tmp.path("new/dir/ds.jsonl");
    const made = await matrixd(["submit", "--server", url, "--workflow", "coral-dummy", tmp.path("seeds.jsonl"), "--out", deep]);
    expect(made.code).toBe(0);
    expect(readRows(deep).length).toBe(30);
    const jobsBefore = (await node.jobs()).length;
    const under = await matrixd(["submit", "--server", url, "--workflow", "coral-dummy", tmp.path("seeds.jsonl"), "--out", `${file}/x.jsonl`]);
    expect(under.code).toBe(2);
    expect(under.stderr.trim().split("\n")).toEqual([expect.stringMatching(/^matrixd submit: .*--out .*x\.jsonl.* is a file/)]);
    expect((await node.jobs()).length).toBe(jobsBefore);
  }, 60_000);

  test("cli cancel - cancels a running job (then exit 2: already cancelled); --purge drops it; an unknown job exits 2; no token exits 2", async () => {
    const sub = await matrixd(["submit", "--server", url, "--workflow", "gated", tmp.path("gated.jsonl")]);
    const id = sub.stdout.trim();
    await waitFor("the job to run", async () => (await node.job(id))?.state === "running", 10_000, 20);
    const c = await matrixd(["cancel", id, "--server", url]);
    expect(c).toEqual({ code: 0, stdout: "", stderr: `job ${id}: cancelled\n` });
    expect((await node.job(id))?.state).toBe("cancelled");
    const again = await matrixd(["cancel", id, "--server", url]);
    expect(again.code).toBe(2);
    expect(again.stderr).toBe(`matrixd cancel: job "${id}" is already cancelled\n`);
    const purge = await matrixd(["cancel", id, "--purge", "--server", url]);
    expect(purge).toEqual({ code: 0, stdout: "", stderr: `job ${id}: purged\n` });
    expect(await node.job(id)).toBeUndefined();
    const unknown = await matrixd(["results", "nope", "--server", url]);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr.trim().split("\n")).toEqual([expect.stringMatching(/^matrixd results: .*nope/)]);
    const noToken = await matrixd(["jobs", "--server", url], { MATRIXD_TOKEN: "" });
    expect(noToken.code).toBe(2);
    expect(noToken.stderr.trim().split("\n")).toEqual([expect.stringMatching(/^matrixd jobs: /)]);
    const down = await matrixd(["jobs", "--server", "127.0.0.1:9"]);
    expect(down.code).toBe(1);
    expect(down.stderr).toMatch(/^matrixd jobs: cannot reach http:\/\/127\.0\.0\.1:9/);
  }, 60_000);

  test("cli submit - --wait on a job whose figures do not move says for how long, not a frozen ETA; every figure labelled", async () => {
    const proc = Bun.spawn([BUN, "cmd/matrixd.ts", "submit", "--server", url, "--workflow", "gated", tmp.path("gated.jsonl"), "--wait", "--progress-every", "1"], {
      cwd: ROOT,
      env: { ...process.env, MATRIXD_TOKEN: TOKEN },
      stdout: "pipe",
      stderr: "pipe",
    });
    let text = "";
    const reading = (async () => {
      for await (const chunk of proc.stderr) text += new TextDecoder().decode(chunk);
    })();
    await waitFor("a progress line saying nothing moved", async () => /no change for [6-9]s/.test(text), 20_000, 100);
    g.open();
    expect(await proc.exited).toBe(0);
    await reading;
    const lines = text.split("\n").filter((l) => /^\d{4}-/.test(l));
    expect(lines[0]).toMatch(/ done 0\/2 \(ok 0, failed 0\), running 2, queued 0 \| [\d.]+ rows\/s, tokens 0 \| 0\.0% done, ETA \?, elapsed \d+s$/);
    const stalled = lines.find((l) => l.includes("no change for"));
    expect(stalled).toMatch(/ \| 0\.0% done, no change for [5-9]s, elapsed \d+s$/);
    expect(stalled).not.toContain("ETA");
  }, 60_000);

  test("cli jobs - --help of jobs, results and cancel; the top help lists them", async () => {
    const [jobs, results, cancel, top] = await Promise.all([matrixd(["jobs", "--help"]), matrixd(["results", "--help"]), matrixd(["cancel", "--help"]), matrixd(["--help"])]);
    expect(jobs.stdout).toContain("usage: matrixd jobs [--server URL] [--json] [--token T]");
    expect(results.stdout).toContain("usage: matrixd results ID [--out FILE] [--server URL] [--token T]");
    expect(cancel.stdout).toContain("usage: matrixd cancel ID [--purge] [--server URL] [--token T]");
    for (const r of [jobs, results, cancel]) expect(r.code).toBe(0);
    expect(top.stdout).toMatch(/jobs\s+the cluster's jobs/);
    expect(top.stdout).toMatch(/results\s+a job's dataset/);
    expect(top.stdout).toMatch(/cancel\s+cancel a job/);
  }, 30_000);
});
