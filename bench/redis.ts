/**
 * A real redis-server for the job-queue baseline: a random free port, its
 * own temporary folder, no persistence; stopped (and its folder removed)
 * when done.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort } from "../src/util/net.ts";
import { procStatus, track } from "./proc.ts";

export interface RedisServer {
  url: string;
  pid: number;
  /** CPU seconds and peak RSS of the server so far */
  usage(): { cpuS: number; hwmBytes: number };
  stop(): Promise<void>;
}

const BINARY = "redis-server";

export async function startRedis(): Promise<RedisServer> {
  if (!Bun.which(BINARY)) throw new Error("redis-server not found: install Debian's redis-server (make system)");
  const dir = mkdtempSync(join(tmpdir(), "matrixd-bench-redis-"));
  const port = await freePort();
  const proc = track(
    Bun.spawn(
      [BINARY, "--port", String(port), "--bind", "127.0.0.1", "--dir", dir, "--save", "", "--appendonly", "no", "--daemonize", "no"],
      { stdin: "ignore", stdout: "ignore", stderr: "inherit" },
    ),
  );
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (await ping(port)) break;
    if (proc.exitCode !== null || Date.now() > deadline) {
      proc.kill("SIGKILL");
      rmSync(dir, { recursive: true, force: true });
      throw new Error(`redis-server did not start on port ${port}`);
    }
    await Bun.sleep(50);
  }
  return {
    url: `redis://127.0.0.1:${port}`,
    pid: proc.pid,
    usage: () => procStatus(proc.pid),
    async stop() {
      proc.kill("SIGTERM");
      const timer = setTimeout(() => proc.kill("SIGKILL"), 5000);
      await proc.exited;
      clearTimeout(timer);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function ping(port: number): Promise<boolean> {
  try {
    const socket = await Bun.connect({
      hostname: "127.0.0.1",
      port,
      socket: { data() {}, error() {} },
    });
    socket.end();
    return true;
  } catch {
    return false;
  }
}
