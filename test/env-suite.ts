/**
 * The behaviour and containment tests every environment driver must pass;
 * test/env-bwrap.test.ts and test/env-docker.test.ts run them against a real
 * bwrap and a real dockerd.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { networkInterfaces } from "node:os";
import { readFile, readdir } from "node:fs/promises";
import { join } from "node:path";
import { createEnvService, parseEnvConfig, EnvError, TRUNCATED_MARKER, type EnvConfigInput, type EnvService } from "../src/env/index.ts";
import { silentLogger } from "../src/log.ts";
import { waitFor } from "./support/wait.ts";

/** per-test limit: generous, as the machine may be shared and busy */
const T = 30_000;

export interface SuiteOptions {
  driver: "docker" | "bwrap";
  /** config every service of the suite starts from */
  base: EnvConfigInput;
  /** a busybox userland is inside (wget, nc, ps...) */
  busybox: boolean;
}

/** Host processes whose command line contains `needle` (NUL separates arguments). */
export async function hostProcesses(needle: string): Promise<number[]> {
  const found: number[] = [];
  for (const pid of await readdir("/proc")) {
    if (!/^\d+$/.test(pid)) continue;
    const cmdline = await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "");
    if (cmdline.includes(needle)) found.push(Number(pid));
  }
  return found;
}

const text = (b: Uint8Array) => new TextDecoder().decode(b);

/** A run of a node in a process of its own, holding one environment (test/fixtures/env-run.ts). */
export interface HeldRun {
  /** the environment it holds */
  env: string;
  pid: number;
  /** SIGKILL it (a run that dies without releasing) and wait until it is gone */
  kill(): Promise<void>;
}

const held: HeldRun[] = [];
afterAll(async () => {
  for (const r of held.splice(0)) await r.kill();
});

/** Start a run of `config` in another process, running `cmd` in its environment without waiting. */
export async function startHeldRun(config: EnvConfigInput, cmd: string[] = []): Promise<HeldRun> {
  const proc = Bun.spawn([process.execPath, join(import.meta.dir, "fixtures/env-run.ts"), JSON.stringify(config), JSON.stringify(cmd)], {
    stdout: "pipe",
    stderr: "pipe",
  });
  const run: HeldRun = {
    env: "",
    pid: proc.pid,
    kill: async () => {
      proc.kill("SIGKILL");
      await proc.exited;
    },
  };
  held.push(run);
  const reader = proc.stdout.getReader();
  let out = "";
  while (!out.includes("\n")) {
    const { done, value } = await reader.read();
    if (done) throw new Error(`the held run exited before its environment was ready: ${await new Response(proc.stderr).text()}`);
    out += new TextDecoder().decode(value);
  }
  reader.releaseLock();
  run.env = (JSON.parse(out.slice(0, out.indexOf("\n"))) as { env: string }).env;
  return run;
}

