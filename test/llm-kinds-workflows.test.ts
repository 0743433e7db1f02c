/**
 * Every bundled workflow through `matrixd run --llm URL` against the
 * simulated server impersonating each kind: the client finds the kind out
 * itself, and every task ends ok (structured scores honoured, tool calls
 * made) with one row per task.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { SIM_KINDS, startSim, type SimServer } from "../src/sim/index.ts";
import { MATRIXD, ROOT, runProcess } from "./support/matrixd.ts";
import { readRows, tempDir, writeLines } from "./support/files.ts";

const tmp = tempDir();
const servers: SimServer[] = [];
afterAll(async () => {
  for (const s of servers) await s.stop();
  tmp.remove();
});

/** The first `n` lines of a shipped seed file, written to the test's folder. */
function seeds(workflow: string, n: number): string {
  const lines = readFileSync(join(ROOT, "configs/seeds", `${workflow}.jsonl`), "utf8").split("\n").filter(Boolean).slice(0, n);
  const path = tmp.path(`${workflow}.jsonl`);
  writeLines(path, lines.map((l) => JSON.parse(l)));
  return path;
}

const WORKFLOWS: [name: string, seeds: number, extra: string[]][] = [
  ["coral", 12, []],
  ["reasoning-extract", 40, []],
  ["tool-use", 4, ["--env", "bwrap"]],
];

describe("llm kinds with the bundled workflows", () => {
  for (const kind of SIM_KINDS) {
    test(`llm kinds - coral, reasoning-extract and tool-use run whole against a ${kind} server found out by the client`, async () => {
      const sim = await startSim({ kind, slots: 8, decodeTps: 40_000 });
      servers.push(sim);
      for (const [workflow, n, extra] of WORKFLOWS) {
        const out = tmp.path(`${kind}-${workflow}.out`);
        const r = await runProcess(
          [...MATRIXD, "run", "--workflow", workflow, "--seeds", seeds(workflow, n), "--out", out, "--llm", `${sim.url}/v1`, "--log-level", "info", ...extra],
          { cwd: tmp.dir, timeoutMs: 90_000 },
        );
        expect(r.code).toBe(0);
        const rows = readRows(out);
        expect(rows.length).toBe(n);
        expect(rows.filter((row) => row.status !== "ok").map((row) => row.error)).toEqual([]);
        expect(r.stderr).toContain(`"kind":"${kind}"`);
        if (workflow === "reasoning-extract") {
          // scores come back valid at the first try: the server honoured the constraint as sent
          const tries = rows.map((row) => row.metrics?.score_tries).filter((t) => typeof t === "number");
          expect(tries.length).toBeGreaterThan(0);
          expect(tries.every((t) => t === 1)).toBe(true);
        }
        if (workflow === "tool-use") {
          const calls = rows.flatMap((row) => row.history.flatMap((t: { toolCalls?: { id: string }[] }) => t.toolCalls ?? []));
          expect(calls.length).toBeGreaterThan(0);
          expect(new Set(calls.map((c: { id: string }) => c.id)).size).toBe(calls.length);
        }
      }
    }, 240_000);
  }
});
