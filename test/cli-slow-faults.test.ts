import { afterAll, describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { readRows, tempDir, writeLines } from "./support/files.ts";
import { MATRIXD, runProcess } from "./support/matrixd.ts";
import { type Reply, type ScriptedServer, startServer } from "./support/scripted-llm.ts";
import { coralSeeds } from "./support/seeds.ts";

/**
 * `matrixd run` of 20 coral seeds against real HTTP servers on 127.0.0.1
 * that misbehave slowly: one that takes a request and never answers, one
 * that trickles an answer a byte at a time forever, one that stalls after
 * a few bytes, one that answers 50 MB. Each run ends (within the test's own
 * timeout) with every row failed naming the cause, and exit code 1 (every
 * task failed).
 */

const tmp = tempDir("matrixd-slow-faults-");
const servers: ScriptedServer[] = [];
afterAll(async () => {
  await Promise.all(servers.map((s) => s.stop()));
});

/** Short limits, so that the test's runs end in seconds; the defaults are tested in llm-answer-limits. */
const LLM = { answerTimeoutMs: 1500, msPerToken: 1, idleTimeoutMs: 700, retries: 6, backoffMs: 10, maxBackoffMs: 50 };

/** Never resolves before the server stops (the client must give up). */
const never = () => new Promise<Response>(() => {});

function trickle(bytes: "forever" | number): Response {
  let sent = 0;
  let timer: ReturnType<typeof setInterval> | undefined;
  const body = new ReadableStream<Uint8Array>({
    start(c) {
      timer = setInterval(() => {
        if (bytes !== "forever" && sent >= bytes) return; // then silence, the connection kept open
        c.enqueue(new TextEncoder().encode(" "));
        sent++;
      }, 50);
    },
    cancel() {
      clearInterval(timer);
    },
  });
  return new Response(body, { headers: { "content-type": "application/json" } });
}

/** A 50 MB chat completion, made once. */
const HUGE = new TextEncoder().encode(
  JSON.stringify({ choices: [{ message: { content: "x".repeat(50 * 1024 * 1024) }, finish_reason: "stop" }], usage: { prompt_tokens: 1, completion_tokens: 1 } }),
);

function huge(): Response {
  return new Response(HUGE, { headers: { "content-type": "application/json" } });
}

async function runAgainst(name: string, reply: Reply, llm: Record<string, unknown> = LLM) {
  const s = startServer(reply, { models: ["m"] });
  servers.push(s);
  const seeds = tmp.path(`${name}-seeds.jsonl`);
  const out = tmp.path(`${name}.jsonl`);
  const config = tmp.path(`${name}.json`);
  writeLines(seeds, coralSeeds(20, name));
  writeFileSync(config, JSON.stringify({ llm, options: { maxTokens: 64 } }));
  const t0 = performance.now();
  const r = await runProcess([...MATRIXD, "run", "--workflow", "coral", "--seeds", seeds, "--out", out, "--llm", s.url, "--config", config], { timeoutMs: 100_000 });
  // its connections end with it, so that the next test's server has this process to itself
  await s.stop();
  return { ...r, rows: readRows(out), seconds: (performance.now() - t0) / 1000, server: s };
}

function expectAllFailed(r: Awaited<ReturnType<typeof runAgainst>>, cause: RegExp): void {
  if (r.code !== 1) console.error(r.stderr);
  expect(r.code).toBe(1);
  expect(r.rows.length).toBe(20);
  expect(new Set(r.rows.map((x) => x.id)).size).toBe(20);
  for (const row of r.rows) {
    expect(row.status).toBe("failed");
    expect(row.error).toMatch(cause);
  }
}

describe("cli slow faults", () => {
  test("cli - a server that takes a request and never answers: the run ends with failed rows saying it timed out", async () => {
    const r = await runAgainst("hang", never);
    expectAllFailed(r, /failed after 3 attempts: http:\/\/127\.0\.0\.1:\d+\/v1 timed out after 1564 ms with no answer/);
  }, 110_000);

  test("cli - a server that trickles an answer forever: the run ends with failed rows saying the answer was unfinished", async () => {
    const r = await runAgainst("trickle", () => trickle("forever"));
    expectAllFailed(r, /timed out after 1564 ms with the answer unfinished after \d+ bytes/);
  }, 110_000);

  test("cli - a server that stalls in the middle of an answer: failed rows say it stalled", async () => {
    const r = await runAgainst("stall", () => trickle(3), { ...LLM, answerTimeoutMs: 60_000 });
    expectAllFailed(r, /stalled: no byte for 700 ms after 3 bytes of the answer/);
  }, 110_000);

  test("cli - a 50 MB answer is cut off: failed rows name the limit, nothing stays in flight", async () => {
    // moving 50 MB to 20 connections at once takes this process a while: the deadline is not what is tested
    const r = await runAgainst("huge", huge, { ...LLM, answerTimeoutMs: 20_000 });
    expectAllFailed(r, /answered over 1 MiB \(max_tokens 64\): cut off/);
  }, 110_000);
});
