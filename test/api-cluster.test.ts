import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { builtinWorkflows } from "../plugins/index.ts";
import { createApp } from "../src/api/app.ts";
import { type RunningClusterNode, startClusterNode } from "../src/cluster/node.ts";
import { silentLogger } from "../src/log.ts";
import { Registry } from "../src/plugin/registry.ts";
import { BUN, ROOT } from "./support/matrixd.ts";
import { coralSeeds } from "./support/seeds.ts";
import { readRows, tempDir, writeLines } from "./support/files.ts";
import { type NatsServer, natsServerMissing, startNatsServer } from "./support/nats-server.ts";
import { json } from "./support/api.ts";
import { waitFor } from "./support/wait.ts";

const TOKEN = "cluster-api-token";
const missing = natsServerMissing();
if (missing) console.warn(`api-cluster: ${missing}; tests against the real cluster node skipped`);

/** The HTTP API over the real cluster node: two nodes on a real nats-server. */
describe.skipIf(missing !== undefined)("api over the NATS cluster node", () => {
  const registry = new Registry(builtinWorkflows);
  let nats: NatsServer;
  let a: RunningClusterNode;
  let b: RunningClusterNode;
  let appA: ReturnType<typeof createApp>;
  let appB: ReturnType<typeof createApp>;
  const auth = { Authorization: `Bearer ${TOKEN}` };

  beforeAll(async () => {
    nats = await startNatsServer();
    const start = (name: string) =>
      startClusterNode({ name, nats: { servers: [nats.url] }, workflows: registry, defaultSlots: 32, log: silentLogger, heartbeatMs: 200 });
    [a, b] = await Promise.all([start("api-a"), start("api-b")]);
    appA = createApp(a, { registry, token: TOKEN, log: silentLogger });
    appB = createApp(b, { registry, token: TOKEN, log: silentLogger });
  }, 30_000);

  afterAll(async () => {
    await Promise.allSettled([a?.close(), b?.close()]);
    await nats?.close();
  });

  test("api - a job submitted with the CLI to one node runs on the cluster; status and dataset from any node", async () => {
    const tmp = tempDir("matrixd-api-cluster-");
    const server = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: appA.fetch });
    try {
      writeLines(tmp.path("seeds.jsonl"), coralSeeds(60, "c"));
      const run = async (args: string[]) => {
        const proc = Bun.spawn([BUN, "cmd/matrixd.ts", ...args], {
          cwd: ROOT,
          env: { ...process.env, MATRIXD_TOKEN: TOKEN, MATRIXD_SERVER: `http://127.0.0.1:${server.port}` },
          stdout: "pipe",
          stderr: "pipe",
        });
        const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
        return { stdout, stderr, code };
      };
      const sub = await run(["submit", "--workflow", "coral-dummy", tmp.path("seeds.jsonl"), "--wait", "--out", tmp.path("out.jsonl")]);
      expect(sub.stderr).toContain("ok 60, failed 0");
      expect(sub.code).toBe(0);
      const id = sub.stdout.trim();
      const rows = readRows(tmp.path("out.jsonl"));
      expect(rows).toHaveLength(60);
      expect(new Set(rows.map((r) => r.id)).size).toBe(60);
      expect(rows.every((r) => r.status === "ok" && r.job === id)).toBe(true);

      // the other node knows the job and streams the same dataset
      const st = await json(await appB.request(`/v1/jobs/${id}`, { headers: auth }));
      expect(st).toMatchObject({ id, workflow: "coral-dummy", state: "done", total: 60, ok: 60, failed: 0, acceptedBy: "api-a" });
      const list = await json(await appB.request("/v1/jobs", { headers: auth }));
      expect(list.jobs.map((j: { id: string }) => j.id)).toContain(id);
      const out = await appB.request(`/v1/jobs/${id}/results`, { headers: auth });
      expect(out.status).toBe(200);
      expect(out.headers.get("content-type")).toBe("application/x-ndjson");
      const fromB = (await out.text()).trimEnd().split("\n").map((l) => JSON.parse(l));
      const byId = (x: { id: string }, y: { id: string }) => x.id.localeCompare(y.id);
      expect(fromB.sort(byId)).toEqual(rows.sort(byId));

      await waitFor(
        "both members in the view",
        async () => (await json(await appA.request("/v1/cluster", { headers: auth }))).members.length === 2,
        10_000,
      );
      const status = await run(["status"]);
      expect(status.code).toBe(0);
      expect(status.stdout).toContain("cluster seen from api-a");
      expect(status.stdout).toMatch(/\napi-a\s+running/);
      expect(status.stdout).toMatch(/\napi-b\s+running/);
      expect(status.stdout).toMatch(new RegExp(`${id}\\s+coral-dummy\\s+done\\s+60/60`));
    } finally {
      await server.stop(true);
      tmp.remove();
    }
  }, 30_000);

  test("api - an NDJSON submission streams into NATS: no task starts before its last line; a bad line late in the stream refuses the whole job and leaves no trace", async () => {
    const N = 3000;
    const lines = coralSeeds(N, "s").map((s) => `${JSON.stringify(s)}\n`);
    // A body that stops half-way until the test lets it go on.
    let release!: () => void;
    const halfway = new Promise<void>((r) => (release = r));
    let sent = 0;
    const body = new ReadableStream<Uint8Array>({
      async pull(ctl) {
        if (sent === N / 2) await halfway;
        if (sent >= N) return ctl.close();
        ctl.enqueue(new TextEncoder().encode(lines.slice(sent, sent + 300).join("")));
        sent += 300;
      },
    });
    const post = (stream: ReadableStream<Uint8Array> | string, job: string) =>
      appA.request(`/v1/jobs?workflow=coral-dummy&config=${encodeURIComponent(JSON.stringify({ job, concurrency: 48 }))}`, {
        method: "POST",
        headers: { ...auth, "content-type": "application/x-ndjson" },
        body: stream,
        duplex: "half",
      } as RequestInit);
    const steps = () => a.engine.stats.steps + b.engine.stats.steps;
    const before = steps();
    const pending = post(body, "streamed");
    await waitFor("the streamed job's record", async () => (await b.job("streamed")) !== undefined, 10_000);
    await Bun.sleep(300);
    expect(steps()).toBe(before);
    expect((await b.job("streamed"))?.state).toBe("running");
    release();
    const res = await pending;
    expect(res.status).toBe(201);
    expect(await json(res)).toEqual({ id: "streamed", total: N });
    await waitFor("the streamed job to end", async () => (await b.job("streamed"))?.state === "done", 60_000);
    let rows = 0;
    const ids = new Set<string>();
    for await (const line of b.results("streamed")) {
      rows++;
      ids.add(JSON.parse(line).id);
    }
    expect([rows, ids.size]).toEqual([N, N]);

    // purged: the job and its rows are gone from every node
    const del = await appB.request("/v1/jobs/streamed?purge=1", { method: "DELETE", headers: auth });
    expect(await json(del)).toEqual({ id: "streamed", state: "purged" });
    await waitFor("the purged job to leave the other node's view", async () => (await a.job("streamed")) === undefined, 15_000);
    expect((await appA.request("/v1/jobs/streamed/results", { headers: auth })).status).toBe(404);
    let left = 0;
    for await (const _ of b.results("streamed")) left++;
    expect(left).toBe(0);

    // bad lines far into a stream: a 400 naming them, and no job anywhere
    const bad = [...lines.slice(0, 1500), "{oops\n", ...lines.slice(1500, 3000), lines[10] as string];
    const refused = await post(bad.join(""), "refused");
    expect(refused.status).toBe(400);
    const rb = await json(refused);
    expect(rb.details).toEqual(["seed line 1501: not JSON (JSON Parse error: Expected '}')", 'seed line 3002: duplicate seed id "s10" (first on line 11)']);
    expect(await a.job("refused")).toBeUndefined();
    await waitFor("the refused job to leave the other node's view", async () => (await b.job("refused")) === undefined, 15_000);
    expect((await b.jobs()).map((j) => j.id)).not.toContain("refused");
  }, 120_000);

  test("api - the cluster view, metrics, bad seeds and unknown jobs over the real node", async () => {
    await waitFor(
      "both members in the view",
      async () => (await json(await appA.request("/v1/cluster", { headers: auth }))).members.length === 2,
      10_000,
    );
    const cluster = await json(await appA.request("/v1/cluster", { headers: auth }));
    expect(cluster.node).toBe("api-a");
    expect(cluster.members.map((m: { node: string }) => m.node).sort()).toEqual(["api-a", "api-b"]);
    expect(cluster.members[0].roles["coral-dummy.teacher"].slots).toBeGreaterThan(0);

    const metrics = await (await appB.request("/metrics", { headers: auth })).text();
    expect(metrics).toContain("matrixd_http_requests_total");
    expect(metrics.length).toBeGreaterThan(200);

    const bad = await appB.request("/v1/jobs", {
      method: "POST",
      headers: { ...auth, "content-type": "application/json" },
      body: JSON.stringify({ workflow: "coral", seeds: [coralSeeds(1)[0], { question: "no options" }] }),
    });
    expect(bad.status).toBe(400);
    expect((await json(bad)).details[0]).toStartWith('seed line 2: "options": ');

    // a job id that is taken: 409 naming it, and the first job is untouched
    const post = () =>
      appB.request("/v1/jobs", {
        method: "POST",
        headers: { ...auth, "content-type": "application/json" },
        body: JSON.stringify({ workflow: "coral-dummy", seeds: coralSeeds(1), config: { job: "taken-id" } }),
      });
    expect((await post()).status).toBe(201);
    const again = await post();
    expect(again.status).toBe(409);
    expect((await json(again)).error).toBe('job "taken-id" exists already');

    expect((await appA.request("/v1/jobs/no-such-job", { headers: auth })).status).toBe(404);
    expect((await appA.request("/v1/jobs/no-such-job/results", { headers: auth })).status).toBe(404);
    expect((await appA.request("/v1/jobs/no-such-job", { method: "DELETE", headers: auth })).status).toBe(404);
    expect((await appA.request("/v1/jobs")).status).toBe(401);
  }, 30_000);
});
