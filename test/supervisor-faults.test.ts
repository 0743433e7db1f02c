/**
 * kill -9 of each process between matrixd and its supervised server (the
 * guard, the shell around the command, the server itself): the server ends
 * with it, a fresh one takes over, the job ends with every row ok and
 * nothing of the tree outlives the run.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { coralSeeds } from "./support/seeds.ts";
import { matrixdBin } from "./support/matrixd.ts";
import { readRows, tempDir, writeLines } from "./support/files.ts";
import { waitFor } from "./support/wait.ts";
import { commandArgv } from "../src/services/guard.ts";
import { isGone, procStat } from "../src/util/proc.ts";

const tmp = tempDir();
let bin = "";
/** every process of the tree seen, by pid, with its start time (so a reused pid is not mistaken for it) */
const seen = new Map<number, string>();
beforeAll(async () => {
  bin = await matrixdBin();
}, 120_000);
afterAll(() => {
  // a failed run may leave an orphan: never let it outlive the test
  for (const pid of seen.keys()) if (alive(pid)) process.kill(pid, 9);
  tmp.remove();
});

/** The start time of a live, non-zombie process. */
function startTime(pid: number): string | undefined {
  const s = procStat(pid);
  return isGone(s) ? undefined : s?.startTime;
}

function alive(pid: number): boolean {
  const t = startTime(pid);
  return t !== undefined && t === seen.get(pid);
}

function children(pid: number): number[] {
  const out: number[] = [];
  try {
    for (const task of new Bun.Glob("*").scanSync({ cwd: `/proc/${pid}/task`, onlyFiles: false })) {
      const text = readFileSync(`/proc/${pid}/task/${task}/children`, "utf8").trim();
      if (text) out.push(...text.split(" ").map(Number));
    }
  } catch {
    // gone meanwhile
  }
  return out;
}

function cmdline(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").replaceAll("\0", " ");
  } catch {
    return "";
  }
}

interface Tree {
  guard: number;
  shell: number | undefined;
  server: number;
}

/** The guard under matrixd, the shell under it (when the command needs one) and the server. */
function tree(root: number, marker: string): Tree | undefined {
  const guard = children(root).find((p) => cmdline(p).includes("__guard"));
  if (guard === undefined) return undefined;
  let shell: number | undefined;
  let server: number | undefined;
  for (const p of children(guard)) {
    const cmd = cmdline(p);
    if (cmd.startsWith("/bin/sh ")) {
      shell = p;
      server = children(p).find((c) => cmdline(c).includes(marker));
    } else if (cmd.includes(marker)) server = p;
  }
  if (server === undefined) return undefined;
  for (const p of [guard, shell, server]) if (p !== undefined && !seen.has(p)) seen.set(p, startTime(p) ?? "");
  return { guard, shell, server };
}

async function serverAnswers(pid: number): Promise<boolean> {
  // the server's port, from its command line: it is up once /health answers
  const port = /--port (\d+)/.exec(cmdline(pid))?.[1];
  if (!port) return false;
  try {
    return (await fetch(`http://127.0.0.1:${port}/health`, { signal: AbortSignal.timeout(1_000) })).ok;
  } catch {
    return false;
  }
}

function rowCount(path: string): number {
  return existsSync(path) ? readFileSync(path, "utf8").split("\n").filter((l) => l.endsWith("}")).length : 0;
}

