import { describe, expect, test } from "bun:test";
import { ConfigError } from "../src/errors.ts";
import { SeqState, SimEngine, ceilingTps, resolveSimOptions, type SeqInput, type SimSeq } from "../src/sim/index.ts";
import { evalArithmetic, solveWhatIs } from "../src/sim/skills/arith.ts";
import { lastAnswerLetter, parseQuestionBlock } from "../src/sim/skills/coral.ts";
import { countWords } from "../src/sim/hash.ts";
import { composeAnswer, prepareRequest } from "../src/sim/content.ts";
import { builtinSkills } from "../src/sim/skills/index.ts";
import type { ChatBody } from "../src/sim/request.ts";

/** An engine on a hand-driven clock: virtual ms = wall ms (timeScale 1). */
function manualEngine(o: { slots: number; stepBaseMs: number; stepPerSeqMs: number; prefillTps?: number }) {
  let now = 0;
  const ended: { seq: SimSeq; at: number; name: string }[] = [];
  const engine = new SimEngine(
    { prefillTps: 1e12, timeScale: 1, ...o },
    { now: () => now, manual: true },
  );
  const at = (t: number): void => {
    now = t;
    engine.tick();
  };
  const submit = (name: string, len: number, extra: Partial<SeqInput> = {}): SimSeq =>
    engine.submit({
      promptTokens: 1,
      prefillTokens: 0,
      len,
      onEnd: (seq) => ended.push({ seq, at: now, name }),
      ...extra,
    });
  const done = (): string[] => ended.map((e) => e.name);
  return { engine, at, submit, done, ended };
}

describe("sim engine", () => {
  test("sim engine - steps admit FIFO up to the slots and finish sequences at their exact step", () => {
    // step = 10 + 1 × running virtual ms; a arrives first and starts step 0 alone
    const m = manualEngine({ slots: 2, stepBaseMs: 10, stepPerSeqMs: 1 });
    m.submit("a", 3);
    m.submit("b", 2);
    m.submit("c", 1);
    expect(m.engine.counters()).toMatchObject({ running: 1, waiting: 2 });
    m.at(10.9);
    expect(m.engine.counters().steps).toBe(0);
    m.at(11); // step 0 ends (a: 1 token); step 1 = a + b, 11..23
    expect(m.engine.counters()).toMatchObject({ running: 2, waiting: 1, steps: 1 });
    m.at(22.9);
    expect(m.done()).toEqual([]);
    m.at(23); // step 1 ends (a: 2, b: 1); step 2 = 23..35
    expect(m.done()).toEqual([]);
    m.at(35); // a and b done; c runs alone 35..46
    expect(m.done()).toEqual(["a", "b"]);
    expect(m.engine.counters()).toMatchObject({ running: 1, waiting: 0 });
    m.at(45.9);
    expect(m.done()).toEqual(["a", "b"]);
    m.at(46);
    expect(m.done()).toEqual(["a", "b", "c"]);
    expect(m.ended.map((e) => e.at)).toEqual([35, 35, 46]);
    const c = m.engine.counters();
    expect(c.generationTokens).toBe(6);
    expect(c.steps).toBe(4);
    expect(c.running).toBe(0);
    expect(c.runningSeconds).toBeCloseTo((0.5 * 11 + 12 + 12 + 0.5 * 11) / 1000, 9);
  });

  test("sim engine - a late tick completes every step that ended, in order", () => {
    const m = manualEngine({ slots: 2, stepBaseMs: 10, stepPerSeqMs: 1 });
    m.submit("a", 3);
    m.submit("b", 2);
    m.submit("c", 1);
    m.at(1000);
    expect(m.done()).toEqual(["a", "b", "c"]);
    expect(m.engine.counters()).toMatchObject({ generationTokens: 6, steps: 4, virtualMs: 46 });
  });

  test("sim engine - an arrival joins the first step that starts after it", () => {
    const m = manualEngine({ slots: 4, stepBaseMs: 10, stepPerSeqMs: 1 });
    m.submit("a", 5); // step 0: 0..11
    m.at(5);
    m.submit("b", 1); // joins step 1: 11..23 (two running)
    expect(m.engine.counters()).toMatchObject({ running: 1, waiting: 1 });
    m.at(22.9);
    expect(m.done()).toEqual([]);
    m.at(23);
    expect(m.done()).toEqual(["b"]);
  });

  test("sim engine - idle, the clock jumps to the next arrival", () => {
    const m = manualEngine({ slots: 4, stepBaseMs: 10, stepPerSeqMs: 0 });
    m.submit("a", 1);
    m.at(10);
    expect(m.done()).toEqual(["a"]);
    m.at(100);
    m.submit("b", 2); // steps 100..110, 110..120
    m.at(119.9);
    expect(m.done()).toEqual(["a"]);
    m.at(120);
    expect(m.done()).toEqual(["a", "b"]);
  });

  test("sim engine - prefill of admitted prompts lengthens the step", () => {
    const m = manualEngine({ slots: 4, stepBaseMs: 10, stepPerSeqMs: 0, prefillTps: 1000 });
    m.submit("a", 1, { promptTokens: 80, prefillTokens: 50 });
    m.at(59.9);
    expect(m.done()).toEqual([]);
    m.at(60);
    expect(m.done()).toEqual(["a"]);
    expect(m.engine.counters().promptTokens).toBe(80);
  });

  test("sim engine - cancelling frees the slot for the next in line", () => {
    const m = manualEngine({ slots: 1, stepBaseMs: 10, stepPerSeqMs: 0 });
    const a = m.submit("a", 100);
    m.submit("b", 1);
    m.at(5);
    m.engine.cancel(a);
    expect(a.state).toBe(SeqState.CANCELLED);
    m.at(20);
    expect(m.done()).toEqual(["b"]);
    expect(m.engine.counters()).toMatchObject({ running: 0, waiting: 0 });
  });

  test("sim engine - stop drops what is queued or running", () => {
    const m = manualEngine({ slots: 1, stepBaseMs: 10, stepPerSeqMs: 0 });
    m.submit("a", 5);
    m.submit("b", 5);
    m.engine.stop();
    expect(m.ended.map((e) => e.seq.state)).toEqual([SeqState.DROPPED, SeqState.DROPPED]);
  });

  test("sim engine - the ceiling is slots over the full step, time-scaled", () => {
    const o = resolveSimOptions({});
    expect(ceilingTps(o)).toBeCloseTo((256 * 1000) / (25 + 0.15 * 256) / 0.05, 6);
    const fixed = resolveSimOptions({ slots: 32, decodeTps: 12345 });
    expect(ceilingTps(fixed)).toBeCloseTo(12345, 6);
  });

  test("sim options - bad values are refused naming the field", () => {
    expect(() => resolveSimOptions({ slots: 0 })).toThrow(ConfigError);
    expect(() => resolveSimOptions({ slots: 0 })).toThrow(/slots/);
    expect(() => resolveSimOptions({ accuracy: 1.5 })).toThrow(/accuracy/);
    expect(() => resolveSimOptions({ bogus: 1 } as never)).toThrow(/bogus/);
  });
});

