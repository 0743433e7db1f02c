import { afterAll, beforeAll, expect, test } from "bun:test";
import { copyFileSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Row } from "./engine-cases.ts";
import { readRows, tempDir } from "./support/files.ts";
import { matrixdBin, ROOT, runProcess } from "./support/matrixd.ts";

/**
 * The README's TypeScript workflow, configs/plugins/writer-critic.ts, run
 * as a user runs it, beside its twin workflow file.
 */

const tmp = tempDir("matrixd-plugin-");
const EXAMPLE = join(ROOT, "configs/plugins/writer-critic.ts");
const YAML = join(ROOT, "configs/workflows/writer-critic.yaml");
const SEEDS = join(ROOT, "configs/seeds/writer-critic.jsonl");
let bin = "";
beforeAll(async () => {
  bin = await matrixdBin();
}, 120_000);
afterAll(() => tmp.remove());

/** What the two forms of a workflow must agree on, by task id. */
function agreed(rows: Row[]) {
  return rows
    .map((r) => ({
      id: r.id,
      status: r.status,
      error: r.error,
      output: r.output,
      metrics: r.metrics,
      usage: r.usage,
      steps: r.provenance.steps,
      history: r.history.map((t: Row) => ({ role: t.role, text: t.text, usage: t.usage })),
    }))
    .sort((a, b) => (a.id < b.id ? -1 : 1));
}

test("plugin - the writer-critic example runs with --plugin and --llm sim in the binary, gives its workflow file's rows, and runs from a copy elsewhere", async () => {
  const r = await runProcess([bin, "run", "--plugin", EXAMPLE, "--workflow", "writer-critic", "--seeds", SEEDS, "--out", "ts.jsonl", "--llm", "sim"], { cwd: tmp.dir });
  expect(r.stderr).toBe("");
  expect(r.code).toBe(0);
  expect(r.stdout).toContain("writer-critic: 8 rows (ok 8, failed 0");
  const rows = readRows(tmp.path("ts.jsonl"));
  expect(rows.length).toBe(8);
  for (const row of rows) {
    expect(row.status).toBe("ok");
    const roles = row.history.map((t: { role: string }) => t.role);
    // writer, critic, (revise,) writer, critic...: the revise step sets variables and leaves no turn
    expect(roles).toEqual(Array.from({ length: roles.length }, (_, i) => (i % 2 === 0 ? "writer" : "critic")));
    expect(row.output.rounds).toBe(roles.length / 2 - 1);
    expect(row.provenance.steps).toBe(roles.length + row.output.rounds);
    expect(row.output.approved || row.output.rounds === 3).toBe(true);
    expect(row.output.answer).toBe(row.history.findLast((t: { role: string }) => t.role === "writer").text);
    expect(JSON.parse(row.history[roles.length - 1].text).ok).toBe(row.output.approved);
    for (const t of row.history) expect(t.usage.completion).toBeGreaterThan(0);
    expect(row.metrics).toEqual({ approved: row.output.approved, rounds: row.output.rounds });
  }
  // The sim's critic sends a draft back: every branch of the rule is taken.
  expect(rows.some((row) => row.output.rounds > 0)).toBe(true);

  // The workflow file of the same workflow, on the same seeds.
  const y = await runProcess([bin, "run", "--workflow", YAML, "--seeds", SEEDS, "--out", "yaml.jsonl", "--llm", "sim"], { cwd: tmp.dir });
  expect(y.stderr).toBe("");
  expect(y.code).toBe(0);
  expect(agreed(readRows(tmp.path("yaml.jsonl")))).toEqual(agreed(rows));

  // No revision allowed, from a copy outside the source tree.
  const away = tempDir("matrixd-away-");
  try {
    copyFileSync(EXAMPLE, away.path("wc.ts"));
    writeFileSync(away.path("run.json"), JSON.stringify({ options: { maxRounds: 0 } }));
    const once = await runProcess(
      [bin, "run", "--plugin", "wc.ts", "--workflow", "writer-critic", "--seeds", SEEDS, "--out", "wc.jsonl", "--llm", "sim", "--config", "run.json"],
      { cwd: away.dir },
    );
    expect(once.stderr).toBe("");
    expect(once.code).toBe(0);
    const short = readRows(away.path("wc.jsonl"));
    expect(short.map((row) => row.history.length)).toEqual(Array(8).fill(2));
    expect(short.every((row) => row.status === "ok" && row.output.rounds === 0)).toBe(true);
    expect(short.filter((row) => row.output.approved === false).length).toBe(rows.filter((row) => row.output.rounds > 0).length);
  } finally {
    away.remove();
  }
});

test("plugin - the README shows configs/plugins/writer-critic.ts as it is", () => {
  const readme = readFileSync(join(ROOT, "README.md"), "utf8");
  const start = readme.indexOf('```ts\nimport type { Infer, PluginApi } from "../../src/plugin/api.ts";\n');
  expect(start).toBeGreaterThan(0);
  const shown = readme.slice(readme.indexOf("\n", start) + 1, readme.indexOf("```\n", start + 5));
  const file = readFileSync(EXAMPLE, "utf8");
  // The file's header comment is left out.
  expect(shown).toBe(`${file.slice(0, file.indexOf("\n") + 1)}\n${file.slice(file.indexOf("export default"))}`);
});
