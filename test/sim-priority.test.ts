import { afterAll, describe, expect, test } from "bun:test";
import { ConfigError } from "../src/errors.ts";
import { SeqState, SimEngine, startSim, type SeqInput, type SimKind, type SimOptions, type SimServer, type SimSeq } from "../src/sim/index.ts";
import { post } from "./support/sim-http.ts";
import { waitFor } from "./support/wait.ts";

/**
 * Request priority in the sim: the engine's priority queue on a hand-driven
 * clock, and over real HTTP each kind's `priority` field as its server
 * treats it (vLLM lower first, SGLang higher first with preemption, the
 * others FIFO).
 */

/** An engine on a hand-driven clock: virtual ms = wall ms; each step is 10 ms. */
function manualEngine(o: { slots: number; policy: "fcfs" | "priority"; preemptGap?: number }) {
  let now = 0;
  const ended: string[] = [];
  const engine = new SimEngine(
    { slots: o.slots, stepBaseMs: 10, stepPerSeqMs: 0, prefillTps: Infinity, timeScale: 1, schedulingPolicy: o.policy, preemptGap: o.preemptGap },
    { now: () => now, manual: true },
  );
  const at = (t: number): void => {
    now = t;
    engine.tick();
  };
  const submit = (name: string, len: number, priority?: number, extra: Partial<SeqInput> = {}): SimSeq =>
    engine.submit({ promptTokens: 1, prefillTokens: 0, len, priority, onEnd: (s) => s.state === SeqState.DONE && ended.push(name), ...extra });
  return { engine, at, submit, ended };
}

describe("sim priority - engine", () => {
  test("sim priority - the waiting queue runs lower keys first, ties in arrival order", () => {
    const m = manualEngine({ slots: 1, policy: "priority" });
    m.submit("first", 2, 9);
    m.submit("p3", 1, 3);
    m.submit("p1a", 1, 1);
    m.submit("p2", 1, 2);
    m.submit("p1b", 1, 1);
    expect(m.engine.counters().waiting).toBe(4);
    for (let t = 10; t <= 100; t += 10) m.at(t);
    expect(m.ended).toEqual(["first", "p1a", "p1b", "p2", "p3"]);
    expect(m.engine.counters()).toMatchObject({ waiting: 0, running: 0 });
  });

  test("sim priority - fcfs ignores priority and keeps arrival order", () => {
    const m = manualEngine({ slots: 1, policy: "fcfs" });
    m.submit("first", 2, 9);
    m.submit("p3", 1, 3);
    m.submit("p1", 1, 1);
    m.submit("p2", 1, 2);
    for (let t = 10; t <= 100; t += 10) m.at(t);
    expect(m.ended).toEqual(["first", "p3", "p1", "p2"]);
  });

  test("sim priority - cancelled sequences in the heap are skipped and leave the waiting count right", () => {
    const m = manualEngine({ slots: 1, policy: "priority" });
    m.submit("first", 2, 0);
    const gone = m.submit("gone", 1, 1);
    m.submit("p2", 1, 2);
    const gone2 = m.submit("gone2", 1, 0);
    expect(m.engine.counters().waiting).toBe(3);
    m.engine.cancel(gone);
    m.engine.cancel(gone2);
    expect(gone.state).toBe(SeqState.CANCELLED);
    expect(m.engine.counters().waiting).toBe(1);
    for (let t = 10; t <= 60; t += 10) m.at(t);
    expect(m.ended).toEqual(["first", "p2"]);
    expect(m.engine.counters()).toMatchObject({ waiting: 0, running: 0 });
  });

  test("sim priority - many cancelled sequences are swept from the heap and the rest keep their order", () => {
    const m = manualEngine({ slots: 1, policy: "priority" });
    m.submit("first", 2, 0);
    const doomed: SimSeq[] = [];
    for (let i = 0; i < 3000; i++) doomed.push(m.submit(`d${i}`, 1, 5));
    m.submit("late", 1, 7);
    m.submit("early", 1, 6);
    for (const s of doomed) m.engine.cancel(s);
    expect(m.engine.counters().waiting).toBe(2);
    for (let t = 10; t <= 60; t += 10) m.at(t);
    expect(m.ended).toEqual(["first", "early", "late"]);
  });

  test("sim priority - with a preemption gap, a far better waiting key takes a full batch's worst slot and the preempted one keeps its tokens", () => {
    const m = manualEngine({ slots: 1, policy: "priority", preemptGap: 10 });
    const low = m.submit("low", 10, 0);
    m.at(10);
    m.at(20);
    expect(low.generated()).toBe(2);
    m.submit("near", 1, -10); // 10 better: not more than the gap, waits
    m.submit("far", 1, -11); // 11 better: preempts
    // both join at the step that starts at 30, after `low` made its third token
    m.at(30);
    expect(low.state).toBe(SeqState.WAITING);
    expect(low.generated()).toBe(3);
    expect(m.engine.counters()).toMatchObject({ running: 1, waiting: 2 });
    // far runs step 3, near step 4, low again from step 5: its first run's finish step (10) must not end it
    for (let t = 40; t <= 110; t += 10) m.at(t);
    expect(m.ended).toEqual(["far", "near"]);
    expect(low.state).toBe(SeqState.RUNNING);
    expect(low.generated()).toBe(9);
    m.at(120);
    expect(m.ended).toEqual(["far", "near", "low"]);
    // 3 tokens before, 1 + 1 for the others, its last 7 after
    expect(m.engine.counters().generationTokens).toBe(12);
  });

  test("sim priority - without a gap a full batch is never preempted", () => {
    const m = manualEngine({ slots: 1, policy: "priority" });
    m.submit("low", 3, 100);
    m.at(10);
    m.submit("urgent", 1, -1000);
    for (let t = 20; t <= 60; t += 10) m.at(t);
    expect(m.ended).toEqual(["low", "urgent"]);
  });
});

