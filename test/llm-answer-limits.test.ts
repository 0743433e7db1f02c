import { afterEach, describe, expect, test } from "bun:test";
import { createLlmClient, parseLlmConfig } from "../src/llm/index.ts";
import { answerLimits } from "../src/llm/exchange.ts";
import type { LlmClient } from "../src/llm/index.ts";
import { completion, type ScriptedServer, startServer } from "./support/scripted-llm.ts";

const servers: ScriptedServer[] = [];
const clients: LlmClient[] = [];
afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
  await Promise.all(servers.splice(0).map((s) => s.stop()));
});

function client(url: string, extra: Record<string, unknown> = {}) {
  const c = createLlmClient({ endpoints: [{ url, models: ["m"] }], backoffMs: 1, maxBackoffMs: 20, ...extra });
  clients.push(c);
  return c;
}

const hello = { messages: [{ role: "user" as const, content: "hello" }], max_tokens: 100 };

/** A body of `bytes` spaces sent in small chunks, without a content-length. */
function chunked(bytes: number): Response {
  let sent = 0;
  const body = new ReadableStream<Uint8Array>({
    pull(c) {
      if (sent >= bytes) return c.close();
      const n = Math.min(64 * 1024, bytes - sent);
      sent += n;
      c.enqueue(new Uint8Array(n).fill(32));
    },
  });
  return new Response(body, { headers: { "content-type": "application/json" } });
}

describe("llm answer limits", () => {
  test("llm client - an attempt's deadline and size follow max_tokens, within the total timeout and the byte limit", () => {
    const d = parseLlmConfig({});
    expect(answerLimits(d, 512)).toEqual({ deadlineMs: 111_200, maxBytes: 1 << 20, maxTokens: 512 });
    expect(answerLimits(d, 262_144)).toEqual({ deadlineMs: 600_000, maxBytes: 4 << 20, maxTokens: 262_144 });
    expect(answerLimits(d, 10_000_000).maxBytes).toBe(8 << 20);
    expect(answerLimits(d, undefined)).toEqual({ deadlineMs: 600_000, maxBytes: 8 << 20, maxTokens: undefined });
    expect(d.idleTimeoutMs).toBe(30_000);
  });

  test("llm client - an answer over its size is cut off, whether it says its length or not, and the next answer is taken", async () => {
    let n = 0;
    const big = "x".repeat(2 << 20);
    const s = startServer(() => (++n === 1 ? completion(big) : n === 2 ? chunked(3 << 20) : completion("ok")), { models: ["m"] });
    servers.push(s);
    const c = client(s.url, { retries: 0 });
    expect(String(await c.chat(hello).catch((e: unknown) => e))).toContain(`${s.url} answered over 1 MiB (max_tokens 100): cut off at 2 MiB`);
    expect(String(await c.chat(hello).catch((e: unknown) => e))).toMatch(/answered over 1 MiB \(max_tokens 100\): cut off at 1(\.\d)? MiB/);
    expect((await c.chat(hello)).text).toBe("ok");
  });

  test("llm client - a begun answer that goes silent stalls; one that never begins times out at its deadline", async () => {
    const s = startServer(
      (_n, body) =>
        body.max_tokens === 1
          ? new Promise<Response>(() => {})
          : new Response(
              new ReadableStream<Uint8Array>({
                start(ctl) {
                  ctl.enqueue(new TextEncoder().encode("{"));
                },
              }),
            ),
      { models: ["m"] },
    );
    servers.push(s);
    const c = client(s.url, { retries: 0, idleTimeoutMs: 200, answerTimeoutMs: 300, msPerToken: 0 });
    expect(String(await c.chat(hello).catch((e: unknown) => e))).toContain(`${s.url} stalled: no byte for 200 ms after 1 bytes of the answer`);
    expect(String(await c.chat({ ...hello, max_tokens: 1 }).catch((e: unknown) => e))).toContain(`${s.url} timed out after 300 ms with no answer`);
  });

  test("llm client - timeouts are tried again twice at most, whatever the retries", async () => {
    const s = startServer(() => new Promise<Response>(() => {}), { models: ["m"] });
    servers.push(s);
    const c = client(s.url, { retries: 10, answerTimeoutMs: 100, msPerToken: 0 });
    expect(String(await c.chat(hello).catch((e: unknown) => e))).toContain("failed after 3 attempts");
    expect(s.hits).toBe(3);
  });
});
