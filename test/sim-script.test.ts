import { afterAll, describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import OpenAI from "openai";
import { ConfigError } from "../src/errors.ts";
import { SIM_KINDS, type SimKind, type SimOptions, type SimServer, startSim } from "../src/sim/index.ts";
import { SimScript } from "../src/sim/script.ts";
import { tempDir } from "./support/files.ts";
import { MATRIXD, runProcess } from "./support/matrixd.ts";
import { metric, post } from "./support/sim-http.ts";
import { startSims } from "./support/sim-llm.ts";

/**
 * Scripted replies of the simulated LLM over real HTTP: each rule kind in
 * each server kind's wire shape, streamed and not; which requests a rule
 * takes (every, turn, share, model, system, in), the fallback to the
 * built-in answers, determinism under concurrency, and bad scripts.
 */

const servers: SimServer[] = [];
async function sim(opts: SimOptions): Promise<SimServer> {
  const s = await startSim({ decodeTps: 200_000, lenMedian: 12, lenSigma: 0, model: "m", ...opts });
  servers.push(s);
  return s;
}
afterAll(async () => {
  await Promise.all(servers.map((s) => s.stop()));
});

type Msg = OpenAI.ChatCompletionMessageParam;
const user = (content: string): Msg[] => [{ role: "user", content }];

/** A conversation whose next reply is the n-th: n - 1 exchanges, then `last`. */
function turnOf(n: number, last = "go on", system = "You are a critic."): Msg[] {
  const ms: Msg[] = [{ role: "system", content: system }];
  for (let i = 1; i < n; i++) ms.push({ role: "user", content: `draft ${i}` }, { role: "assistant", content: `review ${i}` });
  ms.push({ role: "user", content: last });
  return ms;
}

/** What an answer amounts to, whether streamed or not: text, tool call, finish reason, usage. */
interface Got {
  text: string;
  tool?: { name: string; arguments: string; id: string };
  finish: string | null;
  completionTokens: number;
}

const TOOLS: OpenAI.ChatCompletionTool[] = [
  {
    type: "function",
    function: { name: "get_weather", description: "Weather in a city", parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] } },
  },
];

async function ask(s: { url: string }, messages: Msg[], stream: boolean, extra: Partial<OpenAI.ChatCompletionCreateParamsNonStreaming> = {}): Promise<Got> {
  const client = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: "sk-test", maxRetries: 0 });
  if (!stream) {
    const r = await client.chat.completions.create({ model: "m", messages, ...extra });
    const c = r.choices[0]!;
    const t = c.message.tool_calls?.[0];
    return {
      text: c.message.content ?? "",
      ...(t && t.type === "function" ? { tool: { name: t.function.name, arguments: t.function.arguments, id: t.id } } : {}),
      finish: c.finish_reason,
      completionTokens: r.usage?.completion_tokens ?? -1,
    };
  }
  const chunks = await client.chat.completions.create({ model: "m", messages, ...extra, stream: true, stream_options: { include_usage: true } });
  const got: Got = { text: "", finish: null, completionTokens: -1 };
  for await (const chunk of chunks) {
    if (chunk.usage) got.completionTokens = chunk.usage.completion_tokens;
    const c = chunk.choices[0];
    if (!c) continue;
    got.text += c.delta?.content ?? "";
    for (const t of c.delta?.tool_calls ?? []) {
      got.tool ??= { name: "", arguments: "", id: "" };
      if (t.id) got.tool.id = t.id;
      got.tool.name += t.function?.name ?? "";
      got.tool.arguments += t.function?.arguments ?? "";
    }
    if (c.finish_reason) got.finish = c.finish_reason;
  }
  return got;
}

const SCRIPT = [
  { match: "Is this answer right", json: { ok: true, note: "checked by rule one" } },
  { system: "You are a critic", every: 3, text: "LGTM on review {{n}}" },
  { match: "/weather in (\\w+)/i", tool_call: { name: "get_weather", arguments: { city: "{{1}}" } } },
  { match: "raw args", tool_call: { name: "get_weather", arguments: '{"city": "Par' } },
  { match: "boom", error: 503, message: "scripted outage" },
  { match: "teapot", error: 418 },
];

