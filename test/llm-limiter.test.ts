import { describe, expect, test } from "bun:test";
import { Endpoint, FAILS_TO_DOWN, REDIRECT } from "../src/llm/endpoint.ts";
import { TokenBucket } from "../src/llm/limiter.ts";
import { type Cancellable, Semaphore, sleep } from "../src/util/wait.ts";
import { normalizeBaseUrl } from "../src/llm/config.ts";
import { priorityOf } from "../src/llm/priority.ts";
import { KeyedHeap } from "../src/util/heap.ts";
import { buildChatBody, estimateTokens, parseCompletion } from "../src/llm/wire.ts";

const waiter = (): Cancellable => ({ cancel: null });

describe("llm limiter", () => {
  test("llm limiter - semaphore grants in arrival order and never above its limit", async () => {
    const s = new Semaphore(2);
    const order: number[] = [];
    expect(s.acquire(waiter())).toBeUndefined();
    expect(s.acquire(waiter())).toBeUndefined();
    const ps = [3, 4, 5].map((i) => s.acquire(waiter())?.then(() => order.push(i)));
    expect(s.waiting).toBe(3);
    s.release();
    await Promise.resolve();
    expect(order).toEqual([3]);
    expect(s.inFlight).toBe(2);
    s.setLimit(4);
    await Promise.all(ps);
    expect(order).toEqual([3, 4, 5]);
    expect(s.inFlight).toBe(4);
  });

  test("llm limiter - a lowered limit admits no one until in-flight work drops below it", async () => {
    const s = new Semaphore(3);
    for (let i = 0; i < 3; i++) s.acquire(waiter());
    s.setLimit(1);
    let granted = false;
    s.acquire(waiter())?.then(() => (granted = true));
    s.release();
    s.release();
    await Promise.resolve();
    expect(granted).toBe(false);
    s.release();
    await Promise.resolve();
    expect(granted).toBe(true);
  });

  test("llm limiter - a cancelled waiter is skipped", async () => {
    const s = new Semaphore(1);
    s.acquire(waiter());
    const a = waiter();
    const pa = s.acquire(a)?.catch((e: unknown) => e);
    const pb = s.acquire(waiter());
    a.cancel?.("gone");
    expect(await pa).toBe("gone");
    expect(s.waiting).toBe(1);
    s.release();
    await pb;
    expect(s.inFlight).toBe(1);
    expect(s.waiting).toBe(0);
  });

  test("llm limiter - waiters with a priority go first, lowest first and equal ones in arrival order, then the others; cancelled ones are skipped", async () => {
    const s = new Semaphore(1);
    expect(s.acquire(waiter())).toBeUndefined();
    const order: string[] = [];
    const wait = (name: string, priority?: number) => {
      const c = waiter();
      const p = s.acquire(c, priority)?.then(
        () => void order.push(name),
        () => void order.push(`${name}:cancelled`),
      );
      return { c, p };
    };
    wait("none-1");
    wait("p5-a", 5);
    const gone = wait("p1-gone", 1);
    wait("p5-b", 5);
    wait("p2", 2);
    wait("none-2");
    expect(s.waiting).toBe(6);
    gone.c.cancel?.("gone");
    await gone.p;
    expect(s.waiting).toBe(5);
    for (let i = 0; i < 5; i++) {
      s.release();
      await Bun.sleep(0);
    }
    expect(order).toEqual(["p1-gone:cancelled", "p2", "p5-a", "p5-b", "none-1", "none-2"]);
    expect(s.waiting).toBe(0);
    expect(s.inFlight).toBe(1);
  });

  test("llm limiter - rejectAll reaches waiters with and without a priority", async () => {
    const s = new Semaphore(1);
    s.acquire(waiter());
    const got = [s.acquire(waiter(), 3), s.acquire(waiter())].map((p) => p?.catch((e: unknown) => e));
    s.rejectAll("down");
    expect(await Promise.all(got)).toEqual(["down", "down"]);
    expect(s.waiting).toBe(0);
  });

  test("llm limiter - a keyed heap pops the lowest key first, ties in push order", () => {
    const h = new KeyedHeap<string>();
    const keys = [5, 3, 9, 3, 1, 7, 5, 0, 3];
    keys.forEach((k, i) => h.push(k, `${k}#${i}`));
    const out: string[] = [];
    while (h.size > 0) out.push(h.pop() as string);
    expect(out).toEqual(["0#7", "1#4", "3#1", "3#3", "3#8", "5#0", "5#6", "7#5", "9#2"]);
    expect(h.pop()).toBeUndefined();
  });

  test("llm limiter - request priorities: admission second from a fixed epoch, minus steps done, none", () => {
    const task = { admitted: Date.UTC(2026, 0, 1), steps: 4 };
    expect(priorityOf("admission", task)).toBe((Date.UTC(2026, 0, 1) - Date.UTC(2025, 0, 1)) / 1000);
    expect(priorityOf("admission", { admitted: task.admitted + 999, steps: 0 })).toBe(priorityOf("admission", task) as number);
    expect(priorityOf("admission", { admitted: task.admitted + 1000, steps: 0 })).toBe((priorityOf("admission", task) as number) + 1);
    expect(priorityOf("steps", task)).toBe(-4);
    expect(priorityOf("none", task)).toBeUndefined();
    expect(priorityOf("admission", undefined)).toBeUndefined();
    expect(JSON.parse(buildChatBody({ messages: [{ role: "user", content: "hi" }] }, "m", undefined, 42)).priority).toBe(42);
    expect(JSON.parse(buildChatBody({ messages: [{ role: "user", content: "hi" }] }, "m")).priority).toBeUndefined();
  });

  test("llm limiter - token bucket allows its burst then spaces requests at its rate", () => {
    const b = new TokenBucket(600, 10, 0); // 10 a second
    for (let i = 0; i < 10; i++) expect(b.take(1, 0)).toBe(0);
    expect(b.take(1, 0)).toBeCloseTo(100);
    expect(b.take(1, 0)).toBeCloseTo(200);
    // 500 ms later the debt of 2 is paid and 3 tokens are back
    expect(b.take(3, 500)).toBe(0);
    b.give(-10);
    expect(b.take(0, 500)).toBeCloseTo(1000);
  });

  test("llm limiter - sleep can be cut short", async () => {
    const c = waiter();
    const p = sleep(10_000, c).catch((e: unknown) => e);
    c.cancel?.("stop");
    expect(await p).toBe("stop");
  });
});

