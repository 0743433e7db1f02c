import { afterEach, describe, expect, test } from "bun:test";
import { z } from "zod";
import { ConfigError, LlmError } from "../src/errors.ts";
import { LlmAbortError, chatJson, createLlmClient, parseLlmConfig, parseRetryAfter } from "../src/llm/index.ts";
import type { LlmClient } from "../src/llm/index.ts";
import { completion, deadUrl, gate, type ScriptedServer, startServer } from "./support/scripted-llm.ts";
import { waitFor } from "./support/wait.ts";

const servers: ScriptedServer[] = [];
const clients: LlmClient[] = [];
afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
  await Promise.all(servers.splice(0).map((s) => s.stop()));
});

function server(...args: Parameters<typeof startServer>): ScriptedServer {
  const s = startServer(...args);
  servers.push(s);
  return s;
}

/** A client with quick backoff, over the given base URLs. */
function client(urls: string[], extra: Record<string, unknown> = {}) {
  const c = createLlmClient({ endpoints: urls.map((url) => ({ url, models: ["test-model"] })), backoffMs: 1, maxBackoffMs: 20, ...extra });
  clients.push(c);
  return c;
}

const hello = { messages: [{ role: "user" as const, content: "hello" }] };

describe("llm client", () => {
  test("llm client - answers a chat request with text, usage, endpoint and model", async () => {
    const s = server(() => completion("hi there", { prompt: 7, completion: 2, model: "served-model" }));
    const c = client([s.url]);
    const r = await c.chat(hello);
    expect(r.text).toBe("hi there");
    expect(r.usage).toEqual({ prompt: 7, completion: 2 });
    expect(r.endpoint).toBe(s.url);
    // booked under the endpoint's first model (the request named none); the server's own name is kept beside
    expect(r.model).toBe("test-model");
    expect(r.servedModel).toBe("served-model");
    expect(r.finishReason).toBe("stop");
    expect(r.attempts).toBe(1);
    expect(r.toolCalls).toEqual([]);
  });

  test("llm client - sends an OpenAI body with the bearer key and vLLM's structured-output fields", async () => {
    const s = server(() => completion("{}"));
    const c = client([s.url], { apiKey: "sk-test" });
    const schema = { type: "object", properties: { a: { type: "number" } } };
    await c.chat({ ...hello, max_tokens: 9, temperature: 0, seed: 4, response_format: { type: "json_schema", json_schema: { name: "x", schema } } });
    await c.chat({ ...hello, response_format: { type: "regex", pattern: "yes|no" } });
    const [first, second] = s.bodies;
    expect(first).toMatchObject({ model: "test-model", messages: hello.messages, max_tokens: 9, temperature: 0, seed: 4, stream: false });
    expect(first?.response_format).toEqual({ type: "json_schema", json_schema: { name: "x", schema } });
    // vLLM reads response_format json_schema on every version; guided_json is gone since v0.12
    expect(first?.guided_json).toBeUndefined();
    expect(second?.guided_regex).toBe("yes|no");
    expect(second?.structured_outputs).toEqual({ regex: "yes|no" });
    expect(second?.response_format).toBeUndefined();
    expect(s.headers[0]?.get("authorization")).toBe("Bearer sk-test");
    expect(s.headers[0]?.get("content-type")).toBe("application/json");
  });

  test("llm client - flattens tool calls", async () => {
    const s = server(() =>
      completion("", {
        toolCalls: [
          { id: "call_a", type: "function", function: { name: "search", arguments: '{"q":"x"}' } },
          { id: "call_b", type: "function", function: { name: "calc", arguments: { n: 2 } } },
        ],
      }),
    );
    const r = await client([s.url]).chat(hello);
    expect(r.finishReason).toBe("tool_calls");
    expect(r.toolCalls).toEqual([
      { id: "call_a", name: "search", arguments: '{"q":"x"}' },
      { id: "call_b", name: "calc", arguments: '{"n":2}' },
    ]);
  });

  test("llm client - retries 503 then succeeds", async () => {
    const s = server((n) => (n <= 2 ? new Response("busy", { status: 503 }) : completion("ok")));
    const r = await client([s.url]).chat(hello);
    expect(r.text).toBe("ok");
    expect(r.attempts).toBe(3);
    expect(s.hits).toBe(3);
  });

  test("llm client - gives up after its retries naming endpoint, status and attempts", async () => {
    const s = server(() => new Response("busy", { status: 503 }));
    const c = client([s.url], { retries: 3 });
    const err = await c.chat(hello).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LlmError);
    if (!(err instanceof LlmError)) throw err;
    expect(err.message).toBe(`LLM request failed after 4 attempts: ${s.url} answered 503 Service Unavailable: "busy"`);
    expect(err.status).toBe(503);
    expect(err.endpoint).toBe(s.url);
    expect(s.hits).toBe(4);
    expect(c.endpoints()[0]).toMatchObject({ requests: 4, errors: 4 });
  });

  test("llm client - does not retry a 400 and reports the server's message", async () => {
    const s = server(() => Response.json({ error: { message: "max_tokens is too large" } }, { status: 400 }));
    const err = await client([s.url]).chat(hello).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LlmError);
    if (!(err instanceof LlmError)) throw err;
    expect(err.status).toBe(400);
    expect(err.retryable).toBe(false);
    expect(err.message).toContain("400 Bad Request: max_tokens is too large");
    expect(err.message).toContain(s.url);
    expect(s.hits).toBe(1);
  });

  test("llm client - retries 408 and 429", async () => {
    const s = server((n) => (n === 1 ? new Response("", { status: 408 }) : n === 2 ? new Response("", { status: 429 }) : completion("ok")));
    const r = await client([s.url]).chat(hello);
    expect(r.attempts).toBe(3);
  });

  test("llm client - honours Retry-After on 429", async () => {
    const s = server((n) => (n === 1 ? new Response("slow down", { status: 429, headers: { "retry-after": "1" } }) : completion("ok")));
    const r = await client([s.url]).chat(hello);
    expect(r.attempts).toBe(2);
    expect(s.hits).toBe(2);
    // backoff alone is at most 20 ms here; the second try must wait the second asked for
    const [a = 0, b = 0] = s.arrivals;
    expect(b - a).toBeGreaterThanOrEqual(950);
  });

  test("llm client - reads Retry-After as seconds or an HTTP date", () => {
    const now = Date.parse("2030-01-01T00:00:00Z");
    expect(parseRetryAfter("3", now)).toBe(3000);
    expect(parseRetryAfter("0.5", now)).toBe(500);
    expect(parseRetryAfter("Tue, 01 Jan 2030 00:00:07 GMT", now)).toBe(7000);
    expect(parseRetryAfter("Mon, 31 Dec 2029 00:00:00 GMT", now)).toBe(0);
    expect(parseRetryAfter("soon", now)).toBeUndefined();
    expect(parseRetryAfter(null, now)).toBeUndefined();
  });

  test("llm client - retries a nonsense answer only a couple of times", async () => {
    const s = server(() => new Response("<html>gateway says hi</html>", { status: 200 }));
    const err = await client([s.url], { retries: 6 }).chat(hello).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LlmError);
    if (!(err instanceof LlmError)) throw err;
    expect(s.hits).toBe(3);
    expect(err.message).toContain(`after 3 attempts: ${s.url} answered not JSON: "<html>gateway says hi</html>"`);
  });

  test("llm client - names what is missing from an answer that is JSON but not a completion", async () => {
    const s = server((n) => (n === 1 ? Response.json({ result: "hello" }) : completion("ok")));
    const c = client([s.url], { retries: 0 });
    const err = await c.chat(hello).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LlmError);
    expect(String(err)).toContain("not a chat completion (\"choices\":");
    expect((await c.chat(hello)).text).toBe("ok");
  });

  test("llm client - times out a slow answer and retries", async () => {
    const s = server(async (n) => {
      if (n === 1) await Bun.sleep(3000);
      return completion("ok");
    });
    const c = client([s.url], { timeoutMs: 300 });
    const r = await c.chat(hello);
    expect(r.attempts).toBe(2);
    expect(c.endpoints()[0]?.errors).toBe(1);
  });

  test("llm client - final error after timeouts says so", async () => {
    const s = server(async () => {
      await Bun.sleep(3000);
      return completion("late");
    });
    const err = await client([s.url], { timeoutMs: 100, retries: 1 }).chat(hello).catch((e: unknown) => e);
    expect(String(err)).toContain(`failed after 2 attempts: ${s.url} timed out after 100 ms`);
  });

  test("llm client - connection refused fails over to a live endpoint", async () => {
    const dead = await deadUrl();
    const live = server(() => completion("alive"));
    const c = client([dead, live.url]);
    for (let i = 0; i < 6; i++) {
      const r = await c.chat(hello);
      expect(r.endpoint).toBe(live.url);
    }
    const [d, l] = c.endpoints();
    expect(d?.errors).toBeGreaterThanOrEqual(1);
    expect(d?.errors).toBeLessThanOrEqual(2);
    expect(l?.requests).toBe(6);
  });

  test("llm client - a dead endpoint alone fails with connection refused", async () => {
    const dead = await deadUrl();
    const err = await client([dead], { retries: 2 }).chat(hello).catch((e: unknown) => e);
    expect(String(err)).toContain(`failed after 3 attempts: ${dead} connection refused`);
  });

  test("llm client - abort via signal rejects at once without retry", async () => {
    const g = gate();
    const s = server(async () => {
      await g.wait;
      return completion("late");
    });
    const c = client([s.url]);
    const ctl = new AbortController();
    const p = c.chat(hello, { signal: ctl.signal }).catch((e: unknown) => e);
    await waitFor("the first request", () => s.hits === 1);
    ctl.abort(new Error("task cancelled"));
    const err = await p;
    expect(err).toBeInstanceOf(LlmAbortError);
    expect(err).toBeInstanceOf(LlmError);
    if (!(err instanceof LlmError)) throw err;
    expect(err.name).toBe("AbortError");
    expect(err.retryable).toBe(false);
    g.open();
    // the call has settled with its abort: nothing of it can reach the server again
    expect(s.hits).toBe(1);
    expect(c.endpoints()[0]?.inFlight).toBe(0);
    await expect(c.chat(hello, { signal: AbortSignal.abort() })).rejects.toBeInstanceOf(LlmAbortError);
  });

  test("llm client - abort while queued leaves the queue", async () => {
    const g = gate();
    const s = server(async () => {
      await g.wait;
      return completion("ok");
    });
    const c = createLlmClient({ endpoints: [{ url: s.url, models: ["m"], maxConcurrency: 1 }] });
    clients.push(c);
    const first = c.chat(hello);
    const ctl = new AbortController();
    const second = c.chat(hello, { signal: ctl.signal }).catch((e: unknown) => e);
    await waitFor("the first request", () => s.hits === 1);
    expect(c.endpoints()[0]?.waiting).toBe(1);
    ctl.abort();
    expect(await second).toBeInstanceOf(LlmAbortError);
    expect(c.endpoints()[0]?.waiting).toBe(0);
    g.open();
    expect((await first).text).toBe("ok");
    expect(s.hits).toBe(1);
  });

  test("llm client - close aborts waiting and in-flight requests", async () => {
    const s = server(() => new Promise<Response>(() => {}));
    const c = createLlmClient({ endpoints: [{ url: s.url, models: ["m"], maxConcurrency: 1 }] });
    const inFlight = c.chat(hello).catch((e: unknown) => e);
    const queued = c.chat(hello).catch((e: unknown) => e);
    await waitFor("the first request", () => s.hits === 1);
    await c.close();
    for (const err of [await inFlight, await queued]) {
      expect(err).toBeInstanceOf(LlmError);
      expect(String(err)).toContain("LLM client closed");
    }
    await expect(c.chat(hello)).rejects.toThrow("LLM client closed");
  });

  test("llm client - counts requests, errors and tokens per endpoint", async () => {
    const s = server((n) => (n === 2 ? new Response("", { status: 500 }) : completion("x", { prompt: 10, completion: 4 })));
    const c = client([s.url]);
    await c.chat(hello);
    await c.chat(hello);
    await c.chat(hello);
    expect(c.endpoints()[0]).toMatchObject({ url: s.url, requests: 4, errors: 1, promptTokens: 30, completionTokens: 12, inFlight: 0, healthy: true });
  });
});

