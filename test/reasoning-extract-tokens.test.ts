import { afterAll, describe, expect, test } from "bun:test";
import { z } from "zod";
import { reasoningExtract } from "../plugins/reasoning-extract/index.ts";
import { FILTER_MARK, SCORE_MARK } from "../src/sim/skills/reasoning-extract.ts";
import { Accounting } from "../src/engine/accounting.ts";
import { makeJobRuntime } from "../src/engine/job.ts";
import { runJob, type RunSummary } from "../src/engine/run.ts";
import { createLlmClient } from "../src/llm/index.ts";
import { chatJson, StructuredReplyError } from "../src/llm/structured.ts";
import type { LlmClient } from "../src/llm/types.ts";
import { silentLogger } from "../src/log.ts";
import { readRows, tempDir, writeLines } from "./support/files.ts";
import { completion, type ScriptedServer, startServer } from "./support/scripted-llm.ts";

/**
 * The tokens of score replies that never fit their schema: answered, so
 * spent, and counted on the row's turn, in the row's usage and in the job's
 * totals exactly once, against a scripted server that counts what it
 * reported.
 */

const tmp = tempDir();
const servers: ScriptedServer[] = [];
const clients: LlmClient[] = [];
afterAll(async () => {
  for (const c of clients) await c.close();
  for (const s of servers) await s.stop();
  tmp.remove();
});

const DOC = "Suppose n is even; then n = 2m and hence n(n + 1) = 2m(n + 1) is even. Therefore the claim holds for every n. ".repeat(8);

/** Tokens the server reported, per stage and document. */
interface Reported {
  prompt: number;
  completion: number;
  calls: number;
}

/**
 * A server whose filter says Yes and whose score replies are prose (never
 * JSON), each with token counts of its own; `scoreError` makes the score
 * request of that number (from 1, per document) fail with HTTP 400 instead.
 */
function proseServer(scoreError?: number): { server: ScriptedServer; reported: Map<string, Reported> } {
  const reported = new Map<string, Reported>();
  const server = startServer(
    (n, body) => {
      const messages = body.messages as { role: string; content: string }[];
      const system = messages.find((m) => m.role === "system")?.content ?? "";
      const doc = messages.find((m) => m.role === "user")?.content ?? "";
      const stage = system.startsWith(SCORE_MARK) ? "score" : system.startsWith(FILTER_MARK) ? "filter" : "other";
      const key = `${stage}:${doc.slice(0, 40)}`;
      const r = reported.get(key) ?? { prompt: 0, completion: 0, calls: 0 };
      if (stage === "score" && r.calls + 1 === scoreError) return new Response(JSON.stringify({ error: { message: "bad request" } }), { status: 400 });
      const prompt = 100 + 10 * n;
      const done = 7 + n;
      reported.set(key, { prompt: r.prompt + prompt, completion: r.completion + done, calls: r.calls + 1 });
      return completion(stage === "filter" ? "Yes" : "These criteria look fine to me, all of them.", { prompt, completion: done, model: "re-large" });
    },
    { models: ["re-large"] },
  );
  servers.push(server);
  return { server, reported };
}

async function run(server: ScriptedServer, name: string, seeds: Record<string, unknown>[]): Promise<{ summary: RunSummary; rows: any[] }> {
  const llm = createLlmClient({ endpoints: [{ url: server.url, models: ["re-large"] }], retries: 0, backoffMs: 1, maxBackoffMs: 5 });
  clients.push(llm);
  const job = makeJobRuntime({ workflow: reasoningExtract, options: { scoreRetries: 2 }, seed: 1, stepRetries: 0 });
  writeLines(tmp.path(`${name}.jsonl`), seeds);
  const summary = await runJob({
    job,
    seedsPath: tmp.path(`${name}.jsonl`),
    outPath: tmp.path(`${name}.out`),
    concurrency: 4,
    trials: 1,
    llm,
    log: silentLogger,
    node: "n1",
    accounting: new Accounting(),
  });
  return { summary, rows: readRows(tmp.path(`${name}.out`)) };
}

