import { afterAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import OpenAI from "openai";
import { SIM_KINDS, type SimKind, type SimOptions, startSim, type SimServer } from "../src/sim/index.ts";
import { metricFrom, post, sseData } from "./support/sim-http.ts";
import { waitFor } from "./support/wait.ts";

/**
 * The sim's server kinds over real HTTP: each speaks its server's protocol
 * (metrics, info routes, fields it honours or ignores, errors, limits), and
 * llama.cpp's matches the answers captured from build b4748.
 */

const FIXTURES = join(import.meta.dir, "fixtures", "llama.cpp-b4748");
const fixtureText = (name: string): string => readFileSync(join(FIXTURES, name), "utf8");
const fixture = (name: string): Json => JSON.parse(fixtureText(name)) as Json;

type Json = Record<string, any>;
const servers: SimServer[] = [];
async function sim(kind: SimKind, opts: SimOptions = {}): Promise<SimServer> {
  const s = await startSim({ kind, decodeTps: 200_000, lenMedian: 12, lenSigma: 0, model: "m", ...opts });
  servers.push(s);
  return s;
}
afterAll(async () => {
  await Promise.all(servers.map((s) => s.stop()));
});

const hi = (extra: Json = {}): Json => ({ model: "m", messages: [{ role: "user", content: "tell me about the sea" }], ...extra });
async function chat(s: SimServer, body: Json, headers: Record<string, string> = {}): Promise<{ status: number; body: Json; headers: Headers; text: string }> {
  const res = await post(s.url, body, { headers: { "content-type": "application/json", ...headers } });
  const text = await res.text();
  let parsed: Json = {};
  try {
    parsed = JSON.parse(text) as Json;
  } catch {
    // plain-text rejections (TGI) stay in `text`
  }
  return { status: res.status, body: parsed, headers: res.headers, text };
}
const get = (s: SimServer, path: string) => fetch(`${s.url}${path}`);
const content = (r: { body: Json }): string => r.body.choices[0].message.content;

/** The type skeleton of a JSON value: what must match between a real answer and the sim's. */
function shape(v: unknown): unknown {
  if (Array.isArray(v)) return v.length === 0 ? [] : [shape(v[0])];
  if (v === null) return "null";
  if (typeof v === "object") return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, shape(x)]).sort(([a], [b]) => (a! < b! ? -1 : 1)));
  return typeof v;
}
/** Series names with their HELP and TYPE lines, values dropped. */
const seriesLines = (text: string): string[] =>
  text
    .split("\n")
    .filter((l) => l.length > 0)
    .map((l) => (l.startsWith("#") ? l : l.slice(0, l.lastIndexOf(" "))));

const schema = { type: "object", properties: { ok: { type: "boolean" } }, required: ["ok"] };
const TOOL = {
  type: "function",
  function: { name: "get_weather", description: "Weather in a city", parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] } },
};