describe("llm client structured output", () => {
  const Verdict = z.object({ correct: z.boolean(), score: z.number() });

  test("llm client - chatJson accepts a fenced reply", async () => {
    const s = server(() => completion('Here:\n```json\n{"correct": true, "score": 0.5}\n```'));
    const r = await chatJson(client([s.url]), hello, Verdict);
    expect(r.value).toEqual({ correct: true, score: 0.5 });
    expect(r.tries).toBe(1);
  });

  test("llm client - chatJson retries an invalid reply then succeeds", async () => {
    const s = server((n) => (n === 1 ? completion('{"correct": "yes"}', { prompt: 4, completion: 2 }) : completion('{"correct": false, "score": 1}', { prompt: 6, completion: 2 })));
    const r = await chatJson(client([s.url]), hello, Verdict, { affinity: "t1" });
    expect(r.value).toEqual({ correct: false, score: 1 });
    expect(r.tries).toBe(2);
    expect(r.usage).toEqual({ prompt: 10, completion: 4 });
    // the second try tells the model what was wrong
    const messages = s.bodies[1]?.messages;
    expect(Array.isArray(messages) ? messages.length : 0).toBe(3);
    expect(JSON.stringify(messages)).toContain("correct");
  });

  test("llm client - chatJson gives up naming the validation problem", async () => {
    const s = server(() => completion('{"correct": true}'));
    const err = await chatJson(client([s.url], { structuredRetries: 1 }), hello, Verdict).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LlmError);
    expect(String(err)).toContain("failed its schema after 2 tries: \"score\":");
    expect(s.hits).toBe(2);
  });

  test("llm client - chatJson reports a reply that is not JSON", async () => {
    const s = server(() => completion("I think it is correct."));
    const err = await chatJson(client([s.url]), hello, Verdict, { retries: 0 }).catch((e: unknown) => e);
    expect(String(err)).toContain('not JSON');
    expect(String(err)).toContain('"I think it is correct."');
    expect(s.hits).toBe(1);
  });
});

