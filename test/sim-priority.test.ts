import { afterAll, describe, expect, test } from "bun:test";
import { ConfigError } from "../src/errors.ts";
import { SeqState, SimEngine, startSim, type SeqInput, type SimSeq } from "../src/sim/index.ts";

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