describe("sim kinds", () => {
  test("sim kinds - every kind answers chat completions; default is vllm", async () => {
    for (const kind of SIM_KINDS) {
      const s = await sim(kind);
      expect(s.kind).toBe(kind);
      const r = await chat(s, hi());
      expect(r.status).toBe(200);
      expect(typeof content(r)).toBe("string");
      expect(r.body.usage.completion_tokens).toBe(12);
    }
    expect((await startSim({ port: 0 }).then(async (s) => (await s.stop(), s.kind)))).toBe("vllm");
  });

  test("sim kinds - vllm: v0.11 models, metrics, errors, context and structured fields", async () => {
    const s = await sim("vllm", { contextTokens: 64 });
    const models = (await (await get(s, "/v1/models")).json()) as Json;
    expect(models.data[0]).toMatchObject({ id: "m", object: "model", owned_by: "vllm", root: "m", parent: null, max_model_len: 64 });
    expect(((await (await get(s, "/version")).json()) as Json).version).toBe("0.11.1");
    const metrics = await (await get(s, "/metrics")).text();
    for (const name of ["vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc", "sim:slots", "sim:running_seconds_total", "sim:ceiling_tokens_per_second"]) {
      expect(metrics).toContain(`${name}{`);
    }
    expect(await chat(s, { ...hi(), model: "other" })).toMatchObject({
      status: 404,
      body: { error: { message: "The model `other` does not exist.", type: "NotFoundError", param: "model", code: 404 } },
    });
    const long = { messages: [{ role: "user", content: "word ".repeat(70) }] };
    const tooLong = await chat(s, long);
    expect(tooLong.status).toBe(400);
    expect(tooLong.body.error).toMatchObject({ type: "BadRequestError", code: 400 });
    expect(tooLong.body.error.message).toBe("This model's maximum context length is 64 tokens. However, your request has 70 input tokens. Please reduce the length of the input messages.");
    const withMax = await chat(s, { ...hi(), max_tokens: 60 });
    expect(withMax.body.error.message).toBe("'max_tokens' or 'max_completion_tokens' is too large: 60. This model's maximum context length is 64 tokens and your request has 5 input tokens (60 > 64 - 5).");

    const plain = content(await chat(s, hi()));
    for (const field of [
      { response_format: { type: "json_schema", json_schema: { name: "x", schema } } },
      { guided_json: schema },
      { structured_outputs: { json: schema } },
    ]) {
      expect(typeof JSON.parse(content(await chat(s, hi(field)))).ok).toBe("boolean");
    }
    expect(content(await chat(s, hi({ guided_regex: "[A-Z]{3}-\\d{2}" })))).toMatch(/^[A-Z]{3}-\d{2}$/);
    expect(["yes", "no"]).toContain(content(await chat(s, hi({ structured_outputs: { choice: ["yes", "no"] } }))));
    // another server's fields constrain nothing
    expect(content(await chat(s, hi({ json_schema: schema, regex: "\\d+" })))).toBe(plain);
    expect((await chat(s, hi({ response_format: { type: "json" } }))).status).toBe(400);
    const called = await chat(s, hi({ tools: [TOOL], tool_choice: "required" }));
    expect(called.body.choices[0].message.tool_calls[0].id).toMatch(/^chatcmpl-tool-[0-9a-f]{32}$/);
  });

  test("sim kinds - reasoning: thinking apart from the answer, in each kind's field, counted as completion tokens", async () => {
    for (const [kind, fields] of [
      ["vllm", ["reasoning", "reasoning_content"]],
      ["sglang", ["reasoning_content"]],
      ["llamacpp", ["reasoning_content"]],
    ] as const) {
      const s = await sim(kind, { reasoning: true });
      const r = await chat(s, hi());
      const m = r.body.choices[0].message;
      for (const f of fields) expect(m[f].split(" ").length).toBeGreaterThanOrEqual(12);
      expect(m.content.split(" ").length).toBe(12);
      expect(r.body.usage.completion_tokens).toBe(12 + m[fields[0]].split(" ").length);
      // streamed: the thinking first (llama.cpp b4748 streams it inline, in tags), then the answer
      const res = await post(s.url, hi({ stream: true }));
      const deltas = sseData(await res.text()).filter((d) => d !== "[DONE]").map((d) => (JSON.parse(d) as Json).choices[0]?.delta ?? {});
      if (kind === "llamacpp") {
        const all = deltas.map((d) => d.content ?? "").join("");
        expect(all).toBe(`<think>\n${m.reasoning_content}\n</think>\n\n${m.content}`);
      } else {
        const thinking = deltas.map((d) => d[fields[0]] ?? "").join("");
        expect(thinking).toBe(m[fields[0]]);
        const firstContent = deltas.findIndex((d) => d.content);
        const lastThinking = deltas.findLastIndex((d) => d[fields[0]]);
        expect(lastThinking).toBeLessThan(firstContent);
        expect(deltas.map((d) => d.content ?? "").join("")).toBe(m.content);
      }
    }
    // a hosted API keeps its thinking to itself but bills it
    const o = await sim("openai", { reasoning: true });
    const r = await chat(o, hi({ max_completion_tokens: 200 }));
    expect(r.body.choices[0].message.reasoning_content).toBeUndefined();
    expect(r.body.usage.completion_tokens_details.reasoning_tokens).toBe(r.body.usage.completion_tokens - 12);
    expect(r.body.usage.completion_tokens_details.reasoning_tokens).toBeGreaterThanOrEqual(12);
    const refused = await chat(o, hi({ max_tokens: 50 }));
    expect(refused.body.error).toMatchObject({ param: "max_tokens", code: "unsupported_parameter" });
  });

  test("sim kinds - sglang: server info, labelled metrics, its error shape, regex and echoed model", async () => {
    const s = await sim("sglang", { slots: 12, contextTokens: 64 });
    const info = (await (await get(s, "/get_server_info")).json()) as Json;
    expect(info).toMatchObject({ max_running_requests: 12, context_length: 64, served_model_name: "m", model_path: "m", port: s.port });
    expect((await get(s, "/health")).status).toBe(200);
    expect(((await (await get(s, "/v1/models")).json()) as Json).data[0]).toMatchObject({ owned_by: "sglang", max_model_len: 64 });
    await chat(s, hi());
    const metrics = await (await get(s, "/metrics")).text();
    const sched = 'engine_type="unified",model_name="m",pp_rank="0",tp_rank="0"';
    for (const name of ["sglang:num_running_reqs", "sglang:num_queue_reqs", "sglang:token_usage"]) expect(metrics).toContain(`${name}{${sched}} `);
    expect(metricFrom(metrics, "sglang:generation_tokens_total", 'model_name="m"')).toBe(12);
    expect(metricFrom(metrics, "sglang:prompt_tokens_total")).toBe(5);
    expect(metrics).toContain("sim:slots{");
    const tooLong = await chat(s, { messages: [{ role: "user", content: "word ".repeat(70) }] });
    expect(tooLong).toMatchObject({
      status: 400,
      body: { object: "error", message: "The input (70 tokens) is longer than the model's context length (64 tokens).", type: "BadRequestError", param: null, code: 400 },
    });
    expect((await chat(s, hi({ max_tokens: 59 }))).body.message).toStartWith("Requested token count exceeds the model's maximum context length of 64 tokens. You requested a total of 64 tokens: 5 tokens from the input messages and 59 tokens");
    expect(content(await chat(s, hi({ regex: "(red|green|blue) [0-9]{2}" })))).toMatch(/^(red|green|blue) [0-9]{2}$/);
    const plain = content(await chat(s, hi()));
    expect(content(await chat(s, hi({ guided_json: schema })))).toBe(plain);
    const other = await chat(s, { ...hi(), model: "whatever" });
    expect(other.status).toBe(200);
    expect(other.body.model).toBe("whatever");
    expect(other.body.id).toMatch(/^[0-9a-f]{32}$/);
    const called = await chat(s, hi({ tools: [TOOL], tool_choice: "required" }));
    expect(called.body.choices[0].message.tool_calls[0].id).toMatch(/^call_[0-9a-f]{24}$/);
  });

  test("sim kinds - llamacpp: info routes and answers have the shapes of the b4748 captures", async () => {
    const s = await sim("llamacpp", { slots: 2, contextTokens: 2048, simMetrics: false });
    const health = await get(s, "/health");
    expect(await health.json()).toEqual(fixture("health.json"));
    expect(health.headers.get("server")).toBe("llama.cpp");
    expect(health.headers.get("content-type")).toBe("application/json; charset=utf-8");
    const models = (await (await get(s, "/v1/models")).json()) as Json;
    expect(shape(models)).toEqual(shape(fixture("models.json")));
    expect(models.data[0]).toMatchObject({ id: "m", owned_by: "llamacpp" });
    const props = (await (await get(s, "/props")).json()) as Json;
    expect(shape(props)).toEqual(shape(fixture("props.json")));
    expect(props.total_slots).toBe(2);
    expect(props.default_generation_settings.n_ctx).toBe(2048);
    expect(seriesLines(await (await get(s, "/metrics")).text())).toEqual(seriesLines(fixtureText("metrics.txt")));

    const body = { messages: [{ role: "user", content: "hello" }], max_tokens: 5 };
    const r = await chat(s, body);
    expect(shape(r.body)).toEqual(shape(fixture("chat.json")));
    expect(r.body.model).toBe("gpt-3.5-turbo");
    expect(r.body.system_fingerprint).toBe("b4748-c392e5094");
    expect(r.body.id).toMatch(/^chatcmpl-[A-Za-z0-9]{32}$/);
    const streamed = sseData(await (await post(s.url, { ...body, stream: true, stream_options: { include_usage: true } })).text());
    const real = sseData(fixtureText("chat-stream.txt"));
    expect(streamed.at(-1)).toBe("[DONE]");
    const chunks = streamed.slice(0, -1).map((d) => JSON.parse(d) as Json);
    const realChunks = real.slice(0, -1).map((d) => JSON.parse(d) as Json);
    for (const c of chunks.slice(0, -1)) expect(shape(c)).toEqual(shape(realChunks[0]));
    expect(shape(chunks.at(-1))).toEqual(shape(realChunks.at(-1)));
    expect(chunks.slice(0, -1).map((c) => c.choices[0].delta.content).join("")).toBe(content(r));

    // structured output: the top-level json_schema is honoured, OpenAI's shape is not
    const ask = { messages: [{ role: "user", content: "is it ok?" }] };
    const top = await chat(s, { ...ask, json_schema: schema });
    expect(shape(top.body)).toEqual(shape(fixture("json-schema-toplevel.json")));
    expect(typeof JSON.parse(content(top)).ok).toBe("boolean");
    expect(typeof JSON.parse(content(await chat(s, { ...ask, response_format: { type: "json_object", schema } }))).ok).toBe("boolean");
    const openaiShape = await chat(s, { ...ask, response_format: { type: "json_schema", json_schema: { name: "x", schema } } });
    expect(shape(openaiShape.body)).toEqual(shape(fixture("json-schema-openai-shape.json")));
    expect(content(openaiShape)).toBe(content(await chat(s, ask)));
    expect((await chat(s, { ...ask, response_format: { type: "json" } })).body.error.message).toBe('response_format type must be one of "text" or "json_object", but got: json');
  });

  test("sim kinds - llamacpp: its tool errors, grammar failure, empty ids, 501 metrics and error shapes", async () => {
    const s = await sim("llamacpp", { slots: 2 });
    const realError = fixture("tools-backslash-d.json");
    const tools = JSON.parse((realError.error.message as string).split("; tools = ")[1]!) as Json[];
    const ask = { messages: [{ role: "user", content: "call f" }], tools, tool_choice: "required" };
    const noDescription = await chat(s, ask);
    expect(noDescription.status).toBe(500);
    expect(noDescription.body).toEqual(realError);

    const logged: string[] = [];
    const write = process.stderr.write.bind(process.stderr);
    process.stderr.write = ((chunk: string) => (logged.push(String(chunk)), true)) as typeof process.stderr.write;
    let withDescription;
    try {
      const described = tools.map((t) => ({ ...t, function: { ...t.function, description: "f" } }));
      withDescription = await chat(s, { ...ask, tools: described });
    } finally {
      process.stderr.write = write;
    }
    expect(withDescription.status).toBe(200);
    expect(shape(withDescription.body)).toEqual(shape(fixture("tools-backslash-d-with-description.json")));
    expect(withDescription.body.choices[0].message.tool_calls).toBeUndefined();
    expect(logged.join("")).toContain("parse: error parsing grammar: unknown escape at \\d");

    const called = await chat(s, hi({ tools: [TOOL], tool_choice: "required" }));
    expect(called.body.choices[0]).toMatchObject({ finish_reason: "tool_calls", message: { role: "assistant", content: null, tool_calls: [{ id: "", type: "function" }] } });
    expect((await chat(s, hi({ tools: [TOOL], stream: true }))).body.error.message).toBe("Cannot use tools with stream");
    const nojinja = await sim("llamacpp", { jinja: false, metrics: false });
    expect(await chat(nojinja, hi({ tools: [TOOL] }))).toMatchObject({ status: 500, body: { error: { code: 500, message: "tools param requires --jinja flag", type: "server_error" } } });
    const m = await get(nojinja, "/metrics");
    expect(m.status).toBe(501);
    expect(await m.json()).toEqual({ error: { code: 501, message: "This server does not support metrics endpoint. Start it with `--metrics`", type: "not_supported_error" } });
    expect(await (await get(s, "/nowhere")).json()).toEqual({ error: { code: 404, message: "File Not Found", type: "not_found_error" } });
    const badJson = await fetch(`${s.url}/v1/chat/completions`, { method: "POST", body: "{nope" });
    expect(badJson.status).toBe(500);
    expect(((await badJson.json()) as Json).error.type).toBe("server_error");
  });

  test("sim kinds - llamacpp: a prompt over the slot's context is cut when alone, and overflows the KV cache beside busy slots", async () => {
    const s = await sim("llamacpp", { slots: 2, contextTokens: 64, decodeTps: 400, lenMedian: 400 });
    const long = { messages: [{ role: "user", content: "word ".repeat(100) }], max_tokens: 3 };
    const cut = await chat(s, long);
    expect(cut.status).toBe(200);
    // n_keep 0: blocks of 32 go until it fits: 100 - 2 x 32
    expect(cut.body.usage.prompt_tokens).toBe(36);
    const busy = post(s.url, hi()).then((r) => r.text());
    await waitFor("a slot busy", () => s.stats().running === 1);
    const full = await chat(s, long);
    expect(full).toMatchObject({ status: 500, body: { error: { code: 500, message: "Input prompt is too big compared to KV size. Please try increasing KV size.", type: "server_error" } } });
    const streamed = await (await post(s.url, { ...long, stream: true })).text();
    expect(streamed).toStartWith('error: {"code":500,"message":"Input prompt is too big compared to KV size.');
    await s.stop();
    await busy.catch(() => "");
  }, 20_000);

  test("sim kinds - llamacpp: past its HTTP threads nothing answers, /health and /metrics included, until a request ends", async () => {
    const s = await sim("llamacpp", { slots: 8, httpThreads: 2, decodeTps: 100, lenMedian: 5000 });
    const a = new AbortController();
    const b = new AbortController();
    const first = post(s.url, hi(), { signal: a.signal }).catch(() => "aborted");
    const second = post(s.url, hi({ stream: true }), { signal: b.signal }).then((r) => r.body?.getReader().read(), () => "aborted");
    await waitFor("both requests running", () => s.stats().running === 2);
    let answered = false;
    const health = get(s, "/health").then(async (r) => ((answered = true), await r.json()));
    const metrics = get(s, "/metrics").then((r) => r.text());
    // the server counts both probes as waiting for a thread: neither has been answered
    await waitFor("probes waiting for a thread", () => s.stats().httpWaiting === 2);
    expect(answered).toBe(false);
    a.abort();
    expect(await health).toEqual({ status: "ok" });
    b.abort();
    const text = await metrics;
    // waiting for a thread is not being deferred: deferred counts only requests without a slot
    expect(metricFrom(text, "llamacpp:requests_deferred")).toBe(0);
    await Promise.all([first, second]);
  }, 20_000);

  test("sim kinds - llamacpp: requests handled without a free slot are deferred", async () => {
    const s = await sim("llamacpp", { slots: 1, httpThreads: 8, decodeTps: 100, lenMedian: 5000 });
    const c = new AbortController();
    const calls = [0, 1, 2].map(() => post(s.url, hi(), { signal: c.signal }).catch(() => "aborted"));
    await waitFor("two deferred", () => s.stats().waiting === 2);
    const text = await (await get(s, "/metrics")).text();
    expect(metricFrom(text, "llamacpp:requests_processing")).toBe(1);
    expect(metricFrom(text, "llamacpp:requests_deferred")).toBe(2);
    c.abort();
    await Promise.all(calls);
  }, 20_000);

  test("sim kinds - tgi: /info, tgi_* metrics, its grammar field, validation errors and overload", async () => {
    const s = await sim("tgi", { slots: 4, contextTokens: 64, maxConcurrentRequests: 2, decodeTps: 400, lenMedian: 20 });
    const info = (await (await get(s, "/info")).json()) as Json;
    expect(info).toMatchObject({ model_id: "m", max_concurrent_requests: 2, max_input_tokens: 63, max_total_tokens: 64, router: "text-generation-router" });
    expect(typeof info.version).toBe("string");
    expect((await get(s, "/health")).status).toBe(200);
    expect(((await (await get(s, "/v1/models")).json()) as Json).data[0]).toMatchObject({ id: "m", owned_by: "m" });
    const plain = await chat(s, hi({ max_tokens: 20 }));
    expect(plain.body).toMatchObject({ object: "chat.completion", id: "", model: "m" });
    expect(typeof JSON.parse(content(await chat(s, hi({ max_tokens: 20, response_format: { type: "json", value: schema } })))).ok).toBe("boolean");
    expect(typeof JSON.parse(content(await chat(s, hi({ max_tokens: 20, response_format: { type: "json_object", value: schema } })))).ok).toBe("boolean");
    expect(content(await chat(s, hi({ max_tokens: 20, response_format: { type: "regex", value: "\\d{4}" } })))).toMatch(/^\d{4}$/);
    expect(content(await chat(s, hi({ max_tokens: 20, guided_json: schema })))).toBe(content(plain));
    const openaiShape = await chat(s, hi({ response_format: { type: "json_schema", json_schema: { name: "x", schema } } }));
    expect(openaiShape.status).toBe(422);
    expect(openaiShape.text).toStartWith("Failed to deserialize the JSON body into the target type: response_format: missing field `value`");
    expect(await chat(s, hi({ tools: [TOOL], response_format: { type: "json", value: schema } }))).toMatchObject({
      status: 422,
      body: { error: "Tool error: Grammar and tools are mutually exclusive", error_type: "tool_error" },
    });
    expect(await chat(s, hi({ max_tokens: 60 }))).toMatchObject({
      status: 422,
      body: { error: "Input validation error: `inputs` tokens + `max_new_tokens` must be <= 64. Given: 5 `inputs` tokens and 60 `max_new_tokens`", error_type: "validation" },
    });
    const called = await chat(s, hi({ max_tokens: 20, tools: [TOOL], tool_choice: "required" }));
    expect(called.body.choices[0]).toMatchObject({ finish_reason: "stop", message: { role: "assistant", tool_calls: [{ id: "0", type: "function", function: { description: null, name: "get_weather" } }] } });
    const metrics = await (await get(s, "/metrics")).text();
    for (const name of ["tgi_queue_size", "tgi_batch_current_size", "tgi_request_count", "tgi_request_success", "tgi_request_generated_tokens_sum"]) {
      expect(metricFrom(metrics, name)).toBeGreaterThanOrEqual(0);
    }
    expect(metricFrom(metrics, "tgi_request_failure", 'err="validation"')).toBeGreaterThanOrEqual(2);
    expect((await fetch(`${s.url}/v1/chat/completions`, { method: "POST", body: JSON.stringify(hi()) })).status).toBe(415);
    const held = [0, 1].map(() => post(s.url, hi({ max_tokens: 20 })).then((r) => r.text()));
    await waitFor("two in flight", () => s.stats().running + s.stats().waiting === 2);
    expect(await chat(s, hi())).toMatchObject({ status: 429, body: { error: "Model is overloaded", error_type: "overloaded" } });
    await Promise.all(held);
  }, 20_000);

  test("sim kinds - openai: rate-limit headers, 429s past RPM and TPM, API key, unknown fields and its errors", async () => {
    const s = await sim("openai", { rpm: 3, apiKey: "sk-test-key-123456" });
    const auth = { authorization: "Bearer sk-test-key-123456" };
    const remaining: string[] = [];
    for (let i = 0; i < 3; i++) {
      const r = await chat(s, hi(), auth);
      expect(r.status).toBe(200);
      expect(r.headers.get("x-ratelimit-limit-requests")).toBe("3");
      expect(r.headers.get("x-ratelimit-reset-requests")).toMatch(/^(\d+ms|\d+(\.\d+)?s|\d+m\d+(\.\d+)?s)$/);
      remaining.push(r.headers.get("x-ratelimit-remaining-requests") ?? "");
    }
    expect(remaining).toEqual(["2", "1", "0"]);
    const limited = await chat(s, hi(), auth);
    expect(limited.status).toBe(429);
    expect(limited.body.error).toMatchObject({ type: "requests", param: null, code: "rate_limit_exceeded" });
    expect(limited.body.error.message).toMatch(/^Rate limit reached for m in organization \S+ on requests per min \(RPM\): Limit 3, Used 3, Requested 1\. Please try again in (\d+ms|[\d.]+s)\./);
    expect(Number(limited.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);

    const missing = await chat(s, hi());
    expect(missing.status).toBe(401);
    expect(missing.body.error).toMatchObject({ type: "invalid_request_error", code: null });
    expect(missing.body.error.message).toStartWith("You didn't provide an API key.");
    const wrong = await chat(s, hi(), { authorization: "Bearer sk-wrong-key-000000" });
    expect(wrong.body.error).toMatchObject({ type: "invalid_request_error", code: "invalid_api_key" });
    expect(wrong.body.error.message).not.toContain("sk-wrong-key-000000");

    const t = await sim("openai", { tpm: 50, contextTokens: 100 });
    expect((await chat(t, hi({ max_completion_tokens: 30 }))).headers.get("x-ratelimit-remaining-tokens")).toBe("15");
    const tokens = await chat(t, hi({ max_completion_tokens: 30 }));
    expect(tokens.body.error).toMatchObject({ type: "tokens", code: "rate_limit_exceeded" });
    expect(tokens.body.error.message).toContain("on tokens per min (TPM): Limit 50, Used 35, Requested 35.");
    expect(await chat(t, hi({ guided_json: schema }))).toMatchObject({ status: 400, body: { error: { message: "Unrecognized request argument supplied: guided_json", type: "invalid_request_error" } } });
    expect(await chat(t, { ...hi(), model: "gpt-9" })).toMatchObject({ status: 404, body: { error: { code: "model_not_found", type: "invalid_request_error" } } });
    const ctx = await chat(t, { model: "m", messages: [{ role: "user", content: "word ".repeat(120) }] });
    expect(ctx.body.error).toMatchObject({ code: "context_length_exceeded", param: "messages", type: "invalid_request_error" });
    expect(ctx.body.error.message).toBe("This model's maximum context length is 100 tokens. However, your messages resulted in 120 tokens. Please reduce the length of the messages.");
    expect((await chat(t, hi({ response_format: { type: "json_object" } }))).status).toBe(400);
    const json = await chat(t, { model: "m", messages: [{ role: "user", content: "answer in json" }], response_format: { type: "json_object" } });
    expect(typeof JSON.parse(content(json))).toBe("object");
    const called = await chat(await sim("openai"), hi({ tools: [TOOL], tool_choice: "required" }));
    expect(called.body.choices[0].message.tool_calls[0].id).toMatch(/^call_[A-Za-z0-9]{24}$/);
    const bare = await sim("openai", { simMetrics: false });
    expect((await get(bare, "/metrics")).status).toBe(404);
    expect((await get(bare, "/health")).status).toBe(404);
    expect(((await (await get(bare, "/v1/models")).json()) as Json).data[0].owned_by).toBe("system");
  });

  test("sim kinds - the official openai client works against every kind", async () => {
    for (const kind of SIM_KINDS) {
      const s = await sim(kind, { apiKey: kind === "openai" ? "sk-client" : undefined });
      const client = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: "sk-client", maxRetries: 0 });
      expect((await client.models.list()).data.map((m) => m.id)).toEqual(["m"]);
      const messages = [{ role: "user" as const, content: "tell me about the sea" }];
      const done = await client.chat.completions.create({ model: "m", messages, max_completion_tokens: 20 });
      const text = done.choices[0]!.message.content ?? "";
      expect(text.split(" ").length).toBe(12);
      const stream = await client.chat.completions.create({ model: "m", messages, max_completion_tokens: 20, stream: true, stream_options: { include_usage: true } });
      let streamed = "";
      for await (const chunk of stream) streamed += chunk.choices[0]?.delta?.content ?? "";
      expect(streamed).toBe(text);
      const tools = [TOOL as OpenAI.ChatCompletionTool];
      const called = await client.chat.completions.create({ model: "m", messages, tools, tool_choice: "required" });
      expect(called.choices[0]!.message.tool_calls?.[0]?.type).toBe("function");
      const err = await client.chat.completions.create({ model: "m", messages: [] as never }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(OpenAI.APIError);
    }
  }, 20_000);
});
