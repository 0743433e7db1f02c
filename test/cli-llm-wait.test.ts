import { afterAll, afterEach, describe, expect, test } from "bun:test";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { freePort } from "../src/util/net.ts";
import { tempDir, writeLines } from "./support/files.ts";
import { MATRIXD, ROOT } from "./support/matrixd.ts";
import { type SimProcess, startSims } from "./support/sim-llm.ts";
import { coralSeeds } from "./support/seeds.ts";
import { waitFor } from "./support/wait.ts";

/**
 * `matrixd run` against its only LLM server, a real `matrixd sim-llm`
 * process, killed with kill -9 mid-run: the run waits for it (no burst of
 * failed rows) and finishes with every row ok once it is started again on
 * the same port; with the server never coming back and a short wait, the
 * rows fail naming the cause; `--retry-failed` then runs only those tasks
 * again, replacing their rows and leaving the ok rows byte for byte.
 */

const tmp = tempDir("matrixd-llm-wait-");
const N = 300;
/** slow enough that the run is well under way, and far from done, when the server dies */
const SIM = ["--time-scale", "0.3", "--len-median", "40", "--max-len", "96"];
let sims: SimProcess[] = [];
afterEach(async () => {
  await Promise.all(sims.map((s) => s.kill()));
  sims = [];
});
afterAll(() => tmp.remove());

async function sim(port: number): Promise<SimProcess> {
  const s = await startSims([...SIM, "--port", String(port)]);
  sims.push(s);
  return s;
}

// biome-ignore lint/suspicious/noExplicitAny: rows read back
type Row = any;

/** The complete rows of an output a run is still writing (a last line not yet whole is left out). */
function rowsSoFar(path: string): Row[] {
  if (!existsSync(path)) return [];
  const text = readFileSync(path, "utf8");
  return text.slice(0, text.lastIndexOf("\n") + 1).split("\n").filter((l) => l !== "").map((l) => JSON.parse(l));
}

function run(name: string, port: number, llm: Record<string, unknown>, extra: string[] = []) {
  const seeds = tmp.path(`${name}-seeds.jsonl`);
  if (!existsSync(seeds)) writeLines(seeds, coralSeeds(N, name));
  const config = tmp.path(`${name}.json`);
  writeFileSync(config, JSON.stringify({ llm: { backoffMs: 20, maxBackoffMs: 500, ...llm }, concurrency: 64 }));
  const out = tmp.path(`${name}.jsonl`);
  const proc = Bun.spawn([...MATRIXD, "run", "--workflow", "coral", "--seeds", seeds, "--out", out, "--llm", `http://127.0.0.1:${port}/v1`, "--config", config, ...extra], {
    cwd: ROOT,
    stdout: "pipe",
    stderr: "pipe",
  });
  const stderr = new Response(proc.stderr).text();
  const stdout = new Response(proc.stdout).text();
  const killer = setTimeout(() => proc.kill(9), 150_000);
  return {
    out,
    proc,
    async done() {
      const code = await proc.exited;
      clearTimeout(killer);
      return { code, stderr: await stderr, stdout: await stdout };
    },
  };
}

describe("cli llm wait", () => {
  test("cli - the only LLM server killed mid-run and started again on its port: the run waits, then every row is ok", async () => {
    const port = await freePort();
    const first = await sim(port);
    const r = run("back", port, { waitOnlineMs: 120_000 });
    await waitFor("the run to be under way", () => rowsSoFar(r.out).length >= 20, 60_000, 50);
    await first.kill();
    sims = [];
    const atKill = rowsSoFar(r.out).length;
    // down for longer than the retries of a call would last (7 attempts, backoff at most 0.5 s)
    await Bun.sleep(6000);
    const whileDown = rowsSoFar(r.out);
    expect(whileDown.filter((x) => x.status === "failed")).toEqual([]);
    expect(whileDown.length).toBeLessThan(N);
    await sim(port);
    const { code, stderr } = await r.done();
    const rows = rowsSoFar(r.out);
    if (code !== 0) console.error(stderr);
    expect(code).toBe(0);
    expect(rows.length).toBe(N);
    expect(new Set(rows.map((x) => x.id)).size).toBe(N);
    expect(rows.filter((x) => x.status !== "ok").map((x) => x.error)).toEqual([]);
    expect(atKill).toBeLessThan(N);
    // said in the log: the requests wait, and admission pauses
    expect(stderr).toContain('"event":"llm.waiting"');
    expect(stderr).toContain('"event":"job.waiting"');
  }, 160_000);

  test("cli - the server never comes back: past llm.waitOnlineMs rows fail naming the cause; --retry-failed then runs only those again", async () => {
    const port = await freePort();
    const first = await sim(port);
    const r = run("gone", port, { waitOnlineMs: 2000 });
    await waitFor("the run to be under way", () => rowsSoFar(r.out).length >= 20, 60_000, 50);
    await first.kill();
    sims = [];
    const t0 = performance.now();
    const { code, stderr } = await r.done();
    const seconds = (performance.now() - t0) / 1000;
    const rows = rowsSoFar(r.out);
    expect(rows.length).toBe(N);
    const failed = rows.filter((x) => x.status === "failed");
    const ok = rows.filter((x) => x.status === "ok");
    expect(failed.length).toBeGreaterThan(0);
    expect(ok.length).toBeGreaterThan(0);
    // some tasks were answered: not every task failed, exit 0 as documented
    expect(code).toBe(0);
    for (const f of failed) {
      expect(f.error).toMatch(/no LLM endpoint answered for 2 s \(llm\.waitOnlineMs\): http:\/\/127\.0\.0\.1:\d+\/v1 connection (refused|reset|closed)/);
    }
    expect(seconds).toBeLessThan(60);
    expect(stderr).toContain('"event":"llm.waiting"');

    // the dataset of the run above, with its failed rows, run again against a live server
    const before = readFileSync(r.out, "utf8").split("\n").filter((l) => l !== "");
    const okLines = before.filter((l) => JSON.parse(l).status === "ok");
    await sim(port);
    const again = run("gone", port, { waitOnlineMs: 2000 }, ["--retry-failed"]);
    const res = await again.done();
    if (res.code !== 0) console.error(res.stderr);
    expect(res.code).toBe(0);
    expect(res.stdout).toContain(`${failed.length} failed run again`);
    const after = readFileSync(r.out, "utf8").split("\n").filter((l) => l !== "");
    expect(after.length).toBe(N);
    const rowsAfter = after.map((l) => JSON.parse(l));
    expect(new Set(rowsAfter.map((x) => x.id)).size).toBe(N);
    expect(rowsAfter.filter((x) => x.status !== "ok").map((x) => x.error)).toEqual([]);
    // the ok rows are untouched, byte for byte, and first, in their order
    expect(after.slice(0, okLines.length)).toEqual(okLines);
    expect(existsSync(`${r.out}.retry-${again.proc.pid}`)).toBe(false);
  }, 160_000);
});
