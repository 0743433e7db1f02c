import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, writeFileSync } from "node:fs";
import { createApp } from "../src/api/app.ts";
import { silentLogger } from "../src/log.ts";
import { BUN, ROOT } from "./support/matrixd.ts";
import { coralSeeds } from "./support/seeds.ts";
import { readRows, tempDir, writeLines } from "./support/files.ts";
import { gate, testRegistry } from "./support/api.ts";
import { waitFor } from "./support/wait.ts";
import { MemoryNode } from "./support/memory-node.ts";

const TOKEN = "cli-token";
const tmp = tempDir("matrixd-api-cli-");
const g = gate();
const registry = testRegistry(g);
const node = new MemoryNode({ name: "cli-node", registry });
let server: ReturnType<typeof Bun.serve>;
let small: ReturnType<typeof Bun.serve>;
let url = "";

interface Ran {
  code: number;
  stdout: string;
  stderr: string;
}

/** Run `matrixd ARGS` as its own process, as a user would. */
async function matrixd(args: string[], env: Record<string, string> = {}): Promise<Ran> {
  const proc = Bun.spawn([BUN, "cmd/matrixd.ts", ...args], {
    cwd: ROOT,
    env: { ...process.env, MATRIXD_TOKEN: "", MATRIXD_SERVER: "", ...env },
    stdout: "pipe",
    stderr: "pipe",
  });
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  return { code, stdout, stderr };
}

beforeAll(() => {
  server = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: createApp(node, { registry, token: TOKEN, log: silentLogger }).fetch });
  small = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch: createApp(node, { registry, token: TOKEN, maxBodyBytes: 64 * 1024, log: silentLogger }).fetch,
  });
  url = `http://127.0.0.1:${server.port}`;
  writeLines(tmp.path("seeds.jsonl"), coralSeeds(40));
  writeLines(tmp.path("bad.jsonl"), [coralSeeds(1)[0], "{oops", { id: "x", question: "", options: ["a", "b"], answer: "A" }]);
  writeLines(tmp.path("big.jsonl"), coralSeeds(3000));
  writeLines(tmp.path("gated.jsonl"), [{ id: "g1", n: 1 }]);
  writeFileSync(tmp.path("job.yaml"), "workflow: coral-dummy\ntrials: 2\nseed: 3\noptions:\n  maxTurns: 6\nsim:\n  slots: 4\n");
});

afterAll(async () => {
  g.open();
  await server?.stop(true);
  await small?.stop(true);
  await node.close();
  tmp.remove();
});

