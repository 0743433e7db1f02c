/**
 * The LLM client against servers that speak like llama.cpp b4748 (its real
 * answers, from test/fixtures/llama.cpp-b4748), vLLM and a hosted API:
 * the dialect it finds, the fields it sends, the limit it keeps, the errors
 * it does not retry.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { LlmError } from "../src/errors.ts";
import { createLlmClient } from "../src/llm/index.ts";
import { TOOL_SPECS } from "../plugins/tool-use/tools.ts";
import { completion, gate, type ScriptedServer, startServer } from "./support/scripted-llm.ts";
import { waitFor } from "./support/wait.ts";

const FIXTURES = join(import.meta.dir, "fixtures", "llama.cpp-b4748");
const fixture = (name: string) => readFileSync(join(FIXTURES, name), "utf8");
const json = (name: string) => () => new Response(fixture(name), { headers: { "content-type": "application/json" } });
const text = (body: string) => () => new Response(body, { headers: { "content-type": "text/plain; version=0.0.4" } });

/** Routes of a llama.cpp b4748 server, answered with its own captured bodies. */
const LLAMACPP_ROUTES = {
  "/v1/models": json("models.json"),
  "/props": json("props.json"),
  "/health": json("health.json"),
  "/metrics": text(fixture("metrics.txt")),
};

const servers: ScriptedServer[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) await s.stop();
});
function serve(...args: Parameters<typeof startServer>): ScriptedServer {
  const s = startServer(...args);
  servers.push(s);
  return s;
}

const hello = { messages: [{ role: "user" as const, content: "hi" }] };
const schema = { type: "object", properties: { ok: { type: "boolean" } }, required: ["ok"] };