describe("sim script", () => {
  test("sim script - json, text, tool calls and errors in each kind's own shape, streamed and not", async () => {
    for (const kind of SIM_KINDS) {
      const s = await sim({ kind, script: SCRIPT, apiKey: kind === "openai" ? "sk-test" : undefined });
      for (const stream of [false, true]) {
        const at = `${kind}${stream ? " streamed" : ""}`;
        const json = await ask(s, user("Is this answer right? 2 + 2 = 4"), stream);
        expect(JSON.parse(json.text), at).toEqual({ ok: true, note: "checked by rule one" });
        expect(json.text).toBe('{"ok": true, "note": "checked by rule one"}');
        expect(json.finish).toBe("stop");
        expect(json.completionTokens).toBe(7);

        const critic = await ask(s, turnOf(3), stream);
        expect(critic.text, at).toBe("LGTM on review 3");

        // llama.cpp b4748 answers "Cannot use tools with stream"
        if (kind === "llamacpp" && stream) continue;
        const call = await ask(s, user("What is the weather in Lyon?"), stream, { tools: TOOLS });
        expect(call.tool?.name, at).toBe("get_weather");
        expect(JSON.parse(call.tool!.arguments)).toEqual({ city: "Lyon" });
        // llama.cpp sends empty tool-call ids; the others make their own
        if (kind === "llamacpp") expect(call.tool!.id).toBe("");
        else expect(call.tool!.id.length, at).toBeGreaterThan(0);
        // TGI ends a tool call with "stop" (its EOS); the others say "tool_calls"
        expect(call.finish, at).toBe(kind === "tgi" ? "stop" : "tool_calls");
        const raw = await ask(s, user("call it with raw args"), stream, { tools: TOOLS });
        expect(raw.tool?.arguments, at).toBe('{"city": "Par');
      }
      const body = { model: "m", messages: user("boom") };
      const headers = { "content-type": "application/json", authorization: "Bearer sk-test" };
      const down = await post(s.url, body, { headers });
      expect(down.status, kind).toBe(503);
      const text = await down.text();
      expect(text, kind).toContain("scripted outage");
      const shaped = JSON.parse(text) as Record<string, unknown>;
      if (kind === "tgi") expect(shaped).toEqual({ error: "scripted outage", error_type: "incomplete_generation" });
      else if (kind === "sglang") expect(shaped).toMatchObject({ object: "error", message: "scripted outage", code: 503 });
      else expect(shaped).toMatchObject({ error: { message: "scripted outage" } });
      const teapot = await post(s.url, { model: "m", messages: user("a teapot"), stream: true }, { headers });
      expect(teapot.status, kind).toBe(418);
      expect(await teapot.text()).toContain("Scripted error: rule #6 of the sim script.");
      expect(await metric(s.url, "sim:script_replies_total", 'rule="5"'), kind).toBe(1);
      expect(await metric(s.url, "sim:injected_errors_total", 'code="503"'), kind).toBe(1);
    }
  }, 30_000);

  test("sim script - every, turn, share, model, system and in pick the requests a rule takes", async () => {
    const s = await sim({
      script: [
        { system: "You are a critic", every: 3, text: "OK" },
        { turn: 1, match: "first", text: "turn one" },
        { match: "/^tool says (\\d+)$/", in: "last", text: "the tool said {{1}} to {{model}}" },
        { match: "anywhere", in: "any", text: "seen" },
        { model: "/^other-/", text: "not this server's model" },
        { match: "coin", share: 0.5, text: "heads" },
      ],
    });
    const critic: string[] = [];
    for (let n = 1; n <= 7; n++) critic.push((await ask(s, turnOf(n), false)).text);
    expect(critic.map((t) => t === "OK")).toEqual([false, false, true, false, false, true, false]);
    // no system message of a critic: the rule does not apply, whatever the turn
    expect((await ask(s, turnOf(3, "go on", "You are a poet."), false)).text).not.toBe("OK");

    expect((await ask(s, user("first things first"), false)).text).toBe("turn one");
    expect((await ask(s, turnOf(2, "first again"), false)).text).not.toBe("turn one");

    const toolTurn: Msg[] = [
      { role: "user", content: "check the account" },
      { role: "assistant", content: null, tool_calls: [{ id: "c1", type: "function", function: { name: "lookup", arguments: "{}" } }] },
      { role: "tool", tool_call_id: "c1", content: "tool says 42" },
    ];
    expect((await ask(s, toolTurn, false)).text).toBe("the tool said 42 to m");
    // `in: last` reads the last message only: the same text in the user message does not count
    expect((await ask(s, [...user("tool says 42"), { role: "assistant", content: "ok" }, { role: "user", content: "and?" }], false)).text).not.toContain("the tool said");

    expect((await ask(s, [{ role: "system", content: "anywhere" }, ...user("hello")], false)).text).toBe("seen");
    expect((await ask(s, user("hello"), false)).text).not.toBe("not this server's model");

    // share: about half of distinct requests, and each one always the same way
    const heads: boolean[] = [];
    for (let i = 0; i < 200; i++) heads.push((await ask(s, user(`coin ${i}`), false)).text === "heads");
    const count = heads.filter(Boolean).length;
    expect(count).toBeGreaterThan(70);
    expect(count).toBeLessThan(130);
    for (let i = 0; i < 20; i++) expect((await ask(s, user(`coin ${i}`), false)).text === "heads").toBe(heads[i]!);
  }, 30_000);

  test("sim script - requests no rule matches get the built-in answers, the same as without a script", async () => {
    const plain = await sim({});
    const scripted = await sim({ script: SCRIPT });
    const coral = [
      { role: "system" as const, content: "You are a teacher." },
      { role: "user" as const, content: "Question: What is 2 + 3?\nOptions:\n(A) 4\n(B) 5\n(C) 6" },
    ];
    for (const messages of [user("tell me about the sea"), coral, turnOf(2)]) {
      for (const stream of [false, true]) {
        const a = await ask(plain, messages, stream, { seed: 7 });
        const b = await ask(scripted, messages, stream, { seed: 7 });
        expect(b).toEqual(a);
      }
    }
    expect((await ask(scripted, coral, false)).text).toMatch(/Answer: (\([ABC]\)|not sure)$/);
    const tools = await ask(scripted, user("tell me about the sea"), false, { tools: TOOLS, tool_choice: "required" });
    expect(tools.tool?.name).toBe("get_weather");
  }, 20_000);

  test("sim script - a scripted reply goes through the capacity model: tokens, decode time, caps and stops", async () => {
    const words = Array.from({ length: 200 }, (_, i) => `w${i}`).join(" ");
    // 16 slots sharing 2,000 tokens/s: a sequence alone gets little more than 1/16 of it, so 200 tokens take over a second
    const s = await sim({ slots: 16, decodeTps: 2_000, script: [{ match: "long", text: words }, { match: "stop", text: "one two END three" }] });
    const before = await metric(s.url, "sim:generation_tokens_total");
    const t0 = performance.now();
    const long = await ask(s, user("a long one"), false);
    const took = performance.now() - t0;
    expect(long.text).toBe(words);
    expect(long.completionTokens).toBe(200);
    expect(took).toBeGreaterThan(1000);
    expect((await metric(s.url, "sim:generation_tokens_total")) - before).toBe(200);
    const cut = await ask(s, user("long"), true, { max_tokens: 5 });
    expect(cut).toEqual({ text: "w0 w1 w2 w3 w4", finish: "length", completionTokens: 5 });
    const stopped = await ask(s, user("stop here"), false, { stop: ["END"] });
    expect(stopped.text).toBe("one two ");
    expect(stopped.finish).toBe("stop");
  }, 20_000);

  test("sim script - a reply that breaks the request's structured-output constraint is sent as written", async () => {
    const s = await sim({ script: [{ match: "verdict", text: "not JSON at all" }] });
    const schema = { type: "object", properties: { ok: { type: "boolean" } }, required: ["ok"] };
    const got = await ask(s, user("your verdict?"), false, { response_format: { type: "json_schema", json_schema: { name: "v", schema } } });
    expect(got.text).toBe("not JSON at all");
    // no rule: the constraint is honoured as before
    const free = await ask(s, user("anything else?"), false, { response_format: { type: "json_schema", json_schema: { name: "v", schema } } });
    expect(typeof (JSON.parse(free.text) as { ok: unknown }).ok).toBe("boolean");
  });

  test("sim script - the same request gets the same reply whatever the concurrency", async () => {
    const script = [
      { match: "/item (\\d+)/", share: 0.5, json: { item: "{{1}}", verdict: "keep" } },
      { match: "/item (\\d+)/", share: 0.3, tool_call: { name: "get_weather", arguments: { city: "c{{1}}" } } },
      { system: "critic", every: 2, text: "fine at {{n}}" },
    ];
    const one = await sim({ slots: 1, script });
    const many = await sim({ slots: 64, kind: "sglang", script });
    const requests = Array.from({ length: 120 }, (_, i) => (i % 3 === 2 ? turnOf(1 + (i % 4), `item ${i}`, "critic") : user(`item ${i}`)));
    const sequential: Got[] = [];
    for (const m of requests.slice(0, 40)) sequential.push(await ask(one, m, false, { tools: TOOLS }));
    const concurrent = await Promise.all(requests.map((m, i) => ask(many, m, i % 2 === 1, { tools: TOOLS })));
    const key = (g: Got) => ({ text: g.text, tool: g.tool ? { name: g.tool.name, arguments: g.tool.arguments } : undefined, finish: g.finish === "tool_calls" ? "tool" : g.finish });
    expect(concurrent.slice(0, 40).map(key)).toEqual(sequential.map(key));
    const again = await Promise.all(requests.map((m, i) => ask(many, m, i % 2 === 0, { tools: TOOLS })));
    expect(again.map(key)).toEqual(concurrent.map(key));
    const kinds = new Set(concurrent.map((g) => (g.tool ? "tool" : g.text.startsWith("{") ? "json" : g.text.startsWith("fine") ? "text" : "default")));
    expect([...kinds].sort()).toEqual(["default", "json", "text", "tool"]);
  }, 30_000);

  test("sim script - bad scripts are refused when loaded, naming the file, the rule and the key", () => {
    const t = tempDir();
    try {
      const cases: [string, string, RegExp][] = [
        ["unknown-key.yaml", '- { match: "a", txt: "b" }', /sim script .*unknown-key\.yaml: rule #1: unknown key "txt"/],
        ["bad-regex.yaml", '- { match: "x", text: "ok" }\n- { match: "/(a/", text: "b" }', /rule #2: "match": bad regex \/\(a\/: /],
        ["flags.yaml", '- { system: "/a/g", text: "b" }', /rule #1: "system": regex flags "g"/],
        ["two.yaml", '- { match: "a", text: "b", json: 1 }', /rule #1: "json": cannot go with "text"/],
        ["none.yaml", '- { match: "a" }', /rule #1: has no reply: give one of text, json, tool_call, error/],
        ["placeholder.yaml", '- { match: "a", text: "{{turn}}" }', /rule #1: "text": unknown placeholder \{\{turn\}\}/],
        ["group.yaml", '- { match: "/(a)/", json: { x: ["{{2}}"] } }', /rule #1: "json.x.0": uses \{\{2\}\}, but "match" has 1 group/],
        ["in.yaml", '- { in: last, text: "b" }', /rule #1: "in": says where "match" looks/],
        ["status.yaml", '- { match: "a", error: 200 }', /rule #1: "error": /],
        ["every.yaml", '- { every: 0, text: "a" }', /rule #1: "every": /],
        ["list.yaml", "match: a\ntext: b", /must be a list of rules, got object/],
        ["item.yaml", "- just a string", /rule #1: must be a mapping/],
        ["broken.yaml", '- { match: "a", text: "b"', /cannot be parsed/],
        ["broken.json", '[{"match": "a",]', /cannot be parsed/],
      ];
      for (const [name, text, want] of cases) {
        writeFileSync(t.path(name), text);
        let err: unknown;
        try {
          SimScript.load(t.path(name));
        } catch (e) {
          err = e;
        }
        expect(err, name).toBeInstanceOf(ConfigError);
        expect((err as Error).message, name).toMatch(want);
        expect((err as Error).message, name).not.toContain("\n");
      }
      expect(() => SimScript.load(t.path("missing.yaml"))).toThrow(/sim script .*missing\.yaml does not exist/);
      expect(() => SimScript.load([{ match: "a", text: "ok" }, { json: {}, colour: 1 }])).toThrow(/sim script \(inline\): rule #2: unknown key "colour"/);
      writeFileSync(t.path("good.json"), JSON.stringify(SCRIPT));
      expect(SimScript.load(t.path("good.json")).size).toBe(SCRIPT.length);
    } finally {
      t.remove();
    }
  });

  test("sim script - matrixd sim-llm --sim-script answers by the script; a bad one exits 2 with one line", async () => {
    const t = tempDir();
    try {
      writeFileSync(
        t.path("script.yaml"),
        ["# a critic that approves every second review", '- { system: "You are a critic", every: 2, json: { ok: true } }', '- { match: "weather", tool_call: { name: get_weather, arguments: { city: Paris } } }', ""].join("\n"),
      );
      writeFileSync(t.path("bad.yaml"), '- { match: "weather", tool_call: { name: get_weather, args: {} } }\n');
      const help = await runProcess([...MATRIXD, "sim-llm", "--help"]);
      expect(help.stdout).toContain("--sim-script FILE");
      const bad = await runProcess([...MATRIXD, "sim-llm", "--port", "0", "--sim-script", t.path("bad.yaml")]);
      expect(bad.code).toBe(2);
      expect(bad.stderr.trim().split("\n")).toHaveLength(1);
      expect(bad.stderr).toMatch(/^matrixd sim-llm: sim script .*bad\.yaml: rule #1: unknown key "tool_call\.args"/);
      const missing = await runProcess([...MATRIXD, "sim-llm", "--port", "0", "--sim-script", t.path("nope.yaml")]);
      expect(missing.code).toBe(2);
      expect(missing.stderr).toMatch(/sim script .*nope\.yaml does not exist/);

      for (const kind of ["vllm", "llamacpp"] as SimKind[]) {
        const p = await startSims(["--kind", kind, "--servers", "2", "--model", "m", "--decode-tps", "100000", "--sim-script", t.path("script.yaml")]);
        try {
          for (const base of p.bases) {
            const s = { url: base };
            expect((await ask(s, turnOf(2), false)).text).toBe('{"ok": true}');
            expect((await ask(s, turnOf(4), true)).text).toBe('{"ok": true}');
            expect((await ask(s, turnOf(3), false)).text).not.toBe('{"ok": true}');
            // llama.cpp b4748 takes tools only unstreamed
            const call = await ask(s, user("weather please"), kind !== "llamacpp", { tools: TOOLS });
            expect(call.tool?.name).toBe("get_weather");
            expect(call.tool?.arguments).toBe('{"city": "Paris"}');
            expect(await metric(base, "sim:script_replies_total", 'rule="1"')).toBe(2);
          }
        } finally {
          await p.stop();
        }
      }
    } finally {
      t.remove();
    }
  }, 60_000);
});
