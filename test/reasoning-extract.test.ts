import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { reasoningExtract } from "../plugins/reasoning-extract/index.ts";
import { guessLanguage } from "../plugins/reasoning-extract/lang.ts";
import { FILTER_SYSTEM, lastBoxed, parseQuestion, parseYesNo, QUESTION_SYSTEM, SCORE_SYSTEM } from "../plugins/reasoning-extract/prompts.ts";
import { makeJobRuntime } from "../src/engine/job.ts";
import { runJob, type RunSummary } from "../src/engine/run.ts";
import { createLlmClient } from "../src/llm/index.ts";
import type { LlmClient } from "../src/llm/types.ts";
import { silentLogger } from "../src/log.ts";
import { startSim, type SimServer } from "../src/sim/index.ts";
import { FILTER_MARK, QUESTION_MARK, SCORE_MARK } from "../src/sim/skills/reasoning-extract.ts";
import { readRows, tempDir, writeLines } from "./support/files.ts";
import { ROOT } from "./support/matrixd.ts";

const SHIPPED = join(ROOT, "configs/seeds/reasoning-extract.jsonl");
const tmp = tempDir();
let small: SimServer;
let large: SimServer;
let llm: LlmClient;

const OPTIONS = { filterModel: "re-small", scoreModel: "re-large", questionModel: "re-large" };

beforeAll(async () => {
  // Two models, each its own server: the filter's load is far larger than the others'.
  small = await startSim({ model: "re-small", slots: 128, timeScale: 0.002 });
  large = await startSim({ model: "re-large", slots: 128, timeScale: 0.002 });
  llm = createLlmClient({
    endpoints: [
      { url: `${small.url}/v1`, models: ["re-small"], maxConcurrency: 256 },
      { url: `${large.url}/v1`, models: ["re-large"], maxConcurrency: 256 },
    ],
    retries: 2,
  });
});

afterAll(async () => {
  await llm?.close();
  await small?.stop();
  await large?.stop();
  tmp.remove();
});

async function run(seeds: string, out: string, options: Record<string, unknown> = OPTIONS): Promise<RunSummary> {
  const job = makeJobRuntime({ workflow: reasoningExtract, options, seed: 7, stepRetries: 0 });
  return runJob({ job, seedsPath: seeds, outPath: out, concurrency: 256, trials: 1, llm, log: silentLogger, node: "n1" });
}

