import { afterAll, describe, expect, test } from "bun:test";
import { z } from "zod";
import { makeJobRuntime } from "../src/engine/job.ts";
import { encodeRow, MAX_ROW_CHARS } from "../src/engine/row.ts";
import { runJob } from "../src/engine/run.ts";
import { RowTooBigError } from "../src/errors.ts";
import { silentLogger } from "../src/log.ts";
import { defineWorkflow } from "../src/plugin/api.ts";
import type { OutputRow } from "../src/protocol/task.ts";
import { readRows, tempDir, writeLines } from "./support/files.ts";

const tmp = tempDir("matrixd-engine-throws-");
afterAll(() => tmp.remove());

/** An output whose encoding fails as a row of gigabytes does in Bun: RangeError "Out of memory". */
const unencodable = { toJSON: () => { throw new RangeError("Out of memory"); } };

/** Each seed's `mode` breaks a different part of a task's life. */
const breaking = defineWorkflow({
  name: "breaking",
  description: "test workflow",
  seedSchema: z.looseObject({ id: z.string(), mode: z.string() }),
  configSchema: z.strictObject({}),
  roles: {
    a: {
      kind: "cpu",
      async run(state) {
        // a plugin's bug: a step result that is not one
        if (state.seed.mode === "null-result") return null as never;
        if (state.seed.mode === "bad-turns") return { turns: 7 } as never;
        return { turns: [{ text: "a" }] };
      },
    },
  },
  start: () => ({ next: "a", vars: {} }),
  next: () => null,
  output: (state) => ({ output: state.seed.mode === "too-big" ? unencodable : { ok: true }, metrics: {} }),
});

describe("engine throws", () => {
  test("engine - every task reaches a row whatever its step or the store throws, and a row too big to store is a failed row saying so", async () => {
    const modes = ["fine", "null-result", "bad-turns", "too-big"];
    writeLines(tmp.path("s.jsonl"), modes.flatMap((mode) => [0, 1, 2].map((i) => ({ id: `${mode}-${i}`, mode }))));
    const job = makeJobRuntime({ workflow: breaking, options: {}, seed: 1, stepRetries: 0 });
    const run = runJob({ job, seedsPath: tmp.path("s.jsonl"), outPath: tmp.path("s.out"), concurrency: 4, trials: 1, log: silentLogger, node: "n1" });
    const s = await Promise.race([run, Bun.sleep(20_000).then(() => "stalled" as const)]);
    expect(s).not.toBe("stalled");
    const rows = readRows(tmp.path("s.out"));
    expect(rows.length).toBe(12);
    const byId = Object.fromEntries(rows.map((r) => [r.id, r]));
    for (const i of [0, 1, 2]) {
      expect(byId[`fine-${i}`].status).toBe("ok");
      expect(byId[`null-result-${i}`].status).toBe("failed");
      expect(byId[`null-result-${i}`].error).toStartWith("a: its step's result cannot be applied:");
      expect(byId[`bad-turns-${i}`].error).toStartWith("a: its step's result cannot be applied:");
      const big = byId[`too-big-${i}`];
      expect(big.status).toBe("failed");
      expect(big.error).toMatch(/^its row is too big to store \(about 1 bytes of text; encoding it failed: Out of memory\)$/);
      expect(big.history).toEqual([]);
      expect(big.seed).toEqual({ id: `too-big-${i}`, mode: "too-big" });
    }
    if (typeof s !== "string") {
      expect(s.ok).toBe(3);
      expect(s.failed).toBe(9);
    }
  });

  test("engine - a row over the limit is refused naming its size", () => {
    const row = { id: "x", history: [{ role: "a", text: "y".repeat(3000), at: 0, ms: 0 }] } as unknown as OutputRow;
    expect(() => encodeRow(row, 1024)).toThrow(RowTooBigError);
    expect(() => encodeRow(row, 1024)).toThrow(/^its row is too big to store \(3 KiB of JSON, over 1 KiB\)$/);
    expect(encodeRow(row)).toEndWith("\n");
    expect(MAX_ROW_CHARS).toBe(256 * 1024 * 1024);
  });
});