describe("sim priority - options", () => {
  test("sim priority - the priority policy is refused for kinds without a priority scheduler", async () => {
    for (const kind of ["llamacpp", "tgi", "openai"] as const) {
      await expect(startSim({ kind, schedulingPolicy: "priority" })).rejects.toThrow(ConfigError);
    }
    await expect(startSim({ kind: "tgi", schedulingPolicy: "priority" })).rejects.toThrow(/"schedulingPolicy": "priority" is for kinds vllm and sglang only/);
  });
});

type Json = Record<string, any>;
const servers: SimServer[] = [];
afterAll(async () => {
  await Promise.all(servers.map((s) => s.stop()));
});

/** One slot, ~40 tokens an answer at 200 tokens/s: each answer takes about 200 ms. */
async function sim(kind: SimKind, opts: SimOptions = {}): Promise<SimServer> {
  const s = await startSim({ kind, slots: 1, decodeTps: 200, lenMedian: 40, lenSigma: 0, model: "m", ...opts });
  servers.push(s);
  return s;
}

const hi = (extra: Json = {}): Json => ({ model: "m", messages: [{ role: "user", content: "tell me about the sea" }], max_tokens: 40, ...extra });

async function chat(s: SimServer, body: Json): Promise<{ status: number; body: Json }> {
  const res = await post(s.url, body);
  const text = await res.text();
  return { status: res.status, body: JSON.parse(text) as Json };
}

/**
 * Sends one request that takes the only slot, then the others one by one
 * (each queued before the next is sent); returns the names in the order
 * their answers came back.
 */
async function finishOrder(s: SimServer, first: Json, queued: [name: string, extra: Json][]): Promise<string[]> {
  const order: string[] = [];
  const all: Promise<void>[] = [];
  const send = (name: string, extra: Json): void => {
    all.push(
      chat(s, hi(extra)).then((r) => {
        expect(r.status).toBe(200);
        order.push(name);
      }),
    );
  };
  send("first", first);
  await waitFor("the first request to run", () => s.stats().running === 1, 5000);
  for (const [i, [name, extra]] of queued.entries()) {
    send(name, extra);
    await waitFor(`${name} to queue`, () => s.stats().waiting === i + 1, 5000);
  }
  await Promise.all(all);
  return order;
}

describe("sim priority - vllm over HTTP", () => {
  test("sim priority - vllm under fcfs takes a nonzero priority (V1 has no check) and ignores it", async () => {
    const s = await sim("vllm");
    const ok = await chat(s, hi({ priority: 5 }));
    expect(ok.status).toBe(200);
    expect(ok.body.object).toBe("chat.completion");
    expect((await chat(s, hi({ priority: 0 }))).status).toBe(200);
    expect(await finishOrder(s, { priority: 0 }, [["p5", { priority: 5 }], ["p1", { priority: 1 }], ["p3", { priority: 3 }]])).toEqual(["first", "p5", "p1", "p3"]);
  });

  test("sim priority - vllm under the priority policy answers lower priority values first, ties by arrival", async () => {
    const s = await sim("vllm", { schedulingPolicy: "priority" });
    const order = await finishOrder(s, { priority: 9 }, [
      ["p3", { priority: 3 }],
      ["p1a", { priority: 1 }],
      ["none", {}],
      ["p1b", { priority: 1 }],
      ["neg", { priority: -2 }],
    ]);
    expect(order).toEqual(["first", "neg", "none", "p1a", "p1b", "p3"]);
  });

  test("sim priority - vllm refuses a priority that is not an integer with a 400 naming the field", async () => {
    const s = await sim("vllm");
    for (const bad of ["high", 1.5, null, [1], { p: 1 }]) {
      const r = await chat(s, hi({ priority: bad }));
      expect(r.status).toBe(400);
      expect(r.body.error).toMatchObject({ param: "priority", code: 400, type: "BadRequestError" });
      expect(r.body.error.message).toStartWith("priority: Input should be a valid integer");
    }
    // pydantic's lax mode takes integral floats and numeric strings
    expect((await chat(s, hi({ priority: 2.0 }))).status).toBe(200);
    expect((await chat(s, hi({ priority: "3" }))).status).toBe(200);
  });
});

