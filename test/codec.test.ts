import { describe, expect, test } from "bun:test";
import { coral } from "../plugins/coral/index.ts";
import { Engine } from "../src/engine/engine.ts";
import { makeJobRuntime } from "../src/engine/job.ts";
import { CodecError } from "../src/errors.ts";
import { decodeTask, encode, encodeTask } from "../src/protocol/codec.ts";

function sampleState() {
  const job = makeJobRuntime({ workflow: coral, options: {}, seed: 3, stepRetries: 1 });
  const s = Engine.newTask(job, "q1", 0, { id: "q1", question: "What is 1 + 1?", options: ["2", "3"], answer: "A" });
  s.history.push({
    role: "teacher",
    text: "héllo ✓ \u0000 zero byte",
    at: 1,
    ms: 2.5,
    usage: { prompt: 10, completion: 20 },
    toolCalls: [{ id: "c1", name: "f", arguments: '{"a":1}' }],
  });
  s.vars.nested = { a: [1, 2, { b: null }], big: 2 ** 40, neg: -1.5 };
  // Long non-ASCII text: the kind of turn a multilingual workflow carries.
  s.vars.long = "é漢字 ".repeat(5000);
  return s;
}

describe("codec", () => {
  test("codec - a task state survives a round trip unchanged", () => {
    const s = sampleState();
    const bytes = encodeTask(s);
    expect(bytes).toBeInstanceOf(Uint8Array);
    expect(decodeTask(bytes)).toEqual(s);
  });

  test("codec - garbage bytes are rejected with an error saying they are not CBOR", () => {
    const junk = new Uint8Array([0xff, 0xfe, 0x1c, 0x00, 0x99]);
    expect(() => decodeTask(junk)).toThrow(CodecError);
    expect(() => decodeTask(junk)).toThrow(/cannot decode task message: not valid CBOR \(5 bytes/);
    expect(() => decodeTask(new Uint8Array())).toThrow(/not valid CBOR/);
  });

  test("codec - valid CBOR of the wrong shape names the bad field", () => {
    const s = sampleState() as Record<string, unknown>;
    expect(() => decodeTask(encode({ ...s, steps: -1 }))).toThrow(/invalid task message: "steps"/);
    expect(() => decodeTask(encode({ ...s, history: [{ role: 5 }] }))).toThrow(/"history.0.role"/);
    expect(() => decodeTask(encode({ ...s, v: 2 }))).toThrow(/"v"/);
    expect(() => decodeTask(encode("hello"))).toThrow(/invalid task message: value/);
  });
});
