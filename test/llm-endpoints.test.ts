import { afterEach, describe, expect, test } from "bun:test";
import { LlmError } from "../src/errors.ts";
import { createLlmClient } from "../src/llm/index.ts";
import type { LlmClient, LlmConfigInput } from "../src/llm/index.ts";
import { completion, gate, type Reply, type ScriptedServer, startServer } from "./support/scripted-llm.ts";
import { waitFor } from "./support/wait.ts";

const servers: ScriptedServer[] = [];
const clients: LlmClient[] = [];
afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
  await Promise.all(servers.splice(0).map((s) => s.stop()));
});

function server(reply: Reply, opts?: { models?: string[] }): ScriptedServer {
  const s = startServer(reply, opts);
  servers.push(s);
  return s;
}

function client(config: LlmConfigInput) {
  const c = createLlmClient({ backoffMs: 1, maxBackoffMs: 20, ...config });
  clients.push(c);
  return c;
}

const hello = { messages: [{ role: "user" as const, content: "hello" }] };
const slow = (ms: number): Reply => async () => {
  await Bun.sleep(ms);
  return completion("ok");
};

describe("llm endpoints", () => {
  test("llm client - spreads concurrent requests to the least loaded endpoints", async () => {
    const ss = [server(slow(100)), server(slow(100)), server(slow(100))];
    const c = client({ endpoints: ss.map((s) => ({ url: s.url, models: ["m"] })) });
    await Promise.all(Array.from({ length: 30 }, () => c.chat(hello)));
    expect(ss.map((s) => s.hits)).toEqual([10, 10, 10]);
  });

  test("llm client - sends new requests away from an endpoint still busy", async () => {
    const g = gate();
    const busy = server(async () => {
      await g.wait;
      return completion("late");
    });
    const fast = [server(slow(1)), server(slow(1))];
    const c = client({ endpoints: [busy, ...fast].map((s) => ({ url: s.url, models: ["m"] })) });
    const held = Promise.allSettled(Array.from({ length: 3 }, () => c.chat(hello)));
    await waitFor("the request on the busy server", () => busy.hits === 1);
    for (let i = 0; i < 20; i++) await c.chat(hello);
    g.open();
    await held;
    expect(busy.hits).toBe(1);
    expect(fast.map((s) => s.hits).reduce((a, b) => a + b)).toBe(22);
    expect(Math.min(...fast.map((s) => s.hits))).toBeGreaterThanOrEqual(5);
  });

  test("llm client - weighs load by each endpoint's limit", async () => {
    const big = server(slow(100));
    const small = server(slow(100));
    const c = client({
      endpoints: [
        { url: big.url, models: ["m"], maxConcurrency: 30 },
        { url: small.url, models: ["m"], maxConcurrency: 10 },
      ],
    });
    await Promise.all(Array.from({ length: 40 }, () => c.chat(hello)));
    expect([big.hits, small.hits]).toEqual([30, 10]);
    expect(Math.max(big.maxActive, small.maxActive)).toBeLessThanOrEqual(30);
  });

  test("llm client - never exceeds an endpoint's concurrency limit", async () => {
    const s = server(slow(20));
    const c = client({ endpoints: [{ url: s.url, models: ["m"], maxConcurrency: 3 }] });
    const all = Promise.all(Array.from({ length: 24 }, () => c.chat(hello)));
    await waitFor("the first request", () => s.hits >= 1);
    expect(c.endpoints()[0]).toMatchObject({ inFlight: 3, waiting: 21, limit: 3 });
    await all;
    expect(s.maxActive).toBe(3);
    expect(s.hits).toBe(24);
  });

  test("llm client - routes by model, read from /v1/models when not configured", async () => {
    const a = server(() => completion("from a"), { models: ["alpha"] });
    const b = server(() => completion("from b"), { models: ["beta", "beta-2"] });
    const any = server(() => completion("from any"));
    const c = client({ endpoints: [{ url: a.url }, { url: b.url }] });
    expect((await c.chat({ ...hello, model: "beta" })).text).toBe("from b");
    expect((await c.chat({ ...hello, model: "alpha" })).text).toBe("from a");
    expect(b.bodies[0]?.model).toBe("beta");
    expect(c.endpoints().map((e) => e.models)).toEqual([["alpha"], ["beta", "beta-2"]]);
    await expect(c.chat({ ...hello, model: "gamma" })).rejects.toThrow('No LLM endpoint serves model "gamma" (served: alpha, beta, beta-2)');
    // a server whose model list cannot be read is sent any model
    const c2 = client({ endpoints: [{ url: any.url }] });
    expect((await c2.chat({ ...hello, model: "gamma" })).text).toBe("from any");
    expect(any.bodies[0]?.model).toBe("gamma");
  });

  test("llm client - a request naming no model gets the endpoint's first model", async () => {
    const a = server(() => completion("ok"), { models: ["served"] });
    await client({ endpoints: [{ url: a.url }] }).chat(hello);
    expect(a.bodies[0]?.model).toBe("served");
  });
});