const sum = (rs: Iterable<Reported>) => [...rs].reduce((a, r) => ({ prompt: a.prompt + r.prompt, completion: a.completion + r.completion, calls: a.calls + r.calls }), { prompt: 0, completion: 0, calls: 0 });

describe("structured replies", () => {
  test("structured - replies that never fit throw a StructuredReplyError with every try's tokens and the last reply", async () => {
    const server = startServer((n) => completion(`not json ${n}`, { prompt: 10 * n, completion: n }), { models: ["m"] });
    servers.push(server);
    const llm = createLlmClient({ endpoints: [{ url: server.url, models: ["m"] }], retries: 0 });
    clients.push(llm);
    const err = await chatJson(llm, { messages: [{ role: "user", content: "hi" }] }, z.object({ a: z.number() }), { retries: 2 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StructuredReplyError);
    const e = err as StructuredReplyError;
    expect(server.hits).toBe(3);
    expect({ tries: e.tries, usage: e.usage, last: e.result.text }).toEqual({ tries: 3, usage: { prompt: 60, completion: 6 }, last: "not json 3" });
    expect(e.message).toContain("failed its schema after 3 tries");
  });
});

describe("reasoning-extract tokens", () => {
  test("reasoning-extract - score replies that never fit are dropped with every try's tokens on the row and in the job's totals", async () => {
    const { server, reported } = proseServer();
    const docs = [
      { id: "a", text: DOC },
      { id: "b", text: `Because x > 0 and y > 0, it follows that xy > 0. ${DOC}` },
    ];
    const { summary, rows } = await run(server, "prose", docs);
    expect(rows.map((r) => [r.id, r.status, r.output.stopped_at]).sort()).toEqual([
      ["a", "ok", "score"],
      ["b", "ok", "score"],
    ]);
    for (const row of rows) {
      const doc = docs.find((d) => d.id === row.id)!.text;
      const score = reported.get(`score:${doc.slice(0, 40)}`)!;
      const filter = reported.get(`filter:${doc.slice(0, 40)}`)!;
      expect(score.calls).toBe(3);
      expect(row.output.reason).toStartWith("no valid scores");
      const turn = row.history.find((t: { role: string }) => t.role === "score");
      expect(turn.usage).toEqual({ prompt: score.prompt, completion: score.completion });
      expect(row.usage).toEqual({ prompt: score.prompt + filter.prompt, completion: score.completion + filter.completion });
    }
    const all = sum(reported.values());
    expect(all.calls).toBe(server.hits);
    // The run's totals (summed from turns) and its accounts (counted per call) agree with the server: nothing missing, nothing twice.
    expect({ prompt: summary.promptTokens, completion: summary.completionTokens }).toEqual({ prompt: all.prompt, completion: all.completion });
    expect(summary.accounting?.total).toMatchObject({ requests: all.calls, promptTokens: all.prompt, completionTokens: all.completion });
    expect(summary.accounting?.byRole.score?.requests).toBe(6);
  }, 30_000);

  test("reasoning-extract - an LLM error after refused score replies fails the task, and the row keeps the refused replies' tokens", async () => {
    const { server, reported } = proseServer(2);
    const { summary, rows } = await run(server, "outage", [{ id: "a", text: DOC }]);
    expect(rows).toHaveLength(1);
    const row = rows[0];
    expect(row.status).toBe("failed");
    expect(row.error).toStartWith("score: ");
    const score = reported.get(`score:${DOC.slice(0, 40)}`)!;
    expect(score.calls).toBe(1);
    const turn = row.history.find((t: { role: string }) => t.role === "score");
    expect(turn.usage).toEqual({ prompt: score.prompt, completion: score.completion });
    const all = sum(reported.values());
    expect(row.usage).toEqual({ prompt: all.prompt, completion: all.completion });
    expect({ prompt: summary.promptTokens, completion: summary.completionTokens }).toEqual({ prompt: all.prompt, completion: all.completion });
    expect(summary.accounting?.total).toMatchObject({ requests: all.calls, promptTokens: all.prompt, completionTokens: all.completion });
  }, 30_000);
});
