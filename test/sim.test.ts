import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import OpenAI from "openai";
import { startSim, startSimFleet, type SimServer } from "../src/sim/index.ts";
import { UNKNOWN_TOOL_NAME } from "../src/sim/skills/tools.ts";
import { type Completion, complete, metric, post, sseData, waitFor, wordCount } from "./sim-helpers.ts";

const servers: SimServer[] = [];
async function sim(opts: Parameters<typeof startSim>[0] = {}): Promise<SimServer> {
  const s = await startSim(opts);
  servers.push(s);
  return s;
}
afterAll(async () => {
  await Promise.all(servers.map((s) => s.stop()));
});

/** A fast server shared by the content tests: answers take milliseconds. */
let fast: SimServer;
beforeAll(async () => {
  fast = await sim({ slots: 64, decodeTps: 400_000, lenMedian: 20 });
});

const QUESTION = "Question: What is (16 + 5) * 8?\nOptions:\n(A) 166\n(B) 169\n(C) 168\n(D) 198";
const TEACHER = "You are a teacher. End your message with `Answer: (X)`, or `Answer: not sure`.";
const EXTRACT = "Extract the final answer from the message below. Reply with the option letter only.";

const lastLine = (s: string): string => s.slice(s.lastIndexOf("\n") + 1);

const BOOK_TOOL = {
  type: "function" as const,
  function: {
    name: "book_flight",
    parameters: {
      type: "object",
      properties: {
        city: { type: "string" },
        seats: { type: "integer", minimum: 1, maximum: 9 },
        cabin: { enum: ["economy", "business"] },
        flexible: { type: "boolean" },
      },
      required: ["city", "seats"],
    },
  },
};
const WEATHER_TOOL = {
  type: "function" as const,
  function: { name: "get_weather", parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] } },
};

