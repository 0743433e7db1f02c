import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { matrixdBin, ROOT, runProcess } from "./support/matrixd.ts";
import { readRows, tempDir } from "./support/files.ts";

const tmp = tempDir();
let bin = "";
beforeAll(async () => {
  bin = await matrixdBin();
}, 120_000);
afterAll(() => tmp.remove());

const seeds = (name: string) => join(ROOT, "configs/seeds", name);

describe("cli scenarios", () => {
  test("cli - tool-use runs from the binary with --env bwrap: one row per scenario, rewards, environments gone", async () => {
    // Sandboxes run as unprivileged uids: they must be able to reach their state folder.
    chmodSync(tmp.dir, 0o755);
    writeFileSync(tmp.path("tu.yaml"), `env:\n  stateDir: ${tmp.path("envs")}\n  capacity: 8\n`);
    const r = await runProcess(
      [bin, "run", "--workflow", "tool-use", "--seeds", seeds("tool-use.jsonl"), "--out", "tu.out", "--llm", "sim", "--env", "bwrap", "--config", "tu.yaml", "--concurrency", "16"],
      { cwd: tmp.dir, timeoutMs: 110_000 },
    );
    // Nothing on stderr but the progress lines a slow machine prints every 10 s.
    const said = r.stderr.split("\n").filter((l) => l !== "" && !/^\S+Z done \d+\/\d+ /.test(l));
    expect({ code: r.code, stderr: said }).toEqual({ code: 0, stderr: [] });
    const rows = readRows(tmp.path("tu.out"));
    expect(rows.length).toBe(60);
    expect(new Set(rows.map((x) => x.id)).size).toBe(60);
    expect(rows.filter((x) => x.status !== "ok").map((x) => x.error)).toEqual([]);
    expect(rows.every((x) => typeof x.metrics.reward === "number")).toBe(true);
    expect(r.stdout).toMatch(/reward 0\.\d+/);
    // Every environment was released: its work folder is gone.
    const left = Bun.spawnSync(["find", tmp.path("envs"), "-mindepth", "2", "-maxdepth", "2", "-type", "d"]).stdout.toString().trim();
    expect(left).toBe("");
  }, 120_000);

  test("cli - reasoning-extract runs from the binary: every document has a row, most stop early", async () => {
    const docs = readFileSync(seeds("reasoning-extract.jsonl"), "utf8").split("\n").slice(0, 400).join("\n");
    writeFileSync(tmp.path("docs.jsonl"), `${docs}\n`);
    const r = await runProcess([bin, "run", "--workflow", "reasoning-extract", "--seeds", "docs.jsonl", "--out", "re.out", "--llm", "sim"], { cwd: tmp.dir, timeoutMs: 110_000 });
    expect(r.code).toBe(0);
    const rows = readRows(tmp.path("re.out"));
    expect(rows.length).toBe(400);
    const finished = rows.filter((x) => x.status === "ok" && !x.output?.stopped_at);
    const stopped = rows.filter((x) => x.output?.stopped_at);
    expect(finished.length).toBeGreaterThan(0);
    expect(stopped.length).toBeGreaterThan(finished.length);
  }, 120_000);

  test("cli - a bad --env is a usage error naming it", async () => {
    const r = await runProcess([bin, "run", "--workflow", "tool-use", "--seeds", seeds("tool-use.jsonl"), "--out", "x.out", "--env", "vm"], { cwd: tmp.dir });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--env must be "docker" or "bwrap", got "vm"/);
  });
});
