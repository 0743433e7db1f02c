import { afterEach, describe, expect, test } from "bun:test";
import { ConfigError, LlmError } from "../src/errors.ts";
import { createLlmClient } from "../src/llm/index.ts";
import type { LlmClientImpl, LlmConfigInput } from "../src/llm/index.ts";
import { completion, deadUrl, gate, type Reply, type ScriptedServer, startServer } from "./support/scripted-llm.ts";
import { waitFor } from "./support/wait.ts";

const servers: ScriptedServer[] = [];
const clients: LlmClientImpl[] = [];
const stops: (() => unknown)[] = [];
afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
  await Promise.all(servers.splice(0).map((s) => s.stop()));
  for (const s of stops.splice(0)) await s();
});

function server(reply: Reply, opts?: { models?: string[] }): ScriptedServer {
  const s = startServer(reply, opts);
  servers.push(s);
  return s;
}

function client(config: LlmConfigInput): LlmClientImpl {
  const c = createLlmClient({ backoffMs: 1, maxBackoffMs: 20, ...config });
  clients.push(c);
  return c;
}

const hello = { messages: [{ role: "user" as const, content: "hello" }] };
const ok: Reply = () => completion("ok");

/** A server answering only GET /metrics with vLLM's gauges, as the test sets them. */
function metricsServer(load: { running: number; waiting: number; slots?: number }): { url: string; stop: () => void } {
  const s = Bun.serve({
    port: 0,
    hostname: "127.0.0.1",
    fetch(req) {
      if (new URL(req.url).pathname !== "/metrics") return new Response("not found", { status: 404 });
      const lines = [
        "# TYPE vllm:num_requests_running gauge",
        `vllm:num_requests_running{model_name="m"} ${load.running}`,
        `vllm:num_requests_waiting{model_name="m"} ${load.waiting}`,
      ];
      if (load.slots !== undefined) lines.push(`sim:slots{model_name="m"} ${load.slots}`);
      return new Response(`${lines.join("\n")}\n`);
    },
  });
  const stop = () => void s.stop(true);
  stops.push(stop);
  return { url: `http://127.0.0.1:${s.port}/metrics`, stop };
}