describe("llm endpoint state", () => {
  test("llm endpoint - goes down after repeated failures and sends its queue elsewhere", async () => {
    const ep = new Endpoint({ url: "http://x/v1", maxConcurrency: 1, kind: "auto" });
    ep.slots.acquire(waiter());
    const queued = ep.slots.acquire(waiter())?.catch((e: unknown) => e);
    for (let i = 1; i < FAILS_TO_DOWN; i++) expect(ep.onFailure(0, 60_000)).toBe(false);
    expect(ep.isDown(0)).toBe(false);
    expect(ep.onFailure(0, 60_000)).toBe(true);
    expect(await queued).toBe(REDIRECT);
    expect(ep.isDown(999)).toBe(true);
    expect(ep.isDown(1000)).toBe(false);
    // probed after the cool-down and failing again: down twice as long
    ep.onFailure(1000, 60_000);
    expect(ep.isDown(2999)).toBe(true);
    expect(ep.isDown(3000)).toBe(false);
    ep.onSuccess(5, true);
    ep.onFailure(3000, 60_000);
    expect(ep.isDown(3000)).toBe(false);
  });

  test("llm endpoint - cool-down is capped", () => {
    const ep = new Endpoint({ url: "http://x/v1", maxConcurrency: 1, kind: "auto" });
    for (let i = 0; i < 30; i++) ep.onFailure(0, 5000);
    expect(ep.isDown(4999)).toBe(true);
    expect(ep.isDown(5000)).toBe(false);
  });

  test("llm endpoint - AIMD cuts once per epoch, never below 1, and grows per window", () => {
    const ep = new Endpoint({ url: "http://x/v1", maxConcurrency: 4, kind: "auto" });
    expect(ep.onOverload(0, true)).toBe(true);
    expect(ep.slots.limit).toBe(2);
    expect(ep.onOverload(0, true)).toBe(false);
    ep.onOverload(1, true);
    ep.onOverload(2, true);
    expect(ep.slots.limit).toBe(1);
    ep.onSuccess(1, true);
    expect(ep.slots.limit).toBe(2);
    ep.onSuccess(1, true);
    expect(ep.slots.limit).toBe(2);
    ep.onSuccess(1, true);
    expect(ep.slots.limit).toBe(3);
    for (let i = 0; i < 20; i++) ep.onSuccess(1, true);
    expect(ep.slots.limit).toBe(4);
  });
});

describe("llm wire", () => {
  test("llm wire - normalises base URLs", () => {
    expect(normalizeBaseUrl("http://h:8000")).toBe("http://h:8000/v1");
    expect(normalizeBaseUrl("http://h:8000/")).toBe("http://h:8000/v1");
    expect(normalizeBaseUrl("http://h:8000/v1/")).toBe("http://h:8000/v1");
    expect(normalizeBaseUrl("https://api.example.com/openai/v1beta")).toBe("https://api.example.com/openai/v1beta");
  });

  test("llm wire - body leaves out what the request does not set", () => {
    const body = JSON.parse(buildChatBody({ messages: [{ role: "user", content: "x" }] }, undefined));
    expect(body).toEqual({ messages: [{ role: "user", content: "x" }], stream: false });
    const json = JSON.parse(buildChatBody({ messages: [], response_format: { type: "json_object" } }, "m"));
    expect(json).toEqual({ model: "m", messages: [], response_format: { type: "json_object" }, stream: false });
  });

  test("llm wire - parses completions and rejects what is not one", () => {
    const ok = parseCompletion(JSON.stringify({ choices: [{ message: { content: null }, finish_reason: "length" }] }));
    expect(ok).toEqual({ ok: true, value: { text: "", toolCalls: [], finishReason: "length", model: undefined, prompt: 0, completion: 0, reasoning: undefined, reasoningTokens: undefined } });
    const empty = parseCompletion(JSON.stringify({ choices: [] }));
    expect(empty.ok).toBe(false);
    if (!empty.ok) expect(empty.problem).toStartWith("not a chat completion (\"choices\":");
    const long = parseCompletion("x".repeat(1000));
    if (!long.ok) expect(long.problem.length).toBeLessThan(230);
    expect(long.ok).toBe(false);
  });

  test("llm wire - estimates tokens from characters and the completion budget", () => {
    expect(estimateTokens({ messages: [{ role: "user", content: "12345678" }], max_tokens: 100 })).toBe(102);
    expect(estimateTokens({ messages: [{ role: "user", content: null }] })).toBe(256);
  });
});
