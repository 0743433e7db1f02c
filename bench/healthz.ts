/**
 * Binary start to /healthz: spawn `matrixd join` against a local nats-server
 * (JetStream, its own store on a random port) and poll /healthz every 5 ms
 * until it answers 200. Repeated; each node leaves with SIGTERM.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { track } from "./proc.ts";
import { freePort } from "../src/util/net.ts";

export interface HealthzTimes {
  /** ms from spawn to the first 200, per try */
  ms: number[];
}

export async function measureHealthz(matrixd: string[], tries: number): Promise<HealthzTimes> {
  if (!Bun.which("nats-server")) throw new Error("nats-server not found: install Debian's nats-server (make system)");
  const store = mkdtempSync(join(tmpdir(), "matrixd-bench-nats-"));
  const natsPort = await freePort();
  const nats = track(
    Bun.spawn(["nats-server", "-js", "-sd", store, "-p", String(natsPort), "-a", "127.0.0.1"], {
      stdin: "ignore",
      stdout: "ignore",
      stderr: "ignore",
    }),
  );
  const ms: number[] = [];
  try {
    await waitFor(async () => {
      try {
        const s = await Bun.connect({ hostname: "127.0.0.1", port: natsPort, socket: { data() {}, error() {} } });
        s.end();
        return true;
      } catch {
        return false;
      }
    }, 10_000);
    for (let i = 0; i < tries; i++) {
      const port = await freePort();
      const t0 = performance.now();
      const node = track(
        Bun.spawn([...matrixd, "join", "--nats", `nats://127.0.0.1:${natsPort}`, "--http", `127.0.0.1:${port}`, "--name", `bench-${i}`], {
          stdin: "ignore",
          stdout: "ignore",
          stderr: "ignore",
        }),
      );
      const up = await waitFor(async () => {
        try {
          return (await fetch(`http://127.0.0.1:${port}/healthz`)).status === 200;
        } catch {
          return false;
        }
      }, 30_000);
      if (up) ms.push(performance.now() - t0);
      node.kill("SIGTERM");
      const killer = setTimeout(() => node.kill("SIGKILL"), 10_000);
      await node.exited;
      clearTimeout(killer);
    }
  } finally {
    nats.kill("SIGTERM");
    await nats.exited;
    rmSync(store, { recursive: true, force: true });
  }
  return { ms };
}

async function waitFor(check: () => Promise<boolean>, timeoutMs: number): Promise<boolean> {
  const deadline = performance.now() + timeoutMs;
  while (performance.now() < deadline) {
    if (await check()) return true;
    await Bun.sleep(5);
  }
  return false;
}