export function envSuite(opts: SuiteOptions): { make: (over?: EnvConfigInput) => Promise<EnvService> } {
  const d = opts.driver;
  const made: EnvService[] = [];
  const make = async (over: EnvConfigInput = {}) => {
    const svc = await createEnvService(parseEnvConfig({ ...opts.base, ...over, limits: { ...opts.base.limits, ...over.limits } }), silentLogger);
    made.push(svc);
    return svc;
  };
  let envs: EnvService;
  beforeAll(async () => {
    envs = await make();
  }, T);
  afterAll(async () => {
    await Promise.all(made.map((s) => s.close()));
  }, T);

  test(`env ${d} - acquire, put, exec, get, release round trip`, async () => {
    const deep = `${"deep/".repeat(30)}leaf.txt`;
    const env = await envs.acquire("task-1", { files: { "db/accounts.json": '{"a":1}', "db/plans.json": "[]", [deep]: "leaf ü" } });
    expect(envs.inUse()).toBe(1);
    expect(envs.find(env.id)).toBe(env);
    const cat = await env.exec(["cat", "db/accounts.json"]);
    expect(cat).toMatchObject({ stdout: '{"a":1}', exitCode: 0, timedOut: false });
    expect(text(await env.get(deep))).toBe("leaf ü");
    expect((await env.exec(["cat", "db/plans.json"])).stdout).toBe("[]");
    const bytes = new Uint8Array([0, 1, 2, 254, 255, 10]);
    await env.put("bin/data.bin", bytes);
    expect(await env.get("bin/data.bin")).toEqual(bytes);
    const made = await env.exec(["sh", "-c", "pwd; id -u; echo made > out.txt"]);
    expect(made.stdout).toBe("/work\n65534\n");
    expect(text(await env.get("out.txt"))).toBe("made\n");
    await env.release();
    await env.release();
    expect(envs.inUse()).toBe(0);
    expect(envs.find(env.id)).toBeUndefined();
    await expect(env.exec(["true"])).rejects.toMatchObject({ code: "released" });
  }, T);

  test(`env ${d} - stdin, stderr, exit code and variables`, async () => {
    const env = await envs.acquire("task-2");
    try {
      const r = await env.exec(["sh", "-c", 'read line; echo "got $line $GREETING"; echo oops >&2; exit 7'], {
        stdin: "hello\n",
        env: { GREETING: "hi" },
      });
      expect(r).toMatchObject({ stdout: "got hello hi\n", stderr: "oops\n", exitCode: 7, timedOut: false });
      expect(r.killed).toBeUndefined();
      await expect(env.exec(["true"], { env: { "A=B": "x" } })).rejects.toMatchObject({ code: "failed" });
      await expect(env.exec([])).rejects.toMatchObject({ code: "failed" });
      const missing = await env.exec(["no-such-command"]);
      expect(missing.exitCode).not.toBe(0);
    } finally {
      await env.release();
    }
  }, T);

  test(`env ${d} - paths must stay inside the work folder`, async () => {
    const env = await envs.acquire("task-3");
    try {
      for (const bad of ["/etc/passwd", "../x", "a/../../x", "", "."]) {
        await expect(env.put(bad, "x")).rejects.toMatchObject({ name: "EnvError", code: "bad_path" });
        await expect(env.get(bad)).rejects.toMatchObject({ code: "bad_path" });
      }
      await expect(env.get("absent.txt")).rejects.toMatchObject({ code: "not_found" });
      // A link made inside must not let the node read or write the host's files.
      await env.exec(["sh", "-c", "ln -s /etc/passwd link; ln -s / root"]);
      // (docker reads the container's own /etc/passwd, which is not the host's)
      const leaked = await env.get("link").then(text, (e: EnvError) => e.code);
      expect(["bad_path", "not_found"].includes(leaked) || leaked !== (await Bun.file("/etc/passwd").text())).toBe(true);
      await env.put("root/tmp-escape", "x").catch(() => undefined);
      expect(await Bun.file("/tmp-escape").exists()).toBe(false);
    } finally {
      await env.release();
    }
  }, T);

  test(`env ${d} - exec time limit kills the command and all it started`, async () => {
    const env = await envs.acquire("task-4");
    try {
      const started = Date.now();
      const r = await env.exec(["sh", "-c", "sleep 311 & sleep 312"], { timeoutMs: 500 });
      expect(r).toMatchObject({ timedOut: true, killed: "time", exitCode: 124 });
      expect(Date.now() - started).toBeLessThan(5000);
      await waitFor("sleep 311 to be gone", async () => (await hostProcesses("sleep\u0000311")).length === 0);
      expect((await env.exec(["echo", "after"])).stdout).toBe("after\n");
    } finally {
      await env.release();
    }
  }, T);

  test(`env ${d} - output is capped with a marker`, async () => {
    const small = await make({ outputCap: 64 * 1024 });
    const env = await small.acquire("task-5");
    try {
      const r = await env.exec(["sh", "-c", "head -c 3000000 /dev/zero | tr '\\0' a; echo done >&2"]);
      expect(r.exitCode).toBe(0);
      expect(r.stdout.length).toBe(64 * 1024 + TRUNCATED_MARKER.length);
      expect(r.stdout.endsWith(TRUNCATED_MARKER)).toBe(true);
      expect(r.stderr).toBe("done\n");
    } finally {
      await env.release();
    }
  }, T);

  test(`env ${d} - nothing outside the work folder is writable`, async () => {
    const env = await envs.acquire("task-6");
    try {
      for (const target of ["/etc/x", "/usr/x", "/x", "/bin/x"]) {
        const r = await env.exec(["sh", "-c", `echo x > ${target}`]);
        expect(r.exitCode).not.toBe(0);
      }
      expect((await env.exec(["sh", "-c", "echo ok > /tmp/t && cat /tmp/t"])).stdout).toBe("ok\n");
    } finally {
      await env.release();
    }
  }, T);

  test(`env ${d} - no network: the host's listener sees no connection`, async () => {
    let connections = 0;
    const server = Bun.listen({ hostname: "0.0.0.0", port: 0, socket: { open: () => void connections++, data: () => undefined } });
    const env = await envs.acquire("task-7");
    try {
      const hosts = ["127.0.0.1"];
      for (const addrs of Object.values(networkInterfaces())) {
        for (const a of addrs ?? []) if (a.family === "IPv4" && !a.internal) hosts.push(a.address);
      }
      for (const host of hosts) {
        const cmds = opts.busybox
          ? [
              ["nc", "-w", "2", host, String(server.port)],
              ["wget", "-q", "-T", "2", "-O", "-", `http://${host}:${server.port}/`],
            ]
          : [["bash", "-c", `echo hi > /dev/tcp/${host}/${server.port}`]];
        for (const cmd of cmds) {
          const r = await env.exec(cmd, { stdin: "hello\n", timeoutMs: 10_000 });
          expect(r.exitCode).not.toBe(0);
        }
      }
      // The host's own connection, made after every attempt ended, is the first the listener sees.
      const probe = await Bun.connect({ hostname: "127.0.0.1", port: server.port, socket: { data: () => undefined } });
      await waitFor("the host's own probe connection", () => connections > 0);
      probe.end();
      expect(connections).toBe(1);
      const links = await env.exec(["cat", "/proc/net/dev"]);
      expect(links.stdout).toContain("lo:");
      expect(links.stdout.split("\n").filter((l) => l.includes(":") && !l.includes("lo:"))).toEqual([]);
    } finally {
      await env.release();
      server.stop(true);
    }
  }, T);

  test(`env ${d} - one task cannot see another's environment`, async () => {
    const a = await envs.acquire("task-a", { files: { "secret.txt": "alpha-secret" } });
    const b = await envs.acquire("task-b");
    try {
      await a.exec(["sh", "-c", "echo alpha-tmp > /tmp/mine"]);
      const look = await b.exec(["sh", "-c", "ls /work; cat /tmp/mine; grep -rl alpha-secret /work /tmp /etc /var /home /root /run /mnt /opt 2>/dev/null; true"]);
      expect(look.stdout).not.toContain("secret.txt");
      expect(look.stdout).not.toContain("alpha");
      await expect(b.get("secret.txt")).rejects.toMatchObject({ code: "not_found" });
      if (opts.busybox) {
        const held = a.exec(["sleep", "313"], { timeoutMs: 3000 });
        await waitFor("sleep 313 to run", async () => (await hostProcesses("sleep\u0000313")).length > 0);
        const ps = await b.exec(["ps"]);
        expect(ps.stdout).not.toContain("313");
        await held;
      }
    } finally {
      await a.release();
      await b.release();
    }
  }, T);

  test(`env ${d} - nothing outlives release, even a running exec`, async () => {
    const env = await envs.acquire("task-8");
    await env.exec(["sh", "-c", "sleep 314 >/dev/null 2>&1 &"], { timeoutMs: 5000 });
    const running = env.exec(["sleep", "315"], { timeoutMs: 60_000 }).then(
      (r) => r,
      (e: EnvError) => e,
    );
    await waitFor("sleep 315 to run", async () => (await hostProcesses("sleep\u0000315")).length > 0);
    const started = Date.now();
    await env.release();
    const outcome = await running;
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(outcome instanceof EnvError || outcome.exitCode !== 0).toBe(true);
    await waitFor("sleep 314 to be gone", async () => (await hostProcesses("sleep\u0000314")).length === 0);
    await waitFor("sleep 315 to be gone", async () => (await hostProcesses("sleep\u0000315")).length === 0);
  }, T);

  test(`env ${d} - a fork bomb is contained and the node carries on`, async () => {
    const env = await envs.acquire("task-9", { pids: 32 });
    try {
      const started = Date.now();
      const r = await env.exec(["sh", "-c", "b() { b | b & }; b; sleep 6"], { timeoutMs: 3000 });
      expect(Date.now() - started).toBeLessThan(15_000);
      expect(r.exitCode).not.toBe(0);
      expect(r.killed === "pids" || r.killed === "time").toBe(true);
    } finally {
      await env.release();
    }
    const fresh = await envs.acquire("task-9b");
    try {
      expect((await fresh.exec(["echo", "alive"])).stdout).toBe("alive\n");
    } finally {
      await fresh.release();
    }
  }, 60_000);

  test(`env ${d} - a memory hog is killed for memory and the node carries on`, async () => {
    const env = await envs.acquire("task-10", { memoryMb: 48 });
    try {
      const r = await env.exec(["dd", "if=/dev/zero", "of=/dev/null", "bs=200M", "count=1"], { timeoutMs: 15_000 });
      expect(r.exitCode).not.toBe(0);
      expect(r.killed).toBe("memory");
      expect(r.stderr).toContain("killed: memory");
      expect((await env.exec(["echo", "alive"])).stdout).toBe("alive\n");
    } finally {
      await env.release();
    }
  }, 30_000);

  test(`env ${d} - acquire waits at capacity, first come first served, then proceeds`, async () => {
    const pool = await make({ capacity: 2 });
    const a = await pool.acquire("t1");
    const b = await pool.acquire("t2");
    const order: string[] = [];
    const c = pool.acquire("t3").then((e) => (order.push("t3"), e));
    const d2 = pool.acquire("t4").then((e) => (order.push("t4"), e));
    await Bun.sleep(200);
    expect(order).toEqual([]);
    expect(pool.inUse()).toBe(2);
    await a.release();
    const third = await c;
    expect(order).toEqual(["t3"]);
    await b.release();
    const fourth = await d2;
    expect(order).toEqual(["t3", "t4"]);
    expect(pool.inUse()).toBe(2);
    await pool.releaseOwner("t3");
    await pool.releaseOwner("t4");
    expect(pool.inUse()).toBe(0);
    await expect(third.exec(["true"])).rejects.toMatchObject({ code: "released" });
    expect(fourth.owner).toBe("t4");
  }, T);

  test(`env ${d} - abort: a waiting acquire gives up, an acquired environment is released`, async () => {
    const pool = await make({ capacity: 1 });
    const first = new AbortController();
    const held = await pool.acquire("t1", {}, first.signal);
    const waiting = new AbortController();
    const pending = pool.acquire("t2", {}, waiting.signal);
    waiting.abort(new Error("task cancelled"));
    await expect(pending).rejects.toMatchObject({ code: "aborted" });
    expect(pool.inUse()).toBe(1);
    first.abort();
    await waitFor("the pool to hold nothing", () => pool.inUse() === 0);
    expect(pool.find(held.id)).toBeUndefined();
    await expect(held.exec(["true"])).rejects.toMatchObject({ code: "released" });
    const done = new AbortController();
    done.abort();
    await expect(pool.acquire("t3", {}, done.signal)).rejects.toMatchObject({ code: "aborted" });
  }, T);

  test(`env ${d} - close releases everything and refuses new requests`, async () => {
    const pool = await make({ capacity: 1 });
    const env = await pool.acquire("t1");
    const waiter = pool.acquire("t2").then(
      () => "acquired",
      (e: EnvError) => e.code,
    );
    await pool.close();
    expect(await waiter).toBe("closed");
    await expect(pool.acquire("t3")).rejects.toMatchObject({ code: "closed" });
    await expect(env.exec(["true"])).rejects.toMatchObject({ code: "released" });
    expect(pool.inUse()).toBe(0);
  }, T);

  test(`env ${d} - two runs of one node name at once: the second's start leaves the first's sandboxes working`, async () => {
    const node = `twin-${d}-${process.pid}`;
    const first = await make({ node });
    const env = await first.acquire("t");
    // An environment runs one operation at a time: the long one gets its own.
    const busy = await first.acquire("t");
    const hanging = busy.exec(["sleep", "331"], { timeoutMs: 60_000 });
    const other = await startHeldRun({ ...opts.base, node }, ["sleep", "332"]);
    await waitFor("sleep 331 and sleep 332 to run", async () => (await hostProcesses("sleep\u0000331")).length > 0 && (await hostProcesses("sleep\u0000332")).length > 0);
    await make({ node });
    expect((await env.exec(["echo", "still here"])).stdout).toBe("still here\n");
    await Bun.sleep(200);
    expect(await hostProcesses("sleep\u0000331")).not.toHaveLength(0);
    expect(await hostProcesses("sleep\u0000332")).not.toHaveLength(0);
    await busy.release();
    expect(await hanging.catch((e: EnvError) => e.code)).toBe("released");
    await env.release();
    await other.kill();
    // What the killed run left goes with the next start of the name.
    await make({ node });
    await waitFor("sleep 332 to be gone", async () => (await hostProcesses("sleep\u0000332")).length === 0);
  }, T);

  test(`env ${d} - a run that died leaves sandboxes the next run of its name removes, and a live run's stay`, async () => {
    const node = `died-${d}-${process.pid}`;
    const live = await make({ node });
    const kept = await live.acquire("t");
    const dead = await startHeldRun({ ...opts.base, node }, ["sh", "-c", "sleep 333 & sleep 334"]);
    await waitFor("sleep 333 to run", async () => (await hostProcesses("sleep\u0000333")).length > 0);
    await dead.kill();
    await make({ node });
    await waitFor("sleep 333 and sleep 334 to be gone", async () => (await hostProcesses("sleep\u0000333")).length === 0 && (await hostProcesses("sleep\u0000334")).length === 0);
    expect((await kept.exec(["echo", "ok"])).stdout).toBe("ok\n");
    await kept.release();
  }, T);

  return { make };
}
