import { afterAll, beforeAll, expect, test } from "bun:test";
import { copyFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { readRows, tempDir } from "./support/files.ts";
import { matrixdBin, ROOT, runProcess } from "./support/matrixd.ts";

/** The README's TypeScript workflow, configs/plugins/writer-critic.ts, run as a user runs it. */

const tmp = tempDir("matrixd-plugin-");
const EXAMPLE = join(ROOT, "configs/plugins/writer-critic.ts");
const EXAMPLE_SEEDS = join(ROOT, "configs/seeds/writer-critic.jsonl");
let bin = "";
beforeAll(async () => {
  bin = await matrixdBin();
}, 120_000);
afterAll(() => tmp.remove());

test("plugin - the writer-critic example runs with --plugin and --llm sim in the binary, from the source tree and from a copy elsewhere", async () => {
  const r = await runProcess(
    [bin, "run", "--plugin", EXAMPLE, "--workflow", "writer-critic", "--seeds", EXAMPLE_SEEDS, "--out", tmp.path("wc.jsonl"), "--llm", "sim"],
    { cwd: tmp.dir },
  );
  expect(r.stderr).toBe("");
  expect(r.code).toBe(0);
  expect(r.stdout).toContain("writer-critic: 6 rows (ok 6, failed 0");
  const rows = readRows(tmp.path("wc.jsonl"));
  expect(rows.length).toBe(6);
  for (const row of rows) {
    expect(row.status).toBe("ok");
    const roles = row.history.map((t: { role: string }) => t.role);
    // writer, critic, writer, critic...: each draft is judged, the last one approved or the rounds spent
    expect(roles).toEqual(Array.from({ length: roles.length }, (_, i) => (i % 2 === 0 ? "writer" : "critic")));
    expect(row.output.drafts).toBe(roles.length / 2);
    expect(row.output.drafts).toBeLessThanOrEqual(3);
    expect(row.output.approved || row.output.drafts === 3).toBe(true);
    expect(row.output.text).toBe(row.history.findLast((t: { role: string }) => t.role === "writer").text);
    const verdict = JSON.parse(row.history[roles.length - 1].text);
    expect(verdict.approved).toBe(row.output.approved);
    for (const t of row.history) expect(t.usage.completion).toBeGreaterThan(0);
    expect(row.metrics).toEqual({ approved: row.output.approved, drafts: row.output.drafts });
  }
  // The sim's critic sends some drafts back: both branches of the rule are taken.
  expect(rows.some((row) => row.output.drafts > 1)).toBe(true);

  // One round only, from a copy outside the source tree.
  const away = tempDir("matrixd-away-");
  try {
    copyFileSync(EXAMPLE, away.path("wc.ts"));
    writeFileSync(away.path("run.json"), JSON.stringify({ options: { rounds: 1 } }));
    const once = await runProcess(
      [bin, "run", "--plugin", "wc.ts", "--workflow", "writer-critic", "--seeds", EXAMPLE_SEEDS, "--out", "wc.jsonl", "--llm", "sim", "--config", "run.json"],
      { cwd: away.dir },
    );
    expect(once.stderr).toBe("");
    expect(once.code).toBe(0);
    const short = readRows(away.path("wc.jsonl"));
    expect(short.map((row) => row.history.length)).toEqual([2, 2, 2, 2, 2, 2]);
    expect(short.every((row) => row.status === "ok" && row.output.drafts === 1)).toBe(true);
  } finally {
    away.remove();
  }
});

