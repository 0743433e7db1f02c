import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import OpenAI from "openai";
import { startSim, type SimServer } from "../src/sim/index.ts";
import { UNKNOWN_TOOL_NAME } from "../src/sim/skills/tools.ts";
import { complete, post, sseData, wordCount } from "./support/sim-http.ts";

/** What the simulated model answers, in every shape, over real HTTP. */

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

describe("sim-llm content", () => {
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
  }, 20_000);

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
  }, 20_000);

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
  }, 20_000);

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
  }, 20_000);

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
  }, 20_000);

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
  }, 20_000);

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
  }, 20_000);
});