describe("sim priority - sglang over HTTP", () => {
  test("sim priority - sglang without priority scheduling ignores the field", async () => {
    const s = await sim("sglang");
    expect(await finishOrder(s, { priority: 0 }, [["p1", { priority: 1 }], ["p30", { priority: 30 }], ["p2", { priority: 2 }]])).toEqual(["first", "p1", "p30", "p2"]);
    const info = (await (await fetch(`${s.url}/get_server_info`)).json()) as Json;
    expect(info.enable_priority_scheduling).toBe(false);
  });

  test("sim priority - sglang with priority scheduling answers higher values first, a request without one last", async () => {
    const s = await sim("sglang", { schedulingPolicy: "priority" });
    const order = await finishOrder(s, { priority: 5 }, [
      ["none", {}],
      ["p1a", { priority: 1 }],
      ["p3", { priority: 3 }],
      ["p1b", { priority: 1 }],
      ["p7", { priority: 7 }],
    ]);
    expect(order).toEqual(["first", "p7", "p3", "p1a", "p1b", "none"]);
    const info = (await (await fetch(`${s.url}/get_server_info`)).json()) as Json;
    expect(info).toMatchObject({ enable_priority_scheduling: true, schedule_low_priority_values_first: false, priority_scheduling_preemption_threshold: 10 });
  });

  test("sim priority - sglang preempts a running request outranked by more than the threshold (10)", async () => {
    const s = await sim("sglang", { schedulingPolicy: "priority" });
    // SGLang's own test: 0 running, then 10 and 20 queued: 20 preempts 0 (10 is not more than 10 above it)
    const order: string[] = [];
    const send = (name: string, priority: number): Promise<void> =>
      chat(s, hi({ priority })).then((r) => {
        expect(r.status).toBe(200);
        order.push(name);
      });
    const zero = send("p0", 0);
    await waitFor("the first request to run", () => s.stats().running === 1, 5000);
    const ten = send("p10", 10);
    await waitFor("p10 to queue", () => s.stats().waiting === 1, 5000);
    expect(s.stats().running).toBe(1);
    const twenty = send("p20", 20);
    await Promise.all([zero, ten, twenty]);
    expect(order).toEqual(["p20", "p10", "p0"]);
  });

  test("sim priority - sglang refuses a priority that is not an integer with a 400 naming the field", async () => {
    const s = await sim("sglang");
    const r = await chat(s, hi({ priority: "urgent" }));
    expect(r.status).toBe(400);
    expect(r.body).toMatchObject({ object: "error", code: 400 });
    expect(r.body.message).toStartWith("priority: Input should be a valid integer");
    // Optional[int]: null is no priority
    expect((await chat(s, hi({ priority: null }))).status).toBe(200);
  });
});

describe("sim priority - other kinds over HTTP", () => {
  test("sim priority - llama.cpp and TGI ignore the field; the hosted API refuses it as an unknown argument", async () => {
    for (const kind of ["llamacpp", "tgi"] as const) {
      const s = await sim(kind, { decodeTps: 100_000 });
      expect((await chat(s, hi({ priority: 5 }))).status).toBe(200);
      expect((await chat(s, hi({ priority: "not a number" }))).status).toBe(200);
    }
    const o = await sim("openai", { decodeTps: 100_000 });
    const r = await chat(o, hi({ priority: 5 }));
    expect(r.status).toBe(400);
    expect(r.body.error.message).toBe("Unrecognized request argument supplied: priority");
  });
});

describe("sim priority - command line", () => {
  const run = async (args: string[]): Promise<{ code: number; stderr: string }> => {
    const p = Bun.spawn([process.execPath, "cmd/matrixd.ts", "sim-llm", ...args], { cwd: `${import.meta.dir}/..`, stdout: "ignore", stderr: "pipe" });
    const [code, stderr] = await Promise.all([p.exited, new Response(p.stderr).text()]);
    return { code, stderr };
  };

  test("sim priority - a bad --scheduling-policy, or priority for a kind without it, exits 2 naming the flag", async () => {
    const bad = await run(["--scheduling-policy", "lifo"]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain(`--scheduling-policy must be one of fcfs, priority, got "lifo"`);
    const tgi = await run(["--kind", "tgi", "--scheduling-policy", "priority"]);
    expect(tgi.code).toBe(2);
    expect(tgi.stderr).toContain(`--scheduling-policy: "priority" is for kinds vllm and sglang only`);
  });
});
