import { afterAll, describe, expect, test } from "bun:test";
import { createApp } from "../src/api/app.ts";
import { silentLogger } from "../src/log.ts";
import { coralSeeds } from "./support/seeds.ts";
import { gate, json, overriding, testRegistry } from "./support/api.ts";
import { waitFor } from "./support/wait.ts";
import { NatsUnavailableError } from "../src/store/errors.ts";
import { MemoryNode } from "./support/memory-node.ts";
import { TimeoutError } from "@nats-io/transport-node";

const TOKEN = "s3cret-token";
const g = gate();
const registry = testRegistry(g);
const node = new MemoryNode({ name: "node-a", registry });
const open = createApp(node, { registry, log: silentLogger });
const guarded = createApp(node, { registry, token: TOKEN, log: silentLogger });
const bearer = { Authorization: `Bearer ${TOKEN}` };

afterAll(async () => {
  g.open();
  await node.close();
});

describe("api routes", () => {
  test("api - /healthz answers without a token", async () => {
    const res = await guarded.request("/healthz");
    expect(res.status).toBe(200);
    expect(await json(res)).toEqual({ status: "ok", node: "node-a" });
  });

  test("api - every other route answers 401 without the token, or with a wrong one", async () => {
    const routes: [string, string][] = [
      ["GET", "/v1/jobs"],
      ["POST", "/v1/jobs?workflow=coral-dummy"],
      ["GET", "/v1/jobs/x"],
      ["GET", "/v1/jobs/x/results"],
      ["DELETE", "/v1/jobs/x"],
      ["GET", "/v1/cluster"],
      ["GET", "/metrics"],
      ["GET", "/no/such/route"],
    ];
    for (const [method, path] of routes) {
      const none = await guarded.request(path, { method });
      expect(`${method} ${path} ${none.status}`).toBe(`${method} ${path} 401`);
      expect(none.headers.get("www-authenticate")).toContain("Bearer");
      expect((await json(none)).error).toContain("missing bearer token");
      for (const header of [`Bearer ${TOKEN}x`, `Bearer ${TOKEN.slice(1)}`, `Basic ${TOKEN}`, TOKEN]) {
        const wrong = await guarded.request(path, { method, headers: { Authorization: header } });
        expect(`${method} ${path} ${header} ${wrong.status}`).toBe(`${method} ${path} ${header} 401`);
      }
    }
    const ok = await guarded.request("/v1/jobs", { headers: bearer });
    expect(ok.status).toBe(200);
    const lower = await guarded.request("/v1/cluster", { headers: { authorization: `bearer ${TOKEN}` } });
    expect(lower.status).toBe(200);
  });

  test("api - the dashboard page is served without the token and holds no data", async () => {
    const res = await guarded.request("/");
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toContain("text/html");
    const html = await res.text();
    expect(html).toContain("<title>matrixd</title>");
    expect(html).toContain("sessionStorage");
    expect(html).not.toContain("node-a");
    // self-contained: nothing loaded from elsewhere
    expect(html).not.toMatch(/<(script|link|img)[^>]+(src|href)=/i);
  });

  test("api - unknown routes and jobs answer 404 JSON", async () => {
    const res = await open.request("/v2/nothing");
    expect(res.status).toBe(404);
    expect(res.headers.get("content-type")).toContain("application/json");
    expect(await json(res)).toEqual({ error: "no route GET /v2/nothing" });
    for (const [method, path] of [
      ["GET", "/v1/jobs/nope"],
      ["GET", "/v1/jobs/nope/results"],
      ["DELETE", "/v1/jobs/nope"],
    ] as const) {
      const r = await guarded.request(path, { method, headers: bearer });
      expect(r.status).toBe(404);
      expect(await json(r)).toEqual({ error: 'no job "nope"' });
    }
    expect((await open.request("/v1/jobs", { method: "PUT" })).status).toBe(404);
  });

  test("api - /v1/cluster lists members with roles and slots", async () => {
    const res = await open.request("/v1/cluster");
    expect(res.status).toBe(200);
    const body = await json(res);
    expect(body.node).toBe("node-a");
    expect(body.members).toHaveLength(1);
    const m = body.members[0];
    expect(m.node).toBe("node-a");
    expect(m.state).toBe("running");
    expect(m.roles["coral-dummy.teacher"]).toEqual({ slots: 64, busy: 0, queued: 0 });
    expect(m.roles["gated.wait"].slots).toBe(64);
  });

  test("api - /metrics is Prometheus text of the node's counters and the HTTP requests, by route pattern, with the node", async () => {
    const open = createApp(node, { registry, log: silentLogger });
    await open.request("/v1/jobs");
    await open.request("/v1/jobs/abc");
    await open.request("/definitely/not/here");
    await open.request("/neither/this");
    await open.request("/healthz");
    await open.request("/");
    const res = await open.request("/metrics");
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toContain("text/plain; version=0.0.4");
    const text = await res.text();
    expect(text).toContain('matrixd_steps_total{node="node-a"}');
    expect(text).toContain('matrixd_http_requests_total{node="node-a",method="GET",route="/v1/jobs",status="200"} 1');
    // the route pattern, not the raw path, so random URLs cannot grow the series
    expect(text).toContain('matrixd_http_requests_total{node="node-a",method="GET",route="/v1/jobs/:id",status="404"} 1');
    expect(text).toContain('matrixd_http_requests_total{node="node-a",method="GET",route="unmatched",status="404"} 2');
    // routes registered before the middleware after them are named too
    expect(text).toContain('matrixd_http_requests_total{node="node-a",method="GET",route="/healthz",status="200"} 1');
    expect(text).toContain('matrixd_http_requests_total{node="node-a",method="GET",route="/",status="200"} 1');
    expect(text).toMatch(/matrixd_http_request_duration_seconds_bucket\{node="node-a",method="GET",route="\/v1\/jobs",le="\+Inf"\} 1\n/);
    expect(text).toContain("# TYPE matrixd_http_request_duration_seconds histogram");
    expect(text).toMatch(/matrixd_http_requests_in_flight\{node="node-a"\} 1\n/);
    expect(text).not.toMatch(/^[a-z_]+ /m);
    for (const line of text.split("\n")) {
      if (line === "" || line.startsWith("# ")) continue;
      expect(line).toMatch(/^[a-z_]+(\{[^}]*\})? [0-9.e+-]+$/);
    }
  });

  test("api - an error the node throws is a 500 naming it, and is logged", async () => {
    const logged: unknown[] = [];
    const log = { ...silentLogger, error: (obj: unknown) => logged.push(obj) } as unknown as typeof silentLogger;
    const broken = overriding(node, {
      name: "broken",
      jobs: () => Promise.reject(new RangeError("store is gone")),
      members: () => Promise.reject(new Error("kv down")),
    });
    const app = createApp(broken, { registry, log });
    const res = await app.request("/v1/jobs");
    expect(res.status).toBe(500);
    expect(await json(res)).toEqual({ error: "internal error: RangeError: store is gone" });
    expect(logged).toHaveLength(1);
    expect((await app.request("/v1/cluster")).status).toBe(500);
    expect((await app.request("/healthz")).status).toBe(200);
  });

  test("api - NATS that cannot answer is a 503 to try again, not a 500", async () => {
    const timeout = new TimeoutError();
    const broken = overriding(node, { name: "cut-off", jobs: () => Promise.reject(timeout), members: () => Promise.reject(new NatsUnavailableError("the NATS connection dropped")) });
    const app = createApp(broken, { registry });
    const res = await app.request("/v1/jobs");
    expect(res.status).toBe(503);
    expect(res.headers.get("retry-after")).toBe("2");
    expect((await json(res)).error).toBe("the cluster's NATS cannot answer now (TimeoutError: timeout); try again");
    expect((await app.request("/v1/cluster")).status).toBe(503);
  });

  test("api - job list, status and cancel of a running job", async () => {
    const seeds = Array.from({ length: 5 }, (_, i) => ({ id: `g${i}`, n: i }));
    const sub = await open.request("/v1/jobs", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ workflow: "gated", seeds, config: { job: "gated-1" } }),
    });
    expect(sub.status).toBe(201);
    expect(await json(sub)).toEqual({ id: "gated-1", total: 5 });
    expect(sub.headers.get("location")).toBe("/v1/jobs/gated-1");

    const list = await json(await open.request("/v1/jobs"));
    expect(list.jobs.map((j: { id: string }) => j.id)).toContain("gated-1");
    const st = await json(await open.request("/v1/jobs/gated-1"));
    expect(st).toMatchObject({ id: "gated-1", workflow: "gated", state: "running", total: 5, running: 5, queued: 0, ok: 0, acceptedBy: "node-a" });

    const del = await open.request("/v1/jobs/gated-1", { method: "DELETE" });
    expect(del.status).toBe(200);
    expect(await json(del)).toEqual({ id: "gated-1", state: "cancelled" });
    expect((await json(await open.request("/v1/jobs/gated-1"))).state).toBe("cancelled");
    const again = await open.request("/v1/jobs/gated-1", { method: "DELETE" });
    expect(again.status).toBe(409);
    expect((await json(again)).error).toBe('job "gated-1" is already cancelled');
  });

  test("api - a workflow's seeds go through the node: coral-dummy job runs to done", async () => {
    const res = await open.request("/v1/jobs?workflow=coral-dummy", { method: "POST", body: coralSeeds(3).map((s) => JSON.stringify(s)).join("\n") });
    expect(res.status).toBe(201);
    const { id } = await json(res);
    let st = await json(await open.request(`/v1/jobs/${id}`));
    await waitFor(
      "the job to end",
      async () => {
        st = await json(await open.request(`/v1/jobs/${id}`));
        return st.state !== "running";
      },
      10_000,
    );
    expect(st).toMatchObject({ state: "done", total: 3, ok: 3, failed: 0, running: 0, queued: 0 });
    expect(st.metrics.agreement).toBe(1);
  });
});
