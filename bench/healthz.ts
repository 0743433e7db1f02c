/**
 * Binary start to /healthz: spawn `matrixd join` against a local nats-server
 * (JetStream, its own store and port) and poll /healthz every 5 ms
 * until it answers 200. Repeated; each node leaves with SIGTERM.
 */
import { startNatsServer } from "../test/support/nats-server.ts";
import { waitFor } from "../test/support/wait.ts";
import { freePort } from "../src/util/net.ts";
import { track } from "./proc.ts";

export interface HealthzTimes {
  /** ms from spawn to the first 200, per try */
  ms: number[];
}

export async function measureHealthz(matrixd: string[], tries: number): Promise<HealthzTimes> {
  const nats = await startNatsServer();
  const ms: number[] = [];
  try {
    for (let i = 0; i < tries; i++) {
      // chosen before the node starts, so the poll can begin at the spawn
      const port = await freePort();
      const t0 = performance.now();
      const node = track(
        Bun.spawn([...matrixd, "join", "--nats", nats.url, "--http", `127.0.0.1:${port}`, "--name", `bench-${i}`], {
          stdin: "ignore",
          stdout: "ignore",
          stderr: "ignore",
        }),
      );
      const up = await waitFor(
        `node ${i}'s /healthz`,
        async () => {
          try {
            return (await fetch(`http://127.0.0.1:${port}/healthz`)).status === 200;
          } catch {
            return false;
          }
        },
        30_000,
        5,
      ).catch(() => false);
      if (up) ms.push(performance.now() - t0);
      node.kill("SIGTERM");
      const killer = setTimeout(() => node.kill("SIGKILL"), 10_000);
      await node.exited;
      clearTimeout(killer);
    }
  } finally {
    await nats.close();
  }
  return { ms };
}