describe("reasoning-extract", () => {
  test("reasoning-extract - language check reads the text, not only the tag", () => {
    expect(guessLanguage("The proof of the claim is short, and it follows from the lemma that we have shown.").lang).toBe("en");
    expect(guessLanguage("Der Zug ist leider nicht pünktlich, aber wir haben Zeit und das ist auch gut für die Kinder.").lang).toBe("de");
    expect(guessLanguage("Le chat dort sur la chaise dans la cuisine, et nous sommes au marché avec les enfants.").lang).toBe("fr");
    expect(guessLanguage("El perro duerme en la casa de los abuelos y las vacaciones son largas para los niños.").lang).toBe("es");
    expect(guessLanguage("的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工").lang).toBe("zh");
    expect(guessLanguage("Buy now | Cart | Login").lang).toBe("unknown");
  });

  test("reasoning-extract - replies are parsed: Yes/No, boxed answers, questions that stand alone", () => {
    expect(parseYesNo("Yes")).toBe(true);
    expect(parseYesNo(" no.")).toBe(false);
    expect(parseYesNo("The text argues carefully, so: yes")).toBe(true);
    expect(parseYesNo("maybe")).toBeUndefined();
    expect(lastBoxed("so \\boxed{\\frac{1}{2}} and not \\boxed{3")).toBe("\\frac{1}{2}");
    expect(parseQuestion("thinking...\nQuestion: What is 2 + 3?\nAnswer: 2 + 3 = \\boxed{5}")).toEqual({
      ok: true,
      question: "What is 2 + 3?",
      reference: "2 + 3 = \\boxed{5}",
      answer: "5",
    });
    expect(parseQuestion("Question: What is 2 + 3?\nAnswer: five")).toEqual({ ok: false, reason: "no \\boxed{} final answer in the reply" });
    expect(parseQuestion("Question: According to the document, what is x?\nAnswer: \\boxed{1}").ok).toBe(false);
    expect(parseQuestion("no idea")).toEqual({ ok: false, reason: "no question in the reply" });
    // The simulated model keys on the first sentence of each stage's prompt.
    expect(FILTER_SYSTEM.startsWith(FILTER_MARK)).toBe(true);
    expect(SCORE_SYSTEM.startsWith(SCORE_MARK)).toBe(true);
    expect(QUESTION_SYSTEM.startsWith(QUESTION_MARK)).toBe(true);
  });

  test("reasoning-extract - the shipped set runs end to end through both models with a paper-like funnel, the same twice", async () => {
    const before = { small: small.stats().requests, large: large.stats().requests };
    const s1 = await run(SHIPPED, tmp.path("a.out"));
    const s2 = await run(SHIPPED, tmp.path("b.out"));
    const rows = readRows(tmp.path("a.out"));
    expect(rows.length).toBeGreaterThanOrEqual(2000);
    expect(new Set(rows.map((r) => r.id)).size).toBe(rows.length);
    // A dropped document is an ok row naming where and why it stopped.
    expect(rows.filter((r) => r.status !== "ok").map((r) => r.error)).toEqual([]);
    expect(s1.failed).toBe(0);

    const m = s1.metrics;
    expect(m["lang_filter.passed"]).toBeGreaterThan(0.75);
    expect(m["lang_filter.passed"]).toBeLessThan(0.95);
    expect(m["filter.passed"]).toBeGreaterThan(0.1);
    expect(m["filter.passed"]).toBeLessThan(0.3);
    expect(m["score.passed"]).toBeGreaterThan(0.25);
    expect(m["score.passed"]).toBeLessThan(0.85);
    expect(m["question.passed"]).toBeGreaterThan(0.6);
    expect(m["question.passed"]).toBeLessThan(0.97);
    expect(m.yield).toBeGreaterThan(0.02);
    expect(m.yield).toBeLessThan(0.12);
    expect(m["lang_filter.reached"]).toBe(1);
    // Structured output: some score replies were refused and asked again.
    expect(m.score_tries).toBeGreaterThan(1);
    expect(rows.some((r) => (r.metrics.score_tries ?? 0) >= 2 && r.output.scores !== null)).toBe(true);

    const stops = new Map<string, number>();
    for (const r of rows) stops.set(String(r.output.stopped_at), (stops.get(String(r.output.stopped_at)) ?? 0) + 1);
    for (const stage of ["lang-filter", "filter", "score", "question", "null"]) expect(stops.get(stage) ?? 0).toBeGreaterThan(0);
    const reasons = rows.map((r) => String(r.output.reason));
    expect(reasons.some((x) => x.startsWith("language tag is"))).toBe(true);
    expect(reasons.some((x) => x.startsWith("text looks like"))).toBe(true);
    expect(reasons.some((x) => x.includes("below the threshold"))).toBe(true);
    expect(reasons.some((x) => x.includes("boxed"))).toBe(true);
    // replies that never fit the schema drop the document; they do not fail the task
    expect(reasons.some((x) => x.startsWith("no valid scores"))).toBe(true);

    const done = rows.find((r) => r.output.stopped_at === null);
    expect(done.output.question.length).toBeGreaterThan(10);
    expect(done.output.answer.length).toBeGreaterThan(0);
    expect(done.output.reference).toContain("\\boxed{");
    expect(done.output.overall).toBeGreaterThanOrEqual(3.5);
    // Each stage used its own model and server.
    const models = (role: string) => new Set(rows.flatMap((r) => r.history.filter((t: { role: string }) => t.role === role).map((t: { model: string }) => t.model)));
    expect([...models("filter")]).toEqual(["re-small"]);
    expect([...models("score")]).toEqual(["re-large"]);
    expect([...models("question")]).toEqual(["re-large"]);
    expect(small.stats().requests - before.small).toBe(2 * Math.round(rows.length * m["filter.reached"]!));
    expect(large.stats().requests).toBeGreaterThan(before.large);

    // Deterministic: the same rows and the same funnel on a second run.
    expect(s2.metrics).toEqual(s1.metrics);
    const strip = (r: { id: string; output: unknown; metrics: unknown }) => ({ id: r.id, output: r.output, metrics: r.metrics });
    const sort = (rs: { id: string; output: unknown; metrics: unknown }[]) => rs.map(strip).sort((x, y) => x.id.localeCompare(y.id));
    expect(sort(readRows(tmp.path("b.out")))).toEqual(sort(rows));
  }, 90_000);

  test("reasoning-extract - short, empty and mislabelled documents stop at the lang-filter", async () => {
    const en = "Suppose n is even; then n = 2m and hence n(n + 1) = 2m(n + 1) is even. Therefore the claim holds for every n. ".repeat(8);
    writeLines(tmp.path("few.jsonl"), [
      { id: "short", text: "The proof is short.", lang: "en" },
      { id: "empty", text: "" },
      { id: "tagged-de", text: en, lang: "de" },
      { id: "untagged-en", text: en },
      { id: "en-US", text: en, lang: "en-US" },
    ]);
    await run(tmp.path("few.jsonl"), tmp.path("few.out"), { ...OPTIONS, scoreRetries: 0, threshold: 1 });
    const byId = Object.fromEntries(readRows(tmp.path("few.out")).map((r) => [r.id, r]));
    expect(byId.short.output.reason).toBe("too short (4 words)");
    expect(byId.empty.output.stopped_at).toBe("lang-filter");
    expect(byId["tagged-de"].output.reason).toBe('language tag is "de"');
    for (const id of ["untagged-en", "en-US"]) {
      expect(byId[id].status).toBe("ok");
      expect(byId[id].metrics.reached_filter).toBe(true);
    }
  }, 30_000);
});