describe("llm affinity", () => {
  test("llm client - keeps a task on one endpoint and spreads tasks by hash", async () => {
    const ss = [server(slow(1)), server(slow(1)), server(slow(1))];
    const c = client({ endpoints: ss.map((s) => ({ url: s.url, models: ["m"] })) });
    const first = await c.chat(hello, { affinity: "task-1" });
    for (let i = 0; i < 8; i++) expect((await c.chat(hello, { affinity: "task-1" })).endpoint).toBe(first.endpoint);
    const used = new Set<string>();
    for (let i = 0; i < 30; i++) used.add((await c.chat(hello, { affinity: `task-${i}` })).endpoint);
    expect(used.size).toBe(3);
  });

  test("llm client - leaves the sticky endpoint when it is overloaded", async () => {
    const g = gate();
    const held: Reply = async () => {
      await g.wait;
      return completion("ok");
    };
    const a = server(held);
    const b = server(held);
    const c = client({ endpoints: [a, b].map((s) => ({ url: s.url, models: ["m"], maxConcurrency: 2 })) });
    // the first call with the key goes where the key hashes to, and stays while it has room
    const p1 = c.chat(hello, { affinity: "k" });
    const p2 = c.chat(hello, { affinity: "k" });
    await waitFor("two requests", () => a.hits + b.hits === 2);
    const home = a.hits === 2 ? a : b;
    const other = home === a ? b : a;
    expect(home.hits).toBe(2);
    // home is full (2/2) and the other idle: the key moves, and stays moved
    const p3 = c.chat(hello, { affinity: "k" });
    await waitFor("a request on the other server", () => other.hits === 1);
    expect(c.endpoints().find((e) => e.url === home.url)?.waiting).toBe(0);
    g.open();
    const r3 = await p3;
    expect(r3.endpoint).toBe(other.url);
    await Promise.all([p1, p2]);
    expect((await c.chat(hello, { affinity: "k" })).endpoint).toBe(other.url);
  });

  test("llm client - stays on the sticky endpoint while its load is within the overload factor", async () => {
    const g = gate();
    const held: Reply = async () => {
      await g.wait;
      return completion("ok");
    };
    const a = server(held);
    const b = server(held);
    const c = client({ endpoints: [a, b].map((s) => ({ url: s.url, models: ["m"], maxConcurrency: 2 })), stickyOverload: 3 });
    const ps = [c.chat(hello), c.chat(hello)];
    // one request on each: both at load 1/2
    await waitFor("a request on each server", () => a.hits === 1 && b.hits === 1);
    ps.push(c.chat(hello, { affinity: "k" }));
    await waitFor("three requests", () => a.hits + b.hits === 3);
    // home is now full, the other at 1/2: 2/2 <= 3 x 1/2, so the next one queues at home
    ps.push(c.chat(hello, { affinity: "k" }));
    await waitFor("the fourth request to queue in the client", () => c.endpoints().some((e) => e.waiting === 1));
    expect(a.hits + b.hits).toBe(3);
    g.open();
    const results = await Promise.all(ps);
    expect(results[2]?.endpoint).toBe(results[3]?.endpoint ?? "");
  });

  test("llm client - a task moves off its endpoint when that endpoint goes down", async () => {
    const a = server(() => completion("a"));
    const b = server(() => completion("b"));
    const c = client({ endpoints: [a, b].map((s) => ({ url: s.url, models: ["m"] })) });
    const home = (await c.chat(hello, { affinity: "k" })).endpoint === a.url ? a : b;
    const other = home === a ? b : a;
    await home.stop();
    const r = await c.chat(hello, { affinity: "k" });
    expect(r.endpoint).toBe(other.url);
    expect(r.attempts).toBe(2);
    const again = await c.chat(hello, { affinity: "k" });
    expect(again.endpoint).toBe(other.url);
    expect(again.attempts).toBe(1);
  });
});