describe("api cli", () => {
  test("api - submit --wait --out writes the dataset; status shows members and the job", async () => {
    const out = tmp.path("out.jsonl");
    const sub = await matrixd(["submit", "--server", url, "--workflow", "coral-dummy", tmp.path("seeds.jsonl"), "--wait", "--out", out], {
      MATRIXD_TOKEN: TOKEN,
    });
    expect(sub.stderr).toContain("rows 40/40 (100.0%): ok 40, failed 0");
    expect(sub.code).toBe(0);
    const id = sub.stdout.trim();
    expect(id).toMatch(/^job-/);
    expect(sub.stderr).toContain(`dataset: ${out} (40 rows)`);
    expect(existsSync(`${out}.part`)).toBe(false);
    const rows = readRows(out);
    expect(rows).toHaveLength(40);
    expect(new Set(rows.map((r) => r.id)).size).toBe(40);
    expect(rows.every((r) => r.job === id && r.status === "ok")).toBe(true);

    const [table, one, json] = await Promise.all([
      matrixd(["status", "--server", url, "--token", TOKEN]),
      matrixd(["status", "--job", id, "--token", TOKEN], { MATRIXD_SERVER: url }),
      matrixd(["status", "--server", url, "--json"], { MATRIXD_TOKEN: TOKEN }),
    ]);
    expect(table.code).toBe(0);
    expect(table.stdout).toContain("cluster seen from cli-node");
    expect(table.stdout).toMatch(/NODE\s+STATE\s+VERSION\s+UP\s+SEEN\s+ROLES/);
    expect(table.stdout).toMatch(/cli-node\s+running\s+\S+\s+\S+\s+\S+ ago\s+coral: extractor 0\/64, matcher 0\/64, student 0\/64, teacher 0\/64\s+-\n\s+coral-dummy: extractor/);
    expect(table.stdout).toContain("gated: wait ");
    expect(table.stdout).toMatch(new RegExp(`${id}\\s+coral-dummy\\s+done\\s+40/40\\s+40\\s+0\\s+0\\s+0`));
    expect(one.code).toBe(0);
    expect(one.stdout).toContain(`job ${id} (coral-dummy): done, accepted by cli-node`);
    expect(one.stdout).toContain("agreement_correctness 1.000");
    expect(json.code).toBe(0);
    const parsed = JSON.parse(json.stdout);
    expect(parsed.node).toBe("cli-node");
    expect(parsed.members[0].node).toBe("cli-node");
    expect(parsed.jobs.find((j: { id: string }) => j.id === id).ok).toBe(40);
  }, 30_000);

  test("api - submit sends the job settings of a config file; without --wait it prints the id and returns", async () => {
    const sub = await matrixd(["submit", "--server", url, "--config", tmp.path("job.yaml"), tmp.path("seeds.jsonl"), "--token", TOKEN]);
    expect(sub.code).toBe(0);
    expect(sub.stderr).toContain("node settings not sent with the job: sim");
    expect(sub.stderr).toContain("80 tasks submitted");
    const id = sub.stdout.trim();
    await waitFor("the job", async () => (await node.job(id))?.state === "done", 10_000);
    expect((await node.job(id))?.ok).toBe(80);
  }, 30_000);

  test("api - submit refusals exit 2 with the server's reason; a cancelled job exits 1", async () => {
    const live = Bun.spawn([BUN, "cmd/matrixd.ts", "submit", "--server", url, "--workflow", "gated", tmp.path("gated.jsonl"), "--wait"], {
      cwd: ROOT,
      env: { ...process.env, MATRIXD_TOKEN: TOKEN },
      stdout: "pipe",
      stderr: "pipe",
    });
    const [bad, noToken, wrong, tooBig, unknown] = await Promise.all([
      matrixd(["submit", "--server", url, "--workflow", "coral", tmp.path("bad.jsonl"), "--token", TOKEN]),
      matrixd(["submit", "--server", url, "--workflow", "coral", tmp.path("seeds.jsonl")]),
      matrixd(["submit", "--server", url, "--workflow", "nope", tmp.path("seeds.jsonl"), "--token", TOKEN]),
      matrixd(["submit", "--server", `http://127.0.0.1:${small.port}`, "--workflow", "coral", tmp.path("big.jsonl"), "--token", TOKEN]),
      matrixd(["status", "--server", url, "--job", "no-such-job", "--token", TOKEN]),
    ]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('2 of 3 seed lines are bad for workflow "coral"');
    expect(bad.stderr).toContain("seed line 2: not JSON");
    expect(bad.stderr).toContain('seed line 3: "question": ');
    expect(bad.stdout).toBe("");
    expect(noToken.code).toBe(2);
    expect(noToken.stderr).toContain("missing bearer token");
    expect(wrong.code).toBe(2);
    expect(wrong.stderr).toContain('unknown workflow "nope"');
    expect(tooBig.code).toBe(2);
    expect(tooBig.stderr).toContain("request body is larger than the limit of 65536 bytes");
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('no job "no-such-job"');

    // the live job: its id comes first, then it is cancelled under the waiting client
    const reader = (live.stdout as ReadableStream<Uint8Array>).getReader();
    const first = new TextDecoder().decode((await reader.read()).value);
    const id = first.trim();
    expect(id).toMatch(/^job-/);
    const del = await fetch(`${url}/v1/jobs/${id}`, { method: "DELETE", headers: { Authorization: `Bearer ${TOKEN}` } });
    expect(del.status).toBe(200);
    expect(await live.exited).toBe(1);
    expect(await new Response(live.stderr).text()).toContain(`job ${id} (gated): cancelled`);
  }, 30_000);

  test("api - status and submit: usage errors exit 2, an unreachable server exits 1", async () => {
    const [down, noFile, noWorkflow, help, top] = await Promise.all([
      matrixd(["status", "--server", "http://127.0.0.1:9"]),
      matrixd(["submit", "--server", url, "--workflow", "coral", tmp.path("missing.jsonl")]),
      matrixd(["submit", "--server", url, tmp.path("seeds.jsonl")]),
      matrixd(["submit", "--help"]),
      matrixd(["--help"]),
    ]);
    expect(down.code).toBe(1);
    expect(down.stderr).toContain("cannot reach http://127.0.0.1:9");
    expect(noFile.code).toBe(2);
    expect(noFile.stderr).toContain("does not exist");
    expect(noWorkflow.code).toBe(2);
    expect(noWorkflow.stderr).toContain("--workflow is required");
    expect(help.code).toBe(0);
    expect(help.stdout).toContain("usage: matrixd submit --server URL --workflow NAME FILE.jsonl [--wait] [--out FILE]");
    expect(top.stdout).toMatch(/submit\s+send a seed file/);
    expect(top.stdout).toMatch(/status\s+the cluster's members and jobs/);
  }, 30_000);
});
