import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, existsSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { startSim } from "../src/sim/index.ts";
import { coralSeeds } from "./support/seeds.ts";
import { matrixdBin, runProcess } from "./support/matrixd.ts";
import { readRows, tempDir, writeLines } from "./support/files.ts";
import { waitFor } from "./support/wait.ts";

const tmp = tempDir();
let bin = "";
beforeAll(async () => {
  bin = await matrixdBin();
  writeLines(tmp.path("seeds.jsonl"), coralSeeds(20));
  writeFileSync(tmp.path("empty.jsonl"), "");
  writeFileSync(tmp.path("blank.jsonl"), "\n  \n\n");
}, 120_000);
afterAll(() => tmp.remove());

const run = (...args: string[]) => runProcess([bin, ...args], { cwd: tmp.dir });

describe("cli", () => {
  test("cli - version prints the version, exit 0", async () => {
    const r = await run("version");
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^matrixd \d+\.\d+\.\d+/);
  });

  test("cli - the binary runs alone, away from the source tree, with a plugin file", async () => {
    const away = tempDir("matrixd-away-");
    try {
      const copy = away.path("matrixd");
      writeFileSync(copy, readFileSync(bin));
      chmodSync(copy, 0o755);
      writeFileSync(away.path("echo.js"), readFileSync(`${import.meta.dir}/fixtures/echo-workflow.js`));
      writeLines(away.path("s.jsonl"), [{ id: "a", word: "hey", bounces: 2 }]);
      const r = await runProcess([copy, "run", "--workflow", "echo", "--plugin", "echo.js", "--seeds", "s.jsonl", "--out", "o.jsonl"], { cwd: away.dir });
      expect(r.stderr).toBe("");
      expect(r.code).toBe(0);
      expect(readRows(away.path("o.jsonl"))[0].output).toEqual({ word: "hey", bounces: 2 });
    } finally {
      away.remove();
    }
  });

  test("cli - usage errors exit 2 with a one-line reason", async () => {
    const cases: [string[], RegExp][] = [
      [["frobnicate"], /unknown command "frobnicate"/],
      [["run", "--bogus"], /Unknown option '--bogus'/],
      [["run", "--seeds", "seeds.jsonl", "--out", "o.jsonl"], /--workflow is required/],
      [["run", "--workflow", "coral", "--out", "o.jsonl"], /--seeds is required/],
      [["run", "--workflow", "coral", "--seeds", "missing.jsonl", "--out", "o.jsonl"], /seed file missing.jsonl does not exist/],
      [["run", "--workflow", "nope", "--seeds", "seeds.jsonl", "--out", "o.jsonl"], /unknown workflow "nope" \(known: coral, coral-dummy/],
      [["run", "--workflow", "coral", "--seeds", "seeds.jsonl", "--out", "o.jsonl", "--llm", "gpu"], /--llm must be "sim" or an http\(s\) URL, got "gpu"/],
      [["run", "--workflow", "coral", "--seeds", "seeds.jsonl", "--out", "o.jsonl", "--concurrency", "0"], /--concurrency must be a positive integer, not 0/],
      [["run", "--workflow", "coral", "--seeds", "seeds.jsonl", "--out", "o.jsonl", "--concurrency", "-3"], /^matrixd run: --concurrency must be a positive integer, not -3$/m],
      [["run", "--workflow", "coral", "--seeds", "seeds.jsonl", "--out", "o.jsonl", "--trials", "two"], /^matrixd run: --trials must be a positive integer, not two$/m],
      [["run", "--workflow", "coral", "--seeds", "empty.jsonl", "--out", "o.jsonl"], /^matrixd run: seed file empty.jsonl is empty$/m],
      [["run", "--workflow", "coral", "--seeds", "blank.jsonl", "--out", "o.jsonl"], /^matrixd run: seed file blank.jsonl is empty$/m],
      [["submit", "--workflow", "coral", "empty.jsonl", "--server", "127.0.0.1:9"], /^matrixd submit: seed file empty.jsonl is empty$/m],
      [["submit", "--workflow", "coral", "missing.jsonl"], /^matrixd submit: seed file missing.jsonl does not exist$/m],
      [["submit", "seeds.jsonl"], /^matrixd submit: --workflow is required$/m],
      [["submit", "--workflow", "coral", "seeds.jsonl", "--server", "ftp://127.0.0.1:9"], /^matrixd submit: --server ftp:\/\/127.0.0.1:9: only http:\/\/ and https:\/\/ are served/m],
      [["submit", "--workflow", "coral", "seeds.jsonl", "--server", "http://"], /^matrixd submit: --server http:\/\/ is not a URL/m],
      [["submit", "--workflow", "coral", "seeds.jsonl", "--progress-every", "-1"], /^matrixd submit: --progress-every must be a positive integer, not -1$/m],
      [["results"], /^matrixd results: give exactly one job id \(see matrixd results --help\)$/m],
      [["cancel", "a", "b"], /^matrixd cancel: give exactly one job id \(see matrixd cancel --help\)$/m],
      [["jobs", "--server", "nope://"], /^matrixd jobs: --server nope:\/\/: only http/m],
      [["run", "--workflow", "coral", "--seeds", "seeds.jsonl", "--out", "o.jsonl", "--llm", "sim", "--log-file", "no/such/dir/log"], /^matrixd run: --log-file no\/such\/dir\/log: cannot open it/m],
    ];
    for (const [args, pattern] of cases) {
      const r = await run(...args);
      expect({ args, code: r.code }).toEqual({ args, code: 2 });
      expect(r.stderr).toMatch(pattern);
      expect(r.stderr.trim().split("\n").length).toBe(1);
    }
    expect(existsSync(tmp.path("o.jsonl"))).toBe(false);
  }, 60_000);

  test("cli - config errors exit 2 naming the file and the key", async () => {
    const cases: [string, string, RegExp][] = [
      ["typo.yaml", "workflow: coral\nconcurrncy: 5\n", /config typo\.yaml: unknown key "concurrncy"/],
      ["type.json", '{"concurrency": "many"}', /config type\.json: "concurrency": .*number/],
      ["nested.yaml", "roles:\n  teacher:\n    slot: 3\n", /unknown key "roles\.teacher\.slot"/],
      ["opts.yaml", "options:\n  maxTurn: 3\n", /options of workflow "coral": unknown key "maxTurn"/],
      ["broken.yaml", "a: [1, 2\n", /config file broken\.yaml cannot be parsed/],
      ["llm.yaml", "llm:\n  endpoints:\n    - url: 12\n", /"llm\.endpoints\.0\.url"/],
    ];
    for (const [name, text, pattern] of cases) {
      writeFileSync(tmp.path(name), text);
      const r = await run("run", "--workflow", "coral", "--seeds", "seeds.jsonl", "--out", "o.jsonl", "--config", name);
      expect({ name, code: r.code }).toEqual({ name, code: 2 });
      expect(r.stderr).toMatch(pattern);
    }
  });

  test("cli - bad seed lines become failed rows naming the line, the rest runs, exit 0", async () => {
    writeLines(tmp.path("mixed.jsonl"), [...coralSeeds(5), "not json at all", { id: "x", question: "q?", options: ["a"], answer: "A" }]);
    const r = await run("run", "--workflow", "coral-dummy", "--seeds", "mixed.jsonl", "--out", "mixed.out");
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("7 rows (ok 5, failed 2");
    expect(r.stdout).toMatch(/agreement_correctness 1\.000/);
    const rows = readRows(tmp.path("mixed.out"));
    expect(rows.find((x) => x.id === "line-6").error).toMatch(/^seed line 6: not JSON/);
    expect(rows.find((x) => x.id === "x").error).toMatch(/^seed line 7: "options": .*2/);
  });

  test("cli - kill -9 in the middle of a run, then the same command resumes: one row per task", async () => {
    writeLines(tmp.path("kill.jsonl"), coralSeeds(800, "k"));
    const args = [bin, "run", "--workflow", "coral", "--seeds", "kill.jsonl", "--out", "kill.out", "--llm", "sim", "--config", "slow.yaml", "--progress-every", "1"];
    const out = tmp.path("kill.out");
    const lines = () => (existsSync(out) ? readFileSync(out, "utf8").split("\n").length - 1 : 0);
    const first = Bun.spawn(args, { cwd: tmp.dir, stdout: "ignore", stderr: "ignore" });
    await waitFor("rows before the kill", () => lines() >= 100 || undefined, 60_000);
    first.kill(9);
    await first.exited;
    const before = lines();
    expect(before).toBeLessThan(800);
    // A torn write, as a crash in the middle of an append leaves it.
    writeFileSync(out, readFileSync(out, "utf8") + '{"id":"k9999","job":"half a ro');
    const size = statSync(out).size;
    expect(size).toBeGreaterThan(0);
    const second = await runProcess(args, { cwd: tmp.dir, timeoutMs: 90_000 });
    expect(second.code).toBe(0);
    expect(second.stdout).toMatch(new RegExp(`${before} resumed`));
    expect(second.stdout).toContain("dropped a torn last line");
    const rows = readRows(out);
    expect(rows.length).toBe(800);
    expect(new Set(rows.map((x) => x.id)).size).toBe(800);
    expect(rows.every((x) => x.status === "ok")).toBe(true);
  }, 120_000);

  test("cli - the binary keeps more than 256 LLM requests in flight at once", async () => {
    const sim = await startSim({ slots: 1000, timeScale: 0.2, lenMedian: 200 });
    try {
      writeLines(tmp.path("wide.jsonl"), coralSeeds(700, "w"));
      const proc = Bun.spawn([bin, "run", "--workflow", "coral", "--seeds", "wide.jsonl", "--out", "wide.out", "--llm", `${sim.url}/v1`, "--concurrency", "700"], { cwd: tmp.dir, stdout: "ignore", stderr: "ignore" });
      let most = 0;
      await waitFor("many requests in flight", () => {
        most = Math.max(most, sim.stats().running + sim.stats().waiting);
        return most > 400 || undefined;
      }, 30_000, 20).catch(() => undefined);
      proc.kill(9);
      await proc.exited;
      expect(most).toBeGreaterThan(400);
    } finally {
      await sim.stop();
    }
  }, 60_000);

  test("cli - progress lines are printed when not on a terminal, and a summary at the end", async () => {
    writeLines(tmp.path("p.jsonl"), coralSeeds(300, "p"));
    const r = await run("run", "--workflow", "coral", "--seeds", "p.jsonl", "--out", "p.out", "--llm", "sim", "--progress-every", "1", "--config", "slow.yaml");
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(
      /^\d{4}-\d\d-\d\dT\S+ done \d+\/300 \(ok \d+, failed 0\), in flight \d+ \| [\d.]+ tasks\/s, [\d.]+ gen tok\/s, [\d.]+ tok\/s all, [\d.]+ hops\/s \| [\d.]+% done, ETA \S+, elapsed \d+s$/m,
    );
    expect(r.stdout).toMatch(/300 rows \(ok 300, failed 0; 300 this run, 0 resumed\)/);
    expect(r.stdout).toMatch(/tokens [\d,]+ \(prompt [\d,]+, completion [\d,]+/);
    expect(r.stdout).toMatch(/agreement_correctness 0\.\d+/);
  }, 60_000);
});

writeFileSync(`${tmp.dir}/slow.yaml`, "concurrency: 64\nsim:\n  slots: 32\n  timeScale: 0.02\n");