describe("llm health and adaptive limits", () => {
  test("llm client - marks a failing endpoint down, then probes it again", async () => {
    let broken = true;
    const s = server(() => (broken ? new Response("", { status: 502 }) : completion("back")));
    const c = client({ endpoints: [{ url: s.url, models: ["m"] }], retries: 2, maxBackoffMs: 150 });
    await expect(c.chat(hello)).rejects.toThrow("502");
    expect(c.endpoints()[0]?.healthy).toBe(false);
    broken = false;
    // every endpoint is down: the request waits for the cool-down instead of failing
    const r = await c.chat(hello);
    expect(r.text).toBe("back");
    expect(r.attempts).toBe(1);
    expect(c.endpoints()[0]?.healthy).toBe(true);
  });

  test("llm client - sends requests queued on an endpoint that goes down elsewhere", async () => {
    const a = server(async () => {
      await Bun.sleep(30);
      return new Response("", { status: 500 });
    });
    const b = server(slow(5));
    // a long cool-down, so the endpoint is still down when checked
    const c = client({ endpoints: [a, b].map((s) => ({ url: s.url, models: ["m"], maxConcurrency: 3 })), maxBackoffMs: 5000 });
    const results = await Promise.all(Array.from({ length: 20 }, () => c.chat(hello)));
    expect(results.every((r) => r.endpoint === b.url)).toBe(true);
    expect(c.endpoints()[0]?.healthy).toBe(false);
    // a got its first wave only; what queued behind it went elsewhere
    expect(a.hits).toBe(3);
  });

  test("llm client - cuts concurrency once per burst of 429s and grows it back", async () => {
    let overloaded = true;
    const s = server(async () => {
      await Bun.sleep(10);
      return overloaded ? new Response("", { status: 429 }) : completion("ok");
    });
    const c = client({ endpoints: [{ url: s.url, models: ["m"], maxConcurrency: 10 }], retries: 0 });
    const burst = await Promise.allSettled(Array.from({ length: 10 }, () => c.chat(hello)));
    expect(burst.every((r) => r.status === "rejected")).toBe(true);
    expect(s.hits).toBe(10);
    // ten 429s from requests sent together are one congestion event: one cut
    expect(c.endpoints()[0]?.limit).toBe(7);
    overloaded = false;
    // one more slot per window of `limit` successes
    for (let i = 0; i < 7; i++) await c.chat(hello);
    expect(c.endpoints()[0]?.limit).toBe(8);
    for (let i = 0; i < 8 + 9; i++) await c.chat(hello);
    expect(c.endpoints()[0]?.limit).toBe(10);
    for (let i = 0; i < 20; i++) await c.chat(hello);
    expect(c.endpoints()[0]?.limit).toBe(10);
  });

  test("llm client - keeps its limit on 429s when not adaptive", async () => {
    const s = server((n) => (n <= 3 ? new Response("", { status: 429 }) : completion("ok")));
    const c = client({ endpoints: [{ url: s.url, models: ["m"], maxConcurrency: 10 }], adaptive: false });
    await c.chat(hello);
    expect(c.endpoints()[0]?.limit).toBe(10);
  });

  test("llm client - cuts concurrency on a timeout", async () => {
    const s = server(async (n) => {
      if (n === 1) await Bun.sleep(2000);
      return completion("ok");
    });
    const c = client({ endpoints: [{ url: s.url, models: ["m"], maxConcurrency: 10 }], timeoutMs: 100 });
    await c.chat(hello);
    expect(c.endpoints()[0]?.limit).toBe(7);
  });
});

describe("llm rate limits", () => {
  test("llm client - keeps to requests per minute", async () => {
    const s = server(() => completion("ok"));
    // 600 rpm: a burst of 10, then one request every 100 ms
    const c = client({ endpoints: [{ url: s.url, models: ["m"], rpm: 600 }] });
    await Promise.all(Array.from({ length: 15 }, () => c.chat(hello)));
    const t0 = s.arrivals[0] ?? 0;
    expect((s.arrivals[14] ?? 0) - t0).toBeGreaterThanOrEqual(450);
    expect(s.arrivals.filter((t) => t - t0 < 200).length).toBeLessThanOrEqual(12);
  });

  test("llm client - keeps to tokens per minute, settling estimates with usage", async () => {
    // 60k tpm: 1000 tokens a second, a burst of 1000
    const s = server((n) => completion("ok", { prompt: 10, completion: n === 1 ? 2000 : 2 }));
    const c = client({ endpoints: [{ url: s.url, models: ["m"], tpm: 60_000 }] });
    // estimated at a dozen tokens, the first answer reports 2010: the debt delays the next by ~1 s
    await c.chat({ ...hello, max_tokens: 10 });
    await c.chat({ ...hello, max_tokens: 10 });
    const [a = 0, b = 0] = s.arrivals;
    expect(b - a).toBeGreaterThanOrEqual(800);
  });

  test("llm client - a request larger than the burst waits for its tokens", async () => {
    const s = server(() => completion("ok", { prompt: 1, completion: 1 }));
    const c = client({ endpoints: [{ url: s.url, models: ["m"], tpm: 60_000 }] });
    await Promise.all([c.chat({ ...hello, max_tokens: 900 }), c.chat({ ...hello, max_tokens: 900 })]);
    const [a = 0, b = 0] = s.arrivals;
    expect(b - a).toBeGreaterThanOrEqual(700);
    expect(c.endpoints()[0]?.requests).toBe(2);
  });

  test("llm client - an error while rate limited is still an LlmError", async () => {
    const s = server(() => new Response("", { status: 401 }));
    const c = client({ endpoints: [{ url: s.url, models: ["m"], rpm: 60 }] });
    await expect(c.chat(hello)).rejects.toBeInstanceOf(LlmError);
  });
});
