import { describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const ROOT = join(import.meta.dir, "..");
const BUN = join(ROOT, "node_modules", ".bin", "bun");

// A smoke test of the benchmark: it runs end to end at small sizes and its
// results are well-formed. No timing is asserted: it is a benchmark, not a test.
describe("bench", () => {
  test(
    "bench - quick run writes well-formed results and every mode writes one row per task",
    async () => {
      const out = mkdtempSync(join(tmpdir(), "matrixd-bench-test-"));
      try {
        const proc = Bun.spawn([BUN, join(ROOT, "bench", "main.ts"), "--quick", "--out", out], {
          cwd: ROOT,
          stdout: "pipe",
          stderr: "pipe",
        });
        const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
        if (code !== 0) console.error(stderr.slice(-3000));
        expect(code).toBe(0);
        expect(stdout).toContain("matrixd single node");

        const results = JSON.parse(readFileSync(join(out, "latest.json"), "utf8"));
        expect(results.scenario).toBe("coral");
        expect(typeof results.machine.cpu).toBe("string");
        expect(results.machine.cores).toBeGreaterThan(0);
        expect(results.machine.ramGiB).toBeGreaterThan(0);
        expect(typeof results.machine.commit).toBe("string");
        expect(results.fleet.ceilingTps).toBeGreaterThan(0);
        const modes = results.modes.map((m: { mode: string }) => m.mode);
        expect(modes).toEqual(["matrixd", "batch", "central", "jobqueue"]);
        for (const m of [...results.modes, ...results.sweep]) {
          expect(m.exitCode).toBe(0);
          expect(m.rows).toBe(m.seeds);
          expect(m.distinct).toBe(m.seeds);
          expect(m.genTokens).toBeGreaterThan(0);
          for (const k of ["tokensPerS", "tasksPerS", "utilization", "utilization90", "latencyP50S", "latencyP99S", "peakRssMiB", "cpuS", "hopsPerS"]) {
            expect(Number.isFinite(m[k])).toBe(true);
          }
          expect(typeof m.quality).toBe("number");
        }
        expect(results.sweep.length).toBeGreaterThanOrEqual(3);
        expect(results.scale.figures.length).toBeGreaterThan(3);
        expect(results.warnings).toEqual([]);

        expect(readFileSync(join(out, "latest.md"), "utf8")).toContain("| matrixd single node |");
        const svg = readFileSync(join(out, "latest.svg"), "utf8");
        expect(svg.startsWith("<svg")).toBe(true);
        expect(svg.trimEnd().endsWith("</svg>")).toBe(true);
      } finally {
        rmSync(out, { recursive: true, force: true });
      }
    },
    240_000,
  );
});
