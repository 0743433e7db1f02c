import { describe, expect, test } from "bun:test";
import { readFileSync, writeFileSync } from "node:fs";
import { readRows, tempDir, writeLines } from "./support/files.ts";
import { MATRIXD, ROOT, runProcess } from "./support/matrixd.ts";

/**
 * `matrixd run --llm sim` with `sim.script` in its config: the scripted
 * replies steer a bundled workflow (coral) into branches the built-in
 * answers do not take, and a bad script stops the run before it starts.
 */

const SEEDS = readFileSync(`${ROOT}/configs/seeds/coral.jsonl`, "utf8").split("\n").slice(0, 6).map((l) => JSON.parse(l) as { id: string; question: string });

async function run(dir: string, config: Record<string, unknown>): Promise<{ code: number; stderr: string; rows: ReturnType<typeof readRows> }> {
  writeFileSync(`${dir}/run.json`, JSON.stringify(config));
  const out = `${dir}/out-${Math.random().toString(36).slice(2)}.jsonl`;
  // relative paths: the script is read from the working directory, as plugins are
  const r = await runProcess([...MATRIXD, "run", "--workflow", "coral", "--seeds", "seeds.jsonl", "--out", out, "--llm", "sim", "--config", "run.json"], { cwd: dir, timeoutMs: 60_000 });
  let rows: ReturnType<typeof readRows> = [];
  try {
    rows = readRows(out);
  } catch {
    // no dataset: the run stopped before writing one
  }
  return { code: r.code, stderr: r.stderr, rows };
}

const byId = <T extends { id: string }>(rows: T[]): T[] => [...rows].sort((a, b) => (a.id < b.id ? -1 : 1));

describe("sim script in matrixd run", () => {
  test("sim script run - scripted teacher and student make every coral dialogue agree on (B) at the fourth turn", async () => {
    const t = tempDir();
    try {
      writeLines(t.path("seeds.jsonl"), SEEDS);
      writeFileSync(
        t.path("coral.yaml"),
        [
          "# the teacher always answers (B); the student is unsure on its first turn and agrees on its second",
          '- { system: "You are a teacher", text: "Let me work it out.\\nAnswer: (B)" }',
          '- { system: "You are a student", every: 2, text: "You convinced me.\\nAnswer: (B)" }',
          '- { system: "You are a student", text: "I am not sure yet.\\nAnswer: not sure" }',
          "",
        ].join("\n"),
      );
      const plain = await run(t.dir, { sim: { decodeTps: 100_000 } });
      expect(plain.code).toBe(0);
      const scripted = await run(t.dir, { sim: { decodeTps: 100_000, script: "coral.yaml" } });
      expect(scripted.code).toBe(0);
      expect(scripted.rows).toHaveLength(SEEDS.length);
      for (const row of scripted.rows) {
        expect(row.status).toBe("ok");
        expect(row.output.answer).toBe("B");
        expect(row.output.turns).toBe(4);
        expect(row.output.dialogue.map((d: { text: string }) => d.text.split("\n").pop())).toEqual(["Answer: (B)", "Answer: not sure", "Answer: (B)", "Answer: (B)"]);
        // the extractor was not scripted: the built-in one read the scripted turns
        expect(row.history.filter((h: { role: string }) => h.role === "extractor").map((h: { text: string }) => h.text)).toEqual(["B", "not sure", "B", "B"]);
      }
      // the built-in answers never take that branch on these seeds
      expect(plain.rows.some((r) => r.output.turns === 4 && r.output.answer === "B")).toBe(false);
      // the same script again, inline in the config: the same dataset
      const rules = [
        { system: "You are a teacher", text: "Let me work it out.\nAnswer: (B)" },
        { system: "You are a student", every: 2, text: "You convinced me.\nAnswer: (B)" },
        { system: "You are a student", text: "I am not sure yet.\nAnswer: not sure" },
      ];
      const inline = await run(t.dir, { concurrency: 2, sim: { decodeTps: 100_000, slots: 2, script: rules } });
      expect(inline.code).toBe(0);
      const strip = (rows: typeof inline.rows) => byId(rows).map((r) => ({ id: r.id, output: r.output }));
      expect(strip(inline.rows)).toEqual(strip(scripted.rows));
    } finally {
      t.remove();
    }
  }, 120_000);

  test("sim script run - a scripted error fails the tasks it hits, a student that never commits ends at maxTurns", async () => {
    const t = tempDir();
    try {
      writeLines(t.path("seeds.jsonl"), SEEDS);
      const script = [
        { match: "/^Question: .*\\*/", error: 500, message: "scripted outage" },
        { system: "You are a student", text: "Answer: not sure" },
      ];
      const r = await run(t.dir, { options: { maxTurns: 6 }, llm: { retries: 0 }, sim: { decodeTps: 100_000, script } });
      expect(r.code).toBe(0);
      const rows = byId(r.rows);
      expect(rows).toHaveLength(SEEDS.length);
      for (const [i, row] of rows.entries()) {
        const seed = byId(SEEDS)[i]!;
        if (seed.question.includes("*")) {
          expect(row.status).toBe("failed");
          expect(row.error).toContain("scripted outage");
        } else {
          expect(row.status).toBe("ok");
          expect(row.output.agreement).toBe(false);
          expect(row.output.turns).toBe(6);
        }
      }
      expect(rows.some((row) => row.status === "failed")).toBe(true);
      expect(rows.some((row) => row.status === "ok")).toBe(true);
    } finally {
      t.remove();
    }
  }, 120_000);

  test("sim script run - a bad sim.script exits 2 naming the file, the rule and the key", async () => {
    const t = tempDir();
    try {
      writeLines(t.path("seeds.jsonl"), SEEDS);
      writeFileSync(t.path("bad.yaml"), '- { match: "x", text: "ok" }\n- { match: "/[/", text: "no" }\n');
      const bad = await run(t.dir, { sim: { script: "bad.yaml" } });
      expect(bad.code).toBe(2);
      expect(bad.stderr).toMatch(/sim script bad\.yaml: rule #2: "match": bad regex/);
      const inline = await run(t.dir, { sim: { script: [{ json: { ok: true }, every: -1 }] } });
      expect(inline.code).toBe(2);
      expect(inline.stderr).toMatch(/sim script \(inline\): rule #1: "every"/);
    } finally {
      t.remove();
    }
  }, 60_000);
});