describe("llm dynamic endpoints", () => {
  test("llm client - an endpoint added at run time takes requests, a removed one none", async () => {
    const a = server(ok);
    const b = server(ok, { models: ["m"] });
    const c = client({ endpoints: [{ url: a.url, models: ["m"] }] });
    await c.chat(hello);
    // its models are read from /v1/models since none are given
    c.addEndpoint({ url: b.url }, "cluster");
    for (let i = 0; i < 10; i++) await c.chat({ ...hello, model: "m" });
    expect(b.hits).toBeGreaterThan(0);
    expect(c.endpoints().map((e) => e.url)).toEqual([a.url, b.url]);
    expect(c.removeEndpoint(b.url, "cluster")).toBe(true);
    const before = b.hits;
    for (let i = 0; i < 10; i++) await c.chat(hello);
    expect(b.hits).toBe(before);
    expect(c.endpoints().map((e) => e.url)).toEqual([a.url]);
  });

  test("llm client - setEndpoints replaces one source's endpoints and keeps the others'", async () => {
    const [a, b, d] = [server(ok), server(ok), server(ok)];
    const c = client({ endpoints: [{ url: a.url, models: ["m"] }] });
    c.setEndpoints([{ url: b.url, models: ["m"] }, { url: a.url, models: ["m"] }], "cluster");
    expect(c.endpoints().map((e) => e.url)).toEqual([a.url, b.url]);
    c.setEndpoints([{ url: d.url, models: ["m"] }], "cluster");
    // a is still the config's; b was only the cluster's
    expect(c.endpoints().map((e) => e.url)).toEqual([a.url, d.url]);
    // a bare host:port is the same endpoint as its /v1 URL
    expect(c.removeEndpoint(a.url.replace(/\/v1$/, ""))).toBe(true);
    expect(c.endpoints().map((e) => e.url)).toEqual([d.url]);
    expect(() => c.setEndpoints([{ url: "ftp://x" }], "cluster")).toThrow(ConfigError);
    expect(() => c.setEndpoints([{ url: "ftp://x" }], "cluster")).toThrow(/LLM endpoint #1: "url"/);
  });

  test("llm client - requests queued on a removed endpoint go to another; those in flight finish", async () => {
    const g = gate();
    const a = server(async () => {
      await g.wait;
      return completion("a");
    });
    const b = server(() => completion("b"));
    const c = client({ endpoints: [{ url: a.url, models: ["m"], maxConcurrency: 1 }] });
    const first = c.chat(hello);
    await waitFor("the first request on a", () => a.hits === 1);
    const queued = c.chat(hello);
    c.addEndpoint({ url: b.url, models: ["m"], maxConcurrency: 1 }, "cluster");
    c.removeEndpoint(a.url);
    expect((await queued).endpoint).toBe(b.url);
    g.open();
    expect((await first).endpoint).toBe(a.url);
  });
});

describe("llm health", () => {
  test("llm client - never chooses an endpoint reported down; a request waits for one to come back", async () => {
    const a = server(ok);
    const c = client({ endpoints: [{ url: a.url, models: ["m"] }] });
    expect(c.setHealth(a.url, false)).toBe(true);
    expect(c.endpoints()[0]?.healthy).toBe(false);
    let done = false;
    const p = c.chat(hello).then((r) => {
      done = true;
      return r;
    });
    await waitFor("the request to wait for an endpoint", () => c.waitingForEndpoint() === 1);
    expect(done).toBe(false);
    expect(a.hits).toBe(0);
    c.setHealth(a.url, true);
    expect((await p).text).toBe("ok");
    expect(a.hits).toBe(1);
  });

  test("llm client - gives up waiting after waitOnlineMs, naming the endpoints out", async () => {
    const a = server(ok);
    const c = client({ endpoints: [{ url: a.url, models: ["m"] }], waitOnlineMs: 150 });
    c.setHealth(a.url, false);
    const err = await c.chat({ ...hello, model: "m" }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LlmError);
    expect(String(err)).toContain(`No LLM endpoint for model "m" came back within 150 ms (out: ${a.url})`);
  });

  test("llm client - a broken connection to a watched endpoint spends no retries: the request waits for it", async () => {
    const url = await deadUrl();
    const c = client({ endpoints: [{ url, models: ["m"] }], retries: 0 });
    c.setHealth(url, true);
    let settled = false;
    const p = c.chat(hello).finally(() => {
      settled = true;
    });
    await waitFor("the request to wait for the endpoint to come back", () => c.waitingForEndpoint() === 1);
    expect(settled).toBe(false);
    // the server comes back at another address: the restarted endpoint replaces the dead one
    const b = server(ok);
    c.setEndpoints([{ url: b.url, models: ["m"] }]);
    const r = await p;
    expect(r.endpoint).toBe(b.url);
  });

  test("llm client - an unwatched dead endpoint still fails after its retries", async () => {
    const url = await deadUrl();
    const c = client({ endpoints: [{ url, models: ["m"] }], retries: 1 });
    await expect(c.chat(hello)).rejects.toThrow("connection refused");
  });
});

describe("llm live load", () => {
  test("llm client - a reported server load steers requests to the less loaded endpoint", async () => {
    const a = server(ok);
    const b = server(ok);
    const c = client({ endpoints: [a, b].map((s) => ({ url: s.url, models: ["m"], maxConcurrency: 64 })) });
    // other clients fill a: 60 running, 10 waiting
    expect(c.reportLoad(a.url, { running: 60, waiting: 10 })).toBe(true);
    expect(c.reportLoad("http://127.0.0.1:1/v1", { running: 0, waiting: 0 })).toBe(false);
    await Promise.all(Array.from({ length: 20 }, () => c.chat(hello)));
    expect(a.hits).toBe(0);
    expect(b.hits).toBe(20);
    const info = c.endpoints()[0];
    expect(info?.serverRunning).toBe(60);
    expect(info?.serverWaiting).toBe(10);
  });

  test("llm client - polls /metrics when asked, and reads the server's slots", async () => {
    const a = server(ok);
    const b = server(ok);
    const ma = metricsServer({ running: 8, waiting: 30, slots: 8 });
    const mb = metricsServer({ running: 0, waiting: 0, slots: 8 });
    const c = client({
      endpoints: [
        { url: a.url, models: ["m"], metrics: ma.url },
        { url: b.url, models: ["m"], metrics: mb.url },
      ],
    });
    await waitFor("every endpoint to report 8 server slots", () => c.endpoints().every((e) => e.serverSlots === 8), 3000);
    for (let i = 0; i < 10; i++) await c.chat(hello, { affinity: `t${i}` });
    expect(a.hits).toBe(0);
    expect(b.hits).toBe(10);
  });

  test("llm client - an endpoint whose metrics refuse connections is out until they answer", async () => {
    const a = server(ok);
    const b = server(ok);
    const ma = metricsServer({ running: 0, waiting: 0 });
    const c = client({
      endpoints: [
        { url: a.url, models: ["m"], metrics: ma.url },
        { url: b.url, models: ["m"] },
      ],
    });
    await waitFor("the endpoint to report no running requests", () => c.endpoints()[0]?.serverRunning === 0, 3000);
    ma.stop();
    await waitFor("the endpoint to be marked unhealthy", () => c.endpoints()[0]?.healthy === false, 5000);
    for (let i = 0; i < 10; i++) await c.chat(hello);
    expect(a.hits).toBe(0);
  });
});
