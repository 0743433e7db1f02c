import { describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const ROOT = join(import.meta.dir, "..");
const BUN = join(ROOT, "node_modules", ".bin", "bun");

/**
 * Run `bench/main.ts [SCENARIO] --quick` into a temporary folder and check its
 * results: every mode writes one row per task, the figures are numbers, quality
 * agrees across modes (no warnings), and the Markdown and SVG are written
 * under the scenario's file name.
 */
async function quickRun(scenario: string | undefined, name: string): Promise<Record<string, any>> {
  const out = mkdtempSync(join(tmpdir(), "matrixd-bench-test-"));
  try {
    const args = [BUN, join(ROOT, "bench", "main.ts"), ...(scenario ? [scenario] : []), "--quick", "--out", out];
    const proc = Bun.spawn(args, { cwd: ROOT, stdout: "pipe", stderr: "pipe" });
    const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
    if (code !== 0) console.error(stderr.slice(-3000));
    expect(code).toBe(0);
    expect(stdout).toContain("matrixd single node");

    const results = JSON.parse(readFileSync(join(out, `${name}.json`), "utf8"));
    expect(results.scenario).toBe(scenario ?? "coral");
    expect(typeof results.machine.cpu).toBe("string");
    expect(results.machine.cores).toBeGreaterThan(0);
    expect(results.machine.ramGiB).toBeGreaterThan(0);
    expect(typeof results.machine.commit).toBe("string");
    expect(results.fleet.ceilingTps).toBeGreaterThan(0);
    const modes = results.modes.map((m: { mode: string }) => m.mode);
    expect(modes).toEqual(["matrixd", "matrixd-fifo", "batch", "central", "jobqueue"]);
    for (const m of [...results.modes, ...results.sweep]) {
      expect(m.exitCode).toBe(0);
      expect(m.rows).toBe(m.seeds);
      expect(m.distinct).toBe(m.seeds);
      expect(m.genTokens).toBeGreaterThan(0);
      for (const k of ["tokensPerS", "tasksPerS", "utilization", "utilization90", "latencyP50S", "latencyP99S", "peakRssMiB", "cpuS", "hopsPerS", "drainS", "boundS", "cpuMicrosPerCall", "cpuMicrosPerHop"]) {
        expect(Number.isFinite(m[k])).toBe(true);
      }
      // a lower bound on the wall time, from the run's own tokens and longest task: never above it
      expect(m.boundS).toBeGreaterThan(0);
      expect(m.boundS).toBeLessThanOrEqual(m.wallS);
      expect(m.boundS).toBe(Math.max(m.boundTokensS, m.boundChainS));
      expect(m.drainS).toBeLessThan(m.wallS);
      expect(m.llmCalls).toBeGreaterThan(0);
      expect(typeof m.quality).toBe("number");
    }
    expect(results.sweep.length).toBeGreaterThanOrEqual(3);
    expect(results.warnings).toEqual([]);

    const md = readFileSync(join(out, `${name}.md`), "utf8");
    expect(md).toContain("| matrixd single node |");
    expect(md).toContain(`(${name}.svg)`);
    const svg = readFileSync(join(out, `${name}.svg`), "utf8");
    expect(svg.startsWith("<svg")).toBe(true);
    expect(svg.trimEnd().endsWith("</svg>")).toBe(true);
    return results;
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
}

// Smoke tests of the benchmark: it runs end to end at small sizes and its
// results are well-formed. No timing is asserted: it is a benchmark, not a test.
describe("bench", () => {
  test(
    "bench - quick run writes well-formed results and every mode writes one row per task",
    async () => {
      const results = await quickRun(undefined, "latest");
      expect(results.scale.figures.length).toBeGreaterThan(3);
    },
    240_000,
  );

  test(
    "bench reasoning-extract - quick run: a small and a large model by name, the same yield in every mode",
    async () => {
      const results = await quickRun("reasoning-extract", "reasoning-extract");
      expect(Object.keys(results.fleet.models)).toEqual(["small", "large"]);
      expect(results.options).toEqual({ filterModel: "small", scoreModel: "large", questionModel: "large" });
      expect(results.modes[0].qualityName).toBe("yield");
      expect(results.scale).toBeUndefined();
    },
    120_000,
  );

  test(
    "bench tool-use - quick run: every mode holds its tasks in bwrap environments, several trials of each seed",
    async () => {
      const results = await quickRun("tool-use", "tool-use");
      expect(results.envs).toEqual({ driver: "bwrap", capacity: expect.any(Number) });
      expect(results.trials).toBeGreaterThan(1);
      expect(results.tasks).toBe(results.modes[0].seeds);
      expect(results.modes[0].qualityName).toBe("reward");
      for (const m of results.modes) expect(m.ok).toBe(m.seeds);
    },
    120_000,
  );

  test(
    "bench kinds - quick run: one server per kind and concurrency, one row per task, running share of the slots in [0, 1]",
    async () => {
      const out = mkdtempSync(join(tmpdir(), "matrixd-bench-test-"));
      try {
        const proc = Bun.spawn([BUN, join(ROOT, "bench", "main.ts"), "kinds", "--quick", "--out", out], { cwd: ROOT, stdout: "pipe", stderr: "pipe" });
        const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
        if (code !== 0) console.error(stderr.slice(-3000));
        expect(code).toBe(0);
        expect(stdout).toContain("running/slots");

        const results = JSON.parse(readFileSync(join(out, "kinds.json"), "utf8"));
        expect(results.section).toBe("kinds");
        expect(results.quick).toBe(true);
        expect(results.kinds.length).toBeGreaterThan(1);
        expect(results.kinds).toContain("llamacpp");
        expect(results.cells.length).toBe(results.kinds.length * results.concurrencies.length);
        const pairs = results.cells.map((c: { kind: string; concurrency: number }) => `${c.kind}/${c.concurrency}`);
        expect(new Set(pairs).size).toBe(results.cells.length);
        for (const c of results.cells) {
          expect(results.kinds).toContain(c.kind);
          expect(results.concurrencies).toContain(c.concurrency);
          expect(c.exitCode).toBe(0);
          expect(c.tasks).toBe(results.tasks);
          expect(c.rows).toBe(c.tasks);
          expect(c.distinct).toBe(c.tasks);
          expect(c.failed).toBe(0);
          expect(c.slots).toBe(results.slots);
          expect(c.genTokens).toBeGreaterThan(0);
          for (const k of ["runningShare", "runningFull"]) {
            expect(typeof c[k]).toBe("number");
            expect(c[k]).toBeGreaterThanOrEqual(0);
            expect(c[k]).toBeLessThanOrEqual(1);
          }
          for (const k of ["tokensPerS", "utilization", "callP99S", "rowsCallP99S"]) expect(Number.isFinite(c[k])).toBe(true);
          expect(["server", "rows"]).toContain(c.callP99From);
          expect(c.waitingMean === null || c.waitingMean >= 0).toBe(true);
          expect(typeof c.healthOk).toBe("boolean");
          expect(c.healthProbes).toBeGreaterThan(0);
          expect(c.busySamples).toBeLessThanOrEqual(c.samples);
        }
        const md = readFileSync(join(out, "kinds.md"), "utf8");
        expect(md).toContain("| kind | concurrency |");
        expect(md.split("\n").filter((l) => /^\| (vllm|sglang|llamacpp|tgi|openai) \|/.test(l)).length).toBe(results.cells.length);
      } finally {
        rmSync(out, { recursive: true, force: true });
      }
    },
    120_000,
  );

  test(
    "bench million - quick run: one streamed job through three nodes, its rows followed out of NATS, each task once in the dataset",
    async () => {
      const out = mkdtempSync(join(tmpdir(), "matrixd-bench-test-"));
      try {
        const seeds = 6000;
        const args = [BUN, join(ROOT, "bench", "cluster.ts"), "--quick", "--only", "million", "--seeds", String(seeds), "--out", out];
        const proc = Bun.spawn(args, { cwd: ROOT, stdout: "pipe", stderr: "pipe" });
        const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
        if (code !== 0) console.error(stderr.slice(-3000));
        expect(code).toBe(0);
        expect(stdout).toContain("tasks/s");

        const results = JSON.parse(readFileSync(join(out, "million.json"), "utf8"));
        expect(results.quick).toBe(true);
        expect(results.nodes).toBe(3);
        const { followed, plain } = results;
        for (const job of [followed, plain]) {
          expect(job.state).toBe("done");
          expect(job.ok).toBe(job.tasks);
          expect(job.failed).toBe(0);
          expect(job.peakRssMiBPerNode.length).toBe(3);
          for (const k of ["wallS", "tasksPerSecond"]) expect(job[k]).toBeGreaterThan(0);
        }
        expect(followed.tasks).toBe(seeds);
        expect(followed.followerExit).toBe(0);
        expect(followed.dataset).toMatchObject({ lines: seeds, distinct: seeds, other: 0, exactlyOnePerTask: true });
        // the rows left NATS as the follower wrote them: what stays of a task is its marker
        expect(followed.natsBytesPerTaskEnd).toBeLessThan(followed.natsBytesPerTaskPeak);
        expect(followed.natsBytesPerTaskEnd).toBeLessThan(plain.natsBytesPerTaskEnd);
        expect(readFileSync(join(out, "million.md"), "utf8")).toContain(`# ${seeds.toLocaleString("en-US")} seeds through three nodes`);
      } finally {
        rmSync(out, { recursive: true, force: true });
      }
    },
    240_000,
  );

  test(
    "bench files - quick run: coral as a file and as a plugin on one fleet give the same dataset; CPU per step and per role step",
    async () => {
      const out = mkdtempSync(join(tmpdir(), "matrixd-bench-test-"));
      try {
        const proc = Bun.spawn([BUN, join(ROOT, "bench", "main.ts"), "files", "--quick", "--out", out], { cwd: ROOT, stdout: "pipe", stderr: "pipe" });
        const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
        if (code !== 0) console.error(stderr.slice(-3000));
        expect(code).toBe(0);
        expect(stdout).toContain("CPU ms / step");

        const results = JSON.parse(readFileSync(join(out, "files.json"), "utf8"));
        expect(results.runs.map((r: { twin: string }) => r.twin)).toEqual(["plugin", "file"]);
        expect(results.differingRows).toBe(0);
        for (const r of results.runs) {
          expect(r.exitCode).toBe(0);
          expect(r.rows).toBe(results.tasks);
          expect(r.genTokens).toBeGreaterThan(0);
          for (const k of ["tokensPerS", "utilization", "cpuS", "cpuMsPerStep"]) expect(Number.isFinite(r[k])).toBe(true);
        }
        expect(results.runs[0].quality).toBe(results.runs[1].quality);
        const roles = results.steps.map((s: { workflow: string; role: string }) => `${s.workflow}/${s.role}`);
        for (const r of ["coral/teacher", "coral/student", "coral/extractor", "coral/matcher", "reasoning-extract/score"]) expect(roles).toContain(r);
        for (const s of results.steps) expect(s.tsUs > 0 && s.fileUs > 0).toBe(true);
        expect(readFileSync(join(out, "files.md"), "utf8")).toContain("| coral.yaml (file) |");
      } finally {
        rmSync(out, { recursive: true, force: true });
      }
    },
    120_000,
  );
});