describe("sim skills", () => {
  test("sim skills - arithmetic parser", () => {
    expect(solveWhatIs("What is (16 + 5) * 8? Options:")).toBe(168);
    expect(solveWhatIs("What is 41 - 7 * 2?")).toBe(27);
    expect(evalArithmetic("-(3 - 10) * -2")).toBe(-14);
    expect(evalArithmetic("2 ** 3")).toBeUndefined();
    expect(evalArithmetic("1 + ")).toBeUndefined();
    expect(evalArithmetic("(".repeat(300) + "1" + ")".repeat(300))).toBeUndefined();
    expect(evalArithmetic("99999999999 * 99999999999")).toBeUndefined();
    expect(solveWhatIs("Who is the tallest?")).toBeUndefined();
  });

  test("sim skills - question blocks and answer lines", () => {
    const block = parseQuestionBlock("Question: What is 2 + 2?\nOptions:\n(A) 3\n(B) 4\n(C) 5");
    expect(block?.options.map((o) => `${o.letter}=${o.text}`)).toEqual(["A=3", "B=4", "C=5"]);
    expect(parseQuestionBlock("no question here\n(A) x\n(B) y")).toBeUndefined();
    expect(lastAnswerLetter("Answer: (A)\nthen\nAnswer: (C)")).toBe("C");
    expect(lastAnswerLetter("Answer: not sure")).toBeUndefined();
  });

  test("sim skills - a final line longer than the drawn length comes alone", () => {
    const o = resolveSimOptions({ lenMedian: 1, lenSigma: 0 });
    const body: ChatBody = {
      messages: [{ role: "user", content: "Question: What is 1 + 1?\n(A) 2\n(B) 3" }],
    };
    const c = composeAnswer(prepareRequest(body, o.model), o, builtinSkills);
    expect(c.text).toMatch(/^Answer: (\([AB]\)|not sure)$/);
    expect(c.tokens).toBe(countWords(c.text ?? ""));
  });

  test("sim skills - stop strings cut the answer", () => {
    const o = resolveSimOptions({ lenMedian: 50, lenSigma: 0 });
    const body: ChatBody = { messages: [{ role: "user", content: "hi" }] };
    const full = composeAnswer(prepareRequest(body, o.model), o, builtinSkills).text ?? "";
    const word = full.split(" ")[10]!;
    const cut = composeAnswer(prepareRequest({ ...body, stop: [` ${word}`] }, o.model), o, builtinSkills);
    expect(cut.text).toBe(full.slice(0, full.indexOf(` ${word}`)));
    expect(cut.finishReason).toBe("stop");
    expect(cut.tokens).toBe(countWords(cut.text ?? ""));
  });
});