describe("supervisor faults", () => {
  test("supervisor faults - a plain command runs without a shell, shell syntax with one", () => {
    expect(commandArgv("vllm serve m --port 8000 --max-num-seqs=64")).toEqual(["vllm", "serve", "m", "--port", "8000", "--max-num-seqs=64"]);
    for (const c of ["cd /srv && vllm serve m", "CUDA_VISIBLE_DEVICES=0 vllm serve m", "vllm serve 'my model'", "exec vllm serve m", "sleep 30 # 8000", "vllm serve m > log"]) {
      expect(commandArgv(c)).toEqual(["/bin/sh", "-c", c]);
    }
  });

  for (const shape of [
    { name: "a command run through a shell", shell: true },
    { name: "a plain command", shell: false },
  ]) {
    test(`supervisor faults - kill -9 of the guard, the shell or the server, ${shape.name}: a fresh server, every row ok, nothing left`, async () => {
      // enough tasks for rows to be coming still after the last restart (each kill waits for a row of the fresh server)
      const n = 110;
      const id = shape.shell ? "sh" : "plain";
      const marker = `fault-${id}-${process.pid}`;
      writeLines(tmp.path(`${id}.jsonl`), coralSeeds(n, id));
      writeFileSync(tmp.path(`${id}.yaml`), "concurrency: 64\nllm:\n  retries: 20\n  backoffMs: 100\n  maxBackoffMs: 1000\n");
      const server = `${bin} sim-llm --port {port} --model ${marker} --slots 32 --time-scale 0.15`;
      // `; true` keeps the shell: it has a command left to run after the server
      const command = shape.shell ? `${server}; true` : server;
      const out = tmp.path(`${id}.out`);
      const proc = Bun.spawn(
        [bin, "run", "--workflow", "coral", "--seeds", `${id}.jsonl`, "--out", out, "--config", `${id}.yaml`, "--log-level", "info",
          "--supervise", `${marker}=${command}`],
        { cwd: tmp.dir, stdout: "pipe", stderr: "pipe" },
      );
      seen.set(proc.pid, startTime(proc.pid) ?? "");
      const stderr = new Response(proc.stderr).text();
      const stdout = new Response(proc.stdout).text();
      const killer = setTimeout(() => proc.kill(9), 150_000);
      try {
        const victims: (keyof Tree)[] = shape.shell ? ["guard", "shell", "server"] : ["guard", "server"];
        let last: Tree | undefined;
        for (const victim of victims) {
          // a server that answers and rows coming from it, then the kill
          const before = rowCount(out);
          const t = await waitFor(`a supervised server up before killing the ${victim}`, async () => {
            const t = tree(proc.pid, marker);
            return t && t.server !== last?.server && (await serverAnswers(t.server)) && rowCount(out) > before ? t : undefined;
          }, 40_000, 100);
          if (shape.shell) expect(t.shell).toBeDefined();
          else expect(t.shell).toBeUndefined();
          const pid = t[victim] as number;
          process.kill(pid, 9);
          // whatever died, the server of that tree ends with it
          await waitFor(`the server to end after kill -9 of the ${victim}`, () => !alive(t.server) || undefined, 20_000, 50);
          last = t;
        }
        expect(await proc.exited).toBe(0);
      } finally {
        clearTimeout(killer);
        if (proc.exitCode === null) proc.kill(9);
      }
      const log = await stderr;
      await stdout;
      const rows = readRows(out);
      expect(rows.length).toBe(n);
      expect(new Set(rows.map((r) => r.id)).size).toBe(n);
      expect(rows.filter((r) => r.status !== "ok").map((r) => r.error)).toEqual([]);
      expect(log).toContain("restarting the LLM server");
      await waitFor("every process of the tree to be gone", () => [...seen.keys()].every((p) => !alive(p)) || undefined, 10_000, 50);
      expect([...seen.keys()].filter(alive).map((p) => `${p} ${cmdline(p)}`)).toEqual([]);
    }, 180_000);
  }

  test("supervisor faults - a restart that finds the old port taken moves the server to a free one", async () => {
    const n = 60;
    const marker = `fault-port-${process.pid}`;
    writeLines(tmp.path("port.jsonl"), coralSeeds(n, "port"));
    writeFileSync(tmp.path("port.yaml"), "concurrency: 64\nllm:\n  retries: 20\n  backoffMs: 100\n  maxBackoffMs: 1000\n");
    const out = tmp.path("port.out");
    const proc = Bun.spawn(
      [bin, "run", "--workflow", "coral", "--seeds", "port.jsonl", "--out", out, "--config", "port.yaml", "--log-level", "info",
        "--supervise", `${marker}=${bin} sim-llm --port {port} --model ${marker} --slots 32 --time-scale 0.15`],
      { cwd: tmp.dir, stdout: "pipe", stderr: "pipe" },
    );
    seen.set(proc.pid, startTime(proc.pid) ?? "");
    const stderr = new Response(proc.stderr).text();
    void new Response(proc.stdout).text();
    const killer = setTimeout(() => proc.kill(9), 120_000);
    let squatter: Server | undefined;
    try {
      const first = await waitFor("the supervised server up", async () => {
        const t = tree(proc.pid, marker);
        return t && (await serverAnswers(t.server)) && rowCount(out) > 0 ? t : undefined;
      }, 40_000, 100);
      const port = Number(/--port (\d+)/.exec(cmdline(first.server))?.[1]);
      process.kill(first.server, 9);
      // take the port as soon as it is let go, before the restart (a second later)
      squatter = await waitFor("the old port to be free", () => new Promise<Server | undefined>((resolve) => {
        const srv = createServer();
        srv.once("error", () => resolve(undefined));
        srv.listen({ port, host: "127.0.0.1", exclusive: true }, () => resolve(srv));
      }), 5_000, 5);
      const next = await waitFor("a fresh server", async () => {
        const t = tree(proc.pid, marker);
        return t && t.server !== first.server && (await serverAnswers(t.server)) ? t : undefined;
      }, 40_000, 100);
      expect(Number(/--port (\d+)/.exec(cmdline(next.server))?.[1])).not.toBe(port);
      expect(await proc.exited).toBe(0);
    } finally {
      clearTimeout(killer);
      if (proc.exitCode === null) proc.kill(9);
      squatter?.close();
    }
    expect(await stderr).toContain("moving it to a free one");
    const rows = readRows(out);
    expect(rows.length).toBe(n);
    expect(rows.filter((r) => r.status !== "ok").map((r) => r.error)).toEqual([]);
    await waitFor("every process of the tree to be gone", () => [...seen.keys()].every((p) => !alive(p)) || undefined, 10_000, 50);
  }, 150_000);
});
