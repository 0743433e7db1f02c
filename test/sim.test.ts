import { afterAll, describe, expect, test } from "bun:test";
import { startSim, startSimFleet, type SimServer } from "../src/sim/index.ts";
import { complete, type Completion, metric, post } from "./support/sim-http.ts";
import { waitFor } from "./support/wait.ts";

/** Capacity model, metrics, errors, aborts and lifecycle over real HTTP. */

const servers: SimServer[] = [];
async function sim(opts: Parameters<typeof startSim>[0] = {}): Promise<SimServer> {
  const s = await startSim(opts);
  servers.push(s);
  return s;
}
afterAll(async () => {
  await Promise.all(servers.map((s) => s.stop()));
});

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
    expect(busy / elapsed).toBeGreaterThan(0.5);
    expect(busy / elapsed).toBeLessThanOrEqual(1.0);
  }, 20_000);

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
  }, 20_000);

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
  }, 20_000);

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
  }, 20_000);

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
  }, 20_000);

  test("sim - a client that goes away frees its slot", async () => {
    // one slot and long answers: the first request runs, the second waits
    const s = await sim({ slots: 1, decodeTps: 200, lenMedian: 2000, lenSigma: 0 });
    const body = { messages: [{ role: "user", content: "a long answer please" }] };
    const a = new AbortController();
    const b = new AbortController();
    const pa = post(s.url, body, { signal: a.signal }).catch((e: Error) => e.name);
    await waitFor("first request running", () => s.stats().running === 1);
    const pb = post(s.url, body, { signal: b.signal }).catch((e: Error) => e.name);
    await waitFor("second request waiting", () => s.stats().waiting === 1);
    expect(await metric(s.url, "vllm:num_requests_waiting")).toBe(1);
    a.abort();
    b.abort();
    expect(await pa).toBe("AbortError");
    expect(await pb).toBe("AbortError");
    await waitFor("slot freed", () => s.stats().running === 0 && s.stats().waiting === 0);
    // a stream cancelled by its reader frees its slot too
    const res = await post(s.url, { ...body, stream: true });
    const reader = res.body!.getReader();
    await reader.read();
    await waitFor("stream running", () => s.stats().running === 1);
    await reader.cancel();
    await waitFor("stream slot freed", () => s.stats().running === 0);
    expect(s.stats().aborted).toBe(3);
  }, 20_000);

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
    await waitFor("both running", () => s.stats().running === 2);
    await s.stop();
    expect([503, "closed"]).toContain(await plain);
    expect(await streamed).not.toContain("[DONE]");
    expect(s.stats()).toMatchObject({ running: 0, waiting: 0 });
    await s.stop(); // idempotent
  }, 20_000);

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
      "the server to stop",
      () =>
        fetch(`${dying.url}/health`).then(
          () => false,
          () => true,
        ),
    );
  }, 20_000);
});
