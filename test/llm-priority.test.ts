/**
 * Request priorities end to end against the simulated server: the client
 * sends each call its task's priority where the endpoint says so, the
 * server runs the lower first (vLLM) or the higher (SGLang, sent negated),
 * the client's own queue goes by it too, and a server that refuses the
 * field (the hosted API's "Unrecognized request argument") is sent none
 * from then on, with one warning, and every call still succeeds.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { createLlmClient } from "../src/llm/index.ts";
import { startSim, type SimServer } from "../src/sim/index.ts";
import { capturingLogger } from "./support/log.ts";

const servers: SimServer[] = [];
afterAll(async () => {
  for (const s of servers) await s.stop();
});

const ask = (i: number, maxTokens = 8) => ({ messages: [{ role: "user" as const, content: `question ${i}: what is ${i} + ${i}?` }], max_tokens: maxTokens });
// 20 s apart: SGLang preempts a running request only for one more than 10 (seconds, here) ahead
const admittedAt = (i: number) => Date.UTC(2026, 0, 1) + i * 20_000;

/**
 * Calls `n` tasks at once, the youngest first in time of sending: task i
 * was admitted at admittedAt(i), so task 0 is the oldest. Returns the tasks
 * in the order their answers came back.
 */
async function finishOrder(
  url: string,
  n: number,
  config: Record<string, unknown>,
  endpoint: Record<string, unknown>,
  stepsOf: (i: number) => number = () => 0,
): Promise<number[]> {
  const llm = createLlmClient({ endpoints: [{ url, ...endpoint }], retries: 0, ...config });
  try {
    // one long call first (about 150 ms), so the server's one slot is taken and the others queue
    const first = llm.chat(ask(99, 60), { task: { admitted: admittedAt(99), steps: 0 } });
    await Bun.sleep(15);
    const order: number[] = [];
    const calls = [];
    for (let i = n - 1; i >= 0; i--) {
      calls.push(llm.chat(ask(i), { task: { admitted: admittedAt(i), steps: stepsOf(i) } }).then(() => void order.push(i)));
      await Bun.sleep(2);
    }
    await Promise.all([first, ...calls]);
    return order;
  } finally {
    await llm.close();
  }
}

describe("llm request priority", () => {
  test("llm priority - a vLLM-like server scheduling by priority runs the oldest task's call first; sent none, the same server runs them in arrival order", async () => {
    const sim = await startSim({ kind: "vllm", slots: 1, decodeTps: 400, lenMedian: 60, lenSigma: 0, schedulingPolicy: "priority" });
    servers.push(sim);
    const url = `${sim.url}/v1`;
    // the server's queue decides: told the server has 64 slots, the client lets every call through at once
    const withPriority = await finishOrder(url, 5, { priority: "admission" }, { maxConcurrency: 64, slots: 64, metrics: false, kind: "vllm", priority: true });
    expect(withPriority).toEqual([0, 1, 2, 3, 4]);
    const without = await finishOrder(url, 5, { priority: "none" }, { maxConcurrency: 64, slots: 64, metrics: false, kind: "vllm", priority: true });
    expect(without).toEqual([4, 3, 2, 1, 0]);
  }, 60_000);

  test("llm priority - by steps: the task with the most steps done first, or with fewest-steps the one with the fewest", async () => {
    const sim = await startSim({ kind: "vllm", slots: 1, decodeTps: 400, lenMedian: 60, lenSigma: 0, schedulingPolicy: "priority" });
    servers.push(sim);
    const url = `${sim.url}/v1`;
    const endpoint = { maxConcurrency: 64, slots: 64, metrics: false, kind: "vllm", priority: true };
    // steps done by tasks 0..4, in neither their admission order nor the order their calls are sent
    const steps = (i: number) => [3, 9, 1, 7, 5][i] as number;
    expect(await finishOrder(url, 5, { priority: "steps" }, endpoint, steps)).toEqual([1, 3, 4, 0, 2]);
    expect(await finishOrder(url, 5, { priority: "fewest-steps" }, endpoint, steps)).toEqual([2, 0, 4, 3, 1]);
  }, 60_000);

  test("llm priority - an SGLang-like server runs higher values first: the client sends its priorities negated, and the oldest task still goes first", async () => {
    const sim = await startSim({ kind: "sglang", slots: 1, decodeTps: 400, lenMedian: 60, lenSigma: 0, schedulingPolicy: "priority" });
    servers.push(sim);
    const order = await finishOrder(`${sim.url}/v1`, 5, { priority: "admission" }, { maxConcurrency: 64, slots: 64, metrics: false, kind: "sglang", priority: true });
    expect(order).toEqual([0, 1, 2, 3, 4]);
  }, 60_000);

  test("llm priority - the client's own queue goes by priority: one call at a time to a server that does not schedule by it", async () => {
    const sim = await startSim({ kind: "llamacpp", slots: 1, decodeTps: 400, lenMedian: 60, lenSigma: 0 });
    servers.push(sim);
    const url = `${sim.url}/v1`;
    expect(await finishOrder(url, 5, { priority: "admission" }, { maxConcurrency: 1, kind: "llamacpp" })).toEqual([0, 1, 2, 3, 4]);
    expect(await finishOrder(url, 5, { priority: "none" }, { maxConcurrency: 1, kind: "llamacpp" })).toEqual([4, 3, 2, 1, 0]);
  }, 60_000);

  test("llm priority - a server that refuses the field gets none from then on: one warning, every call answered", async () => {
    const sim = await startSim({ kind: "openai", slots: 4, decodeTps: 4000, lenMedian: 60, lenSigma: 0 });
    servers.push(sim);
    const { log, lines } = capturingLogger("warn");
    const llm = createLlmClient({ endpoints: [{ url: `${sim.url}/v1`, kind: "openai", priority: true }], retries: 0 }, { log });
    try {
      const results = await Promise.all([0, 1, 2, 3, 4, 5].map((i) => llm.chat(ask(i), { task: { admitted: admittedAt(i), steps: 0 } })));
      expect(results.every((r) => r.text.length > 0 && r.attempts === 1)).toBe(true);
      const warned = lines().filter((l) => String(l.msg).includes("refuses a request priority"));
      expect(warned.length).toBe(1);
      expect(String(warned[0]?.reason)).toContain("priority");
    } finally {
      await llm.close();
    }
  }, 60_000);
});