describe("sim-llm", () => {
  test("sim - ceiling is honest", async () => {
    // 8 slots, step 20 + 1 × 8 = 28 virtual ms, time-scaled to a ceiling of 8,000 tok/s
    const s = await sim({ slots: 8, stepBaseMs: 20, stepPerSeqMs: 1, decodeTps: 8000, lenMedian: 200, lenSigma: 0 });
    expect(s.ceilingTps).toBeCloseTo(8000, 6);
    const before = await metric(s.url, "sim:running_seconds_total");
    const t0 = performance.now();
    const answers = await Promise.all(
      Array.from({ length: 16 }, (_, i) => complete(s.url, { messages: [{ role: "user", content: `long ${i}` }] })),
    );
    const elapsed = (performance.now() - t0) / 1000;
    const tokens = answers.reduce((n, a) => n + a.usage.completion_tokens, 0);
    expect(tokens).toBe(16 * 200);
    expect(await metric(s.url, "vllm:generation_tokens_total")).toBe(tokens);
    // never faster than the ceiling...
    expect(tokens / elapsed).toBeLessThanOrEqual(s.ceilingTps * 1.05);
    // ...and, with every slot kept busy, the server itself reports it was busy most of that time
    const busy = (await metric(s.url, "sim:running_seconds_total")) - before;
    expect(busy / elapsed).toBeGreaterThan(0.6);
    expect(busy / elapsed).toBeLessThanOrEqual(1.0);
  });

  test("sim - same request gives the same answer; word count is completion_tokens", async () => {
    const body = { messages: [{ role: "user", content: "Tell me something." }], seed: 7 };
    const a = await complete(fast.url, body);
    const b = await complete(fast.url, body);
    const text = a.choices[0]!.message.content ?? "";
    expect(b.choices[0]!.message.content).toBe(text);
    expect(wordCount(text)).toBe(a.usage.completion_tokens);
    expect(a.usage.prompt_tokens).toBe(3);
    const c = await complete(fast.url, { ...body, seed: 8 });
    expect(c.choices[0]!.message.content).not.toBe(text);
  });

  test("sim - max_tokens caps the length", async () => {
    const res = await Promise.all(
      Array.from({ length: 30 }, (_, i) =>
        complete(fast.url, { messages: [{ role: "user", content: "x" }], seed: i, max_tokens: 15 }),
      ),
    );
    for (const r of res) {
      expect(r.usage.completion_tokens).toBeLessThanOrEqual(15);
      expect(wordCount(r.choices[0]!.message.content ?? "")).toBe(r.usage.completion_tokens);
    }
    expect(res.some((r) => r.choices[0]!.finish_reason === "length")).toBe(true);
    expect(res.some((r) => r.choices[0]!.finish_reason === "stop")).toBe(true);
  });

  test("sim - coral dialogue answers agree, disagree and are unsure", async () => {
    const peerTurn = "I think it is this one.\nAnswer: (B)";
    const withPeer = await Promise.all(
      Array.from({ length: 300 }, (_, seed) =>
        complete(fast.url, {
          messages: [
            { role: "system", content: TEACHER },
            { role: "user", content: QUESTION },
            { role: "assistant", content: "Let me see.\nAnswer: (A)" },
            { role: "user", content: peerTurn },
          ],
          seed,
          max_tokens: 40,
        }),
      ),
    );
    const finals = withPeer.map((r) => lastLine(r.choices[0]!.message.content ?? ""));
    for (const f of finals) expect(f).toMatch(/^Answer: (\([A-D]\)|not sure)$/);
    const agree = finals.filter((f) => f === "Answer: (B)").length;
    const unsure = finals.filter((f) => f === "Answer: not sure").length;
    const disagree = finals.length - agree - unsure;
    expect(agree).toBeGreaterThan(120); // agreeRate 0.5, plus wrong picks that land on B
    expect(unsure).toBeGreaterThan(3);
    expect(disagree).toBeGreaterThan(60);

    // no peer answer yet: correct (C = 168) at about accuracy × (1 − unsureRate)
    const first = await Promise.all(
      Array.from({ length: 300 }, (_, seed) =>
        complete(fast.url, {
          messages: [
            { role: "system", content: TEACHER },
            { role: "user", content: QUESTION },
          ],
          seed,
          max_tokens: 40,
        }),
      ),
    );
    const correct = first.filter((r) => lastLine(r.choices[0]!.message.content ?? "") === "Answer: (C)").length / 300;
    expect(correct).toBeGreaterThan(0.55);
    expect(correct).toBeLessThan(0.75);
  });

  test("sim - extractor returns the letter of the last answer line", async () => {
    const ask = async (turn: string): Promise<string> => {
      const r = await complete(fast.url, {
        messages: [
          { role: "system", content: EXTRACT },
          { role: "user", content: turn },
        ],
        max_tokens: 8,
      });
      expect(wordCount(r.choices[0]!.message.content ?? "")).toBe(r.usage.completion_tokens);
      return r.choices[0]!.message.content ?? "";
    };
    expect(await ask("Reasoning here.\nAnswer: (C)")).toBe("C");
    expect(await ask("First Answer: (B) but then\nAnswer: (D)")).toBe("D");
    expect(await ask("Hmm.\nAnswer: not sure")).toBe("not sure");
    expect(await ask("No answer at all.")).toBe("not sure");
  });

  test("sim - metrics carry vLLM's names and agree with the usage returned", async () => {
    const s = await sim({ slots: 16, decodeTps: 200_000, lenMedian: 30 });
    const res = await Promise.all(
      Array.from({ length: 40 }, (_, i) =>
        complete(s.url, { messages: [{ role: "user", content: `question number ${i} please` }], seed: i }),
      ),
    );
    const text = await (await fetch(`${s.url}/metrics`)).text();
    for (const name of [
      "vllm:num_requests_running",
      "vllm:num_requests_waiting",
      "vllm:gpu_cache_usage_perc",
      "vllm:prompt_tokens_total",
      "vllm:generation_tokens_total",
      "vllm:request_success_total",
      "vllm:prefix_cache_queries_total",
      "vllm:prefix_cache_hits_total",
      "vllm:e2e_request_latency_seconds_bucket",
      "sim:ceiling_tokens_per_second",
      "sim:running_seconds_total",
    ]) {
      expect(text).toContain(`${name}{`);
    }
    expect(text).toContain('model_name="sim-llm"');
    const sum = (f: (c: Completion) => number): number => res.reduce((n, r) => n + f(r), 0);
    expect(await metric(s.url, "vllm:prompt_tokens_total")).toBe(sum((r) => r.usage.prompt_tokens));
    expect(await metric(s.url, "vllm:generation_tokens_total")).toBe(sum((r) => r.usage.completion_tokens));
    expect(await metric(s.url, "vllm:request_success_total")).toBe(40);
    expect(await metric(s.url, "vllm:e2e_request_latency_seconds_count")).toBe(40);
    expect(await metric(s.url, "vllm:e2e_request_latency_seconds_bucket", 'le="+Inf"')).toBe(40);
    expect(await metric(s.url, "vllm:num_requests_running")).toBe(0);
    expect(await metric(s.url, "sim:ceiling_tokens_per_second")).toBeCloseTo(200_000, 3);
    expect(s.stats()).toMatchObject({ requests: 40, completed: 40, running: 0, waiting: 0 });
  });

  test("sim - streamed deltas add up to the non-stream answer", async () => {
    const body = { messages: [{ role: "user", content: "stream me" }], seed: 3, max_tokens: 60 };
    const whole = await complete(fast.url, body);
    const res = await post(fast.url, { ...body, stream: true, stream_options: { include_usage: true } });
    expect(res.headers.get("content-type")).toContain("text/event-stream");
    const data = sseData(await res.text());
    expect(data.at(-1)).toBe("[DONE]");
    const chunks = data.slice(0, -1).map((d) => JSON.parse(d));
    const text = chunks.map((c) => c.choices[0]?.delta?.content ?? "").join("");
    expect(text).toBe(whole.choices[0]!.message.content ?? "");
    expect(chunks.every((c) => c.object === "chat.completion.chunk")).toBe(true);
    const finals = chunks.filter((c) => c.choices[0]?.finish_reason);
    expect(finals.map((c) => c.choices[0].finish_reason)).toEqual([whole.choices[0]!.finish_reason]);
    expect(chunks.at(-1).usage).toMatchObject({ completion_tokens: whole.usage.completion_tokens });

    // a tool call streams its name, then its arguments piece by piece
    const toolBody = { messages: [{ role: "user", content: "fly to Lisbon" }], tools: [BOOK_TOOL], tool_choice: "required", seed: 1 };
    const call = (await complete(fast.url, toolBody)).choices[0]!.message.tool_calls![0]!;
    const tres = await post(fast.url, { ...toolBody, stream: true });
    const tchunks = sseData(await tres.text()).slice(0, -1).map((d) => JSON.parse(d));
    const deltas = tchunks.flatMap((c) => c.choices[0]?.delta?.tool_calls ?? []);
    expect(deltas[0]).toMatchObject({ index: 0, id: call.id, function: { name: call.function.name } });
    expect(deltas.map((d: { function: { arguments?: string } }) => d.function.arguments ?? "").join("")).toBe(call.function.arguments);
    expect(tchunks.at(-1).choices[0].finish_reason).toBe("tool_calls");
  });

  test("sim - tool calls, valid and invalid", async () => {
    const s = await sim({ slots: 32, decodeTps: 300_000, toolCallRate: 1, badToolCallRate: 0.3 });
    const tools = [BOOK_TOOL, WEATHER_TOOL];
    const res = await Promise.all(
      Array.from({ length: 150 }, (_, seed) =>
        complete(s.url, { messages: [{ role: "user", content: "Please book Lisbon for me" }], tools, seed }),
      ),
    );
    let valid = 0;
    let invalid = 0;
    for (const r of res) {
      const choice = r.choices[0]!;
      expect(choice.finish_reason).toBe("tool_calls");
      const call = choice.message.tool_calls![0]!;
      expect(r.usage.completion_tokens).toBe(1 + wordCount(call.function.arguments));
      const tool = tools.find((t) => t.function.name === call.function.name);
      let args: Record<string, unknown> | undefined;
      try {
        args = JSON.parse(call.function.arguments);
      } catch {
        args = undefined;
      }
      const ok = tool !== undefined && args !== undefined && tool.function.parameters.required.every((k) => k in args!);
      if (ok) {
        valid++;
        if (tool.function.name === "book_flight") {
          expect(typeof args!.city).toBe("string");
          expect(Number.isInteger(args!.seats)).toBe(true);
          if ("cabin" in args!) expect(["economy", "business"]).toContain(args!.cabin as string);
        }
      } else {
        invalid++;
        if (!tool) expect(call.function.name).toBe(UNKNOWN_TOOL_NAME);
      }
    }
    expect(invalid / 150).toBeGreaterThan(0.15);
    expect(invalid / 150).toBeLessThan(0.45);
    expect(valid).toBe(150 - invalid);

    // no call after a tool result, nor with tool_choice none
    const after = await complete(s.url, {
      messages: [
        { role: "user", content: "weather?" },
        { role: "assistant", content: null, tool_calls: [{ id: "c1", type: "function", function: { name: "get_weather", arguments: "{}" } }] },
        { role: "tool", tool_call_id: "c1", content: "sunny" },
      ],
      tools,
    });
    expect(after.choices[0]!.finish_reason).not.toBe("tool_calls");
    const none = await complete(s.url, { messages: [{ role: "user", content: "hi" }], tools, tool_choice: "none" });
    expect(none.choices[0]!.message.tool_calls).toBeUndefined();

    // the default rate gives both text and calls
    const mixed = await Promise.all(
      Array.from({ length: 60 }, (_, seed) => complete(fast.url, { messages: [{ role: "user", content: "hi" }], tools, seed })),
    );
    const calls = mixed.filter((r) => r.choices[0]!.message.tool_calls).length;
    expect(calls).toBeGreaterThan(15);
    expect(calls).toBeLessThan(55);
  });

  test("sim - bad requests get 400, 404, 405 or 413 naming what is wrong", async () => {
    type ErrorBody = { error: { message: string; type: string; param: string | null; code: number } };
    const err = async (r: Response): Promise<ErrorBody["error"]> => ((await r.json()) as ErrorBody).error;
    const s = await sim({ maxBodyBytes: 4096, decodeTps: 100_000 });
    let res = await fetch(`${s.url}/v1/chat/completions`, { method: "POST", body: "{nope" });
    expect(res.status).toBe(400);
    expect((await err(res)).message).toContain("Invalid JSON");
    res = await post(s.url, { model: "sim-llm" });
    expect(res.status).toBe(400);
    expect(await err(res)).toMatchObject({ param: "messages", type: "BadRequestError", code: 400 });
    res = await post(s.url, { messages: [{ role: "robot", content: "x" }] });
    expect((await err(res)).message).toStartWith("messages.0.role:");
    res = await post(s.url, { messages: [{ role: "user", content: "x" }], max_tokens: -3 });
    expect((await err(res)).param).toBe("max_tokens");
    res = await post(s.url, { model: "gpt-9", messages: [{ role: "user", content: "x" }] });
    expect(res.status).toBe(404);
    expect(await res.json()).toEqual({
      error: { message: "The model `gpt-9` does not exist.", type: "NotFoundError", param: "model", code: 404 },
    });
    res = await post(s.url, { messages: [{ role: "user", content: "x".repeat(10_000) }] });
    expect(res.status).toBe(413);
    const big = new TextEncoder().encode(JSON.stringify({ messages: [{ role: "user", content: "y".repeat(10_000) }] }));
    res = await fetch(`${s.url}/v1/chat/completions`, {
      method: "POST",
      body: new ReadableStream({
        start(c) {
          c.enqueue(big);
          c.close();
        },
      }),
    });
    expect(res.status).toBe(413);
    expect((await fetch(`${s.url}/v1/chat/completions`)).status).toBe(405);
    expect((await fetch(`${s.url}/nowhere`)).status).toBe(404);
    expect((await post(s.url, { messages: [{ role: "user", content: "fine" }] })).status).toBe(200);
  });

  test("sim - injected 500s and 429s come at their rates, reproducibly", async () => {
    const opts = { decodeTps: 400_000, lenMedian: 5, errorRate: 0.2, rateLimitRate: 0.1 };
    const s = await sim(opts);
    const body = { messages: [{ role: "user", content: "same every time" }] };
    const statuses: number[] = [];
    for (let i = 0; i < 400; i += 50) {
      const batch = await Promise.all(Array.from({ length: 50 }, () => post(s.url, body)));
      for (const r of batch) {
        statuses.push(r.status);
        if (r.status === 429) expect(r.headers.get("retry-after")).toBe("1");
        await r.arrayBuffer();
      }
    }
    const share = (code: number): number => statuses.filter((c) => c === code).length / statuses.length;
    expect(share(500)).toBeGreaterThan(0.13);
    expect(share(500)).toBeLessThan(0.27);
    expect(share(429)).toBeGreaterThan(0.05);
    expect(share(429)).toBeLessThan(0.16);
    expect(share(200)).toBeCloseTo(1 - share(500) - share(429), 9);
    expect(await metric(s.url, "sim:injected_errors_total", 'code="500"')).toBe(share(500) * 400);

    // the same requests in the same order on a fresh server fail the same way
    const seq = async (srv: SimServer): Promise<number[]> => {
      const out: number[] = [];
      for (let i = 0; i < 30; i++) {
        const r = await post(srv.url, { messages: [{ role: "user", content: `q${i % 3}` }] });
        out.push(r.status);
        await r.arrayBuffer();
      }
      return out;
    };
    expect(await seq(await sim(opts))).toEqual(await seq(await sim(opts)));
  });

  test("sim - prefix cache counts hits on a follow-up turn", async () => {
    const s = await sim({ decodeTps: 300_000, lenMedian: 20 });
    const history = [
      { role: "system", content: "You are helpful and answer in plain words every time." },
      { role: "user", content: "What is a prefix cache, in a few words?" },
    ];
    const first = await complete(s.url, { messages: history });
    expect(first.usage.prompt_tokens_details?.cached_tokens).toBe(0);
    const followUp = [
      ...history,
      { role: "assistant", content: first.choices[0]!.message.content },
      { role: "user", content: "And why does it help?" },
    ];
    const second = await complete(s.url, { messages: followUp });
    const cached = second.usage.prompt_tokens_details?.cached_tokens ?? 0;
    expect(cached).toBe(first.usage.prompt_tokens + first.usage.completion_tokens);
    expect(await metric(s.url, "vllm:prefix_cache_hits_total")).toBe(cached);
    expect(await metric(s.url, "vllm:prefix_cache_queries_total")).toBe(first.usage.prompt_tokens + second.usage.prompt_tokens);
    expect(s.stats().prefixHits).toBe(cached);
  });

  test("sim - a client that goes away frees its slot", async () => {
    // one slot and long answers: the first request runs, the second waits
    const s = await sim({ slots: 1, decodeTps: 200, lenMedian: 2000, lenSigma: 0 });
    const body = { messages: [{ role: "user", content: "a long answer please" }] };
    const a = new AbortController();
    const b = new AbortController();
    const pa = post(s.url, body, { signal: a.signal }).catch((e: Error) => e.name);
    await waitFor(() => s.stats().running === 1, "first request running");
    const pb = post(s.url, body, { signal: b.signal }).catch((e: Error) => e.name);
    await waitFor(() => s.stats().waiting === 1, "second request waiting");
    expect(await metric(s.url, "vllm:num_requests_waiting")).toBe(1);
    a.abort();
    b.abort();
    expect(await pa).toBe("AbortError");
    expect(await pb).toBe("AbortError");
    await waitFor(() => s.stats().running === 0 && s.stats().waiting === 0, "slot freed");
    // a stream cancelled by its reader frees its slot too
    const res = await post(s.url, { ...body, stream: true });
    const reader = res.body!.getReader();
    await reader.read();
    await waitFor(() => s.stats().running === 1, "stream running");
    await reader.cancel();
    await waitFor(() => s.stats().running === 0, "stream slot freed");
    expect(s.stats().aborted).toBe(3);
  });

  test("sim - stopping drops requests in flight and stops cleanly", async () => {
    const s = await startSim({ slots: 2, decodeTps: 100, lenMedian: 1000, lenSigma: 0 });
    const body = { messages: [{ role: "user", content: "never finishes" }] };
    const plain = post(s.url, body).then(
      (r) => r.status,
      () => "closed",
    );
    const streamed = post(s.url, { ...body, stream: true }).then(
      (r) => r.text().then(
        (t) => t,
        () => "closed",
      ),
      () => "closed",
    );
    await waitFor(() => s.stats().running === 2, "both running");
    await s.stop();
    expect([503, "closed"]).toContain(await plain);
    expect(await streamed).not.toContain("[DONE]");
    expect(s.stats()).toMatchObject({ running: 0, waiting: 0 });
    await s.stop(); // idempotent
  });

  test("sim - the official openai client works unchanged", async () => {
    const client = new OpenAI({ baseURL: `${fast.url}/v1`, apiKey: "x", maxRetries: 0 });
    const models = await client.models.list();
    expect(models.data.map((m) => m.id)).toEqual(["sim-llm"]);

    const messages = [
      { role: "system" as const, content: TEACHER },
      { role: "user" as const, content: QUESTION },
    ];
    const done = await client.chat.completions.create({ model: "sim-llm", messages, seed: 11, max_tokens: 50 });
    const text = done.choices[0]!.message.content ?? "";
    expect(lastLine(text)).toMatch(/^Answer: (\([A-D]\)|not sure)$/);
    expect(done.usage?.completion_tokens).toBe(wordCount(text));

    const stream = await client.chat.completions.create({
      model: "sim-llm",
      messages,
      seed: 11,
      max_tokens: 50,
      stream: true,
      stream_options: { include_usage: true },
    });
    let streamed = "";
    let usage: OpenAI.CompletionUsage | undefined;
    for await (const chunk of stream) {
      streamed += chunk.choices[0]?.delta?.content ?? "";
      if (chunk.usage) usage = chunk.usage;
    }
    expect(streamed).toBe(text);
    expect(usage?.completion_tokens).toBe(done.usage?.completion_tokens);

    const withTools = await client.chat.completions.create({
      model: "sim-llm",
      messages: [{ role: "user", content: "What is the weather in Oslo?" }],
      tools: [WEATHER_TOOL],
      tool_choice: "required",
    });
    const call = withTools.choices[0]!.message.tool_calls?.[0];
    expect(withTools.choices[0]!.finish_reason).toBe("tool_calls");
    expect(call?.type).toBe("function");
    if (call?.type !== "function") throw new Error("no function call");
    expect(call.function.name).toBe("get_weather");

    // the stream helper accumulates streamed tool calls into the same call
    const runner = client.chat.completions.stream({
      model: "sim-llm",
      messages: [{ role: "user", content: "What is the weather in Oslo?" }],
      tools: [WEATHER_TOOL],
      tool_choice: "required",
    });
    const final = await runner.finalChatCompletion();
    const streamedCall = final.choices[0]!.message.tool_calls?.[0];
    expect(streamedCall?.type === "function" ? streamedCall.function : undefined).toEqual(call.function);

    const wrong = await client.chat.completions.create({ model: "other", messages: [{ role: "user", content: "x" }] }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(wrong).toBeInstanceOf(OpenAI.NotFoundError);
  });

  test("sim - a fleet runs servers on their own ports; dieAfterSec stops one", async () => {
    const fleet = await startSimFleet(3, { decodeTps: 100_000, model: "m-fleet" });
    servers.push(...fleet);
    expect(new Set(fleet.map((f) => f.port)).size).toBe(3);
    for (const f of fleet) {
      expect((await fetch(`${f.url}/health`)).status).toBe(200);
      const models = await (await fetch(`${f.url}/v1/models`)).json();
      expect(models).toMatchObject({ object: "list", data: [{ id: "m-fleet", object: "model" }] });
    }
    const dying = await sim({ dieAfterSec: 0.2 });
    expect((await fetch(`${dying.url}/health`)).status).toBe(200);
    await waitFor(
      () =>
        fetch(`${dying.url}/health`).then(
          () => false,
          () => true,
        ),
      "the server to stop",
    );
  });
});