describe("llm kinds", () => {
  test("llm kinds - a llama.cpp server is found out from its own answers and sent its own structured-output field", async () => {
    const s = serve(() => new Response(fixture("json-schema-toplevel.json")), { routes: LLAMACPP_ROUTES });
    const c = createLlmClient({ endpoints: [{ url: s.url }] });
    const r = await c.chat({ ...hello, model: "tiny.gguf", response_format: { type: "json_schema", json_schema: { name: "x", schema } } });
    const info = c.endpoints()[0];
    expect(info?.kind).toBe("llamacpp");
    // /props: total_slots 2, n_ctx 2048 per slot; one request may queue past the slots on llama.cpp
    expect(info?.serverSlots).toBe(2);
    expect(info?.contextTokens).toBe(2048);
    expect(info?.limit).toBe(3);
    const body = s.bodies[0] ?? {};
    expect(body.json_schema).toEqual(schema);
    expect(body.guided_json).toBeUndefined();
    expect(JSON.parse(r.text)).toEqual({ ok: false });
    // the server says gpt-3.5-turbo whatever it serves: usage is booked under the name asked for
    expect(r.model).toBe("tiny.gguf");
    expect(r.servedModel).toBe("gpt-3.5-turbo");
    await c.close();
  });

  test("llm kinds - tools go to llama.cpp with patterns its grammar takes and a description, and calls without ids get unique ones", async () => {
    const call = { id: "", type: "function", function: { name: "get_account", arguments: '{"account_id":"A1042"}' } };
    const s = serve(() => completion("", { toolCalls: [call, call] }), { routes: LLAMACPP_ROUTES });
    const c = createLlmClient({ endpoints: [{ url: s.url, kind: "llamacpp" }] });
    const bare = { type: "function" as const, function: { name: "f", parameters: { type: "object", properties: { p: { type: "string", pattern: "^\\d{3}$" } } } } };
    const r = await c.chat({ ...hello, tools: [...TOOL_SPECS, bare] });
    const sent = JSON.stringify(s.bodies[0]?.tools);
    expect(sent).not.toContain("\\\\d");
    expect(sent).toContain("[0-9]");
    const tools = s.bodies[0]?.tools as { function: { name: string; description?: string } }[];
    expect(tools.find((t) => t.function.name === "f")?.function.description).toBe("f");
    const ids = r.toolCalls.map((t) => t.id);
    expect(ids.every((id) => id.length > 5)).toBe(true);
    expect(new Set(ids).size).toBe(2);
    await c.close();
  });

  test("llm kinds - never more in flight at a llama.cpp server than its slots and one queued, whatever the callers' concurrency", async () => {
    const open = gate();
    const s = serve(
      async () => {
        await open.wait;
        return completion("ok");
      },
      { routes: LLAMACPP_ROUTES },
    );
    const c = createLlmClient({ endpoints: [{ url: s.url, maxConcurrency: 1024 }] });
    const calls = Array.from({ length: 40 }, () => c.chat(hello));
    await waitFor("three requests in flight", () => s.active === 3);
    // every call is accounted for: three at the server, the rest queued in the client
    await waitFor("the other 37 to queue in the client", () => c.endpoints()[0]?.waiting === 37);
    expect(s.active).toBe(3);
    open.open();
    await Promise.all(calls);
    expect(s.maxActive).toBe(3);
    expect(s.hits).toBe(40);
    await c.close();
  });

  test("llm kinds - a configuration error is not retried, keeps the server's words, and three of them before any answer are fatal", async () => {
    const s = serve(
      () => Response.json({ error: { code: 500, message: "tools param requires --jinja flag", type: "server_error" } }, { status: 500 }),
      { routes: LLAMACPP_ROUTES },
    );
    const c = createLlmClient({ endpoints: [{ url: s.url }], retries: 6, backoffMs: 1 });
    let fatal: LlmError | undefined;
    c.onFatal((err) => {
      fatal = err;
    });
    const err = await c.chat({ ...hello, tools: [...TOOL_SPECS] }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LlmError);
    expect((err as LlmError).message).toContain("tools param requires --jinja flag");
    expect((err as LlmError).problem).toBe("config");
    expect(s.hits).toBe(1);
    expect(fatal).toBeUndefined();
    await Promise.allSettled([c.chat(hello), c.chat(hello)]);
    expect(s.hits).toBe(3);
    expect(fatal?.message).toContain("tools param requires --jinja flag");
    await c.close();
  });

  test("llm kinds - a prompt that cannot fit the server's context fails before it is sent", async () => {
    const s = serve(() => completion("ok"), { routes: LLAMACPP_ROUTES });
    const c = createLlmClient({ endpoints: [{ url: s.url }] });
    await c.chat(hello);
    const long = { messages: [{ role: "user" as const, content: "word ".repeat(4000) }] };
    const err = await c.chat(long).catch((e: unknown) => e);
    expect((err as LlmError).problem).toBe("context");
    expect((err as LlmError).message).toContain("2048-token context");
    expect(s.hits).toBe(1);
    await c.close();
  });

  test("llm kinds - a reasoning model's thinking is kept apart from the answer, with its tokens", async () => {
    const s = serve(() =>
      Response.json({
        model: "m",
        choices: [{ message: { role: "assistant", content: "42", reasoning_content: "six times seven" }, finish_reason: "stop" }],
        usage: { prompt_tokens: 3, completion_tokens: 9, completion_tokens_details: { reasoning_tokens: 7 } },
      }),
    );
    const c = createLlmClient({ endpoints: [{ url: s.url, kind: "vllm", models: ["m"] }] });
    const r = await c.chat(hello);
    expect(r.text).toBe("42");
    expect(r.reasoning).toBe("six times seven");
    expect(r.usage).toEqual({ prompt: 3, completion: 9, reasoning: 7 });
    await c.close();
  });

  test("llm kinds - a vLLM that does not say its slots is paced on what it runs while it queues", async () => {
    let running = 0;
    let waiting = 0;
    const metrics = () =>
      new Response(`# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running{model_name="m"} ${running}\n# TYPE vllm:num_requests_waiting gauge\nvllm:num_requests_waiting{model_name="m"} ${waiting}\n`);
    const open = gate();
    const s = serve(
      async () => {
        await open.wait;
        return completion("ok");
      },
      { models: ["m"], routes: { "/metrics": metrics } },
    );
    const c = createLlmClient({ endpoints: [{ url: s.url, kind: "vllm", maxConcurrency: 100 }] });
    const calls = Array.from({ length: 100 }, () => c.chat({ ...hello, model: "m" }));
    await waitFor("a hundred requests in flight", () => s.active === 100);
    // it runs 16 and queues the rest: 16 plus a quarter
    running = 16;
    waiting = 84;
    // a poll that started before the figures moved may answer first
    for (let i = 0; i < 5 && c.endpoints()[0]?.limit !== 20; i++) await c.refreshLoad();
    expect(c.endpoints()[0]?.limit).toBe(20);
    expect(c.endpoints()[0]?.serverSlots).toBe(16);
    open.open();
    await Promise.all(calls);
    await c.close();
  });

  test("llm kinds - a hosted API's spent rate limit holds the next request until its reset", async () => {
    const s = serve(() => {
      const res = completion("ok");
      res.headers.set("x-ratelimit-limit-requests", "100");
      res.headers.set("x-ratelimit-remaining-requests", "0");
      res.headers.set("x-ratelimit-reset-requests", "1s");
      return res;
    });
    const c = createLlmClient({ endpoints: [{ url: s.url, kind: "openai", models: ["m"] }] });
    await c.chat({ ...hello, model: "m" });
    await c.chat({ ...hello, model: "m" });
    const [a, b] = s.arrivals;
    expect((b ?? 0) - (a ?? 0)).toBeGreaterThanOrEqual(900);
    // hosted APIs take the completion cap under its new name
    await c.chat({ ...hello, model: "m", max_tokens: 7 });
    expect(s.bodies[2]?.max_completion_tokens).toBe(7);
    expect(s.bodies[2]?.max_tokens).toBeUndefined();
    await c.close();
  });

  test("llm kinds - an endpoint's API key comes from the environment variable its config names", async () => {
    process.env.MATRIXD_TEST_KEY = "sk-from-env";
    const s = serve(() => completion("ok"), { models: ["m"] });
    const c = createLlmClient({ endpoints: [{ url: s.url, kind: "openai", apiKeyEnv: "MATRIXD_TEST_KEY" }] });
    await c.chat(hello);
    expect(s.headers[0]?.get("authorization")).toBe("Bearer sk-from-env");
    await c.close();
    delete process.env.MATRIXD_TEST_KEY;
  });

  test("llm kinds - the llm section's apiKeyEnv is the key of endpoints that name none", async () => {
    process.env.MATRIXD_TEST_KEY = "sk-section";
    const s = serve(() => completion("ok"), { models: ["m"] });
    const c = createLlmClient({ apiKeyEnv: "MATRIXD_TEST_KEY", endpoints: [{ url: s.url, kind: "openai" }] });
    await c.chat(hello);
    expect(s.headers[0]?.get("authorization")).toBe("Bearer sk-section");
    await c.close();
    delete process.env.MATRIXD_TEST_KEY;
  });
});