describe("llm config", () => {
  test("llm config - fills defaults and normalises URLs", () => {
    const c = parseLlmConfig({ endpoints: [{ url: "http://127.0.0.1:8000" }, { url: "http://h:1/v1/" }] });
    expect(c.endpoints.map((e) => e.url)).toEqual(["http://127.0.0.1:8000/v1", "http://h:1/v1"]);
    expect(c).toMatchObject({ timeoutMs: 600_000, retries: 6, backoffMs: 250, maxBackoffMs: 20_000, adaptive: true, structuredRetries: 2 });
    expect(c.endpoints[0]?.maxConcurrency).toBe(1024);
    expect(parseLlmConfig({}).endpoints).toHaveLength(1);
  });

  test("llm config - rejects unknown keys and bad values", () => {
    expect(() => parseLlmConfig({ retry: 3 })).toThrow(ConfigError);
    expect(() => parseLlmConfig({ endpoints: [{ url: "http://a:1", maxConcurency: 3 }] })).toThrow(/endpoints\.0/);
    expect(() => parseLlmConfig({ endpoints: [{ url: "ftp://a" }] })).toThrow(/endpoints\.0\.url/);
    expect(() => parseLlmConfig({ endpoints: [{ url: "http://a:1" }, { url: "http://a:1/" }] })).toThrow(/listed twice/);
  });
});
