import { freePort } from "../src/util/net.ts";
import { spawnSync, type Subprocess } from "bun";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** A nats-server with JetStream, started for a test on a random port with its own store. */
export interface NatsServer {
  url: string;
  port: number;
  /** the JetStream store folder (kept across restarts) */
  storeDir: string;
  /** Stop it (SIGTERM, then SIGKILL after a grace); the store is kept. */
  stop(): Promise<void>;
  /** Start it again on the same port with the same store. */
  restart(): Promise<void>;
  /** Stop it for good and remove its store. */
  close(): Promise<void>;
}

const BINARY = process.env.NATS_SERVER ?? "nats-server";

/** Whether the nats-server binary is installed, with the reason when not. */
export function natsServerMissing(): string | undefined {
  const r = spawnSync([BINARY, "--version"], { stdout: "pipe", stderr: "pipe" });
  if (r.exitCode === 0) return undefined;
  return `nats-server is not installed (looked for "${BINARY}"; install Debian's nats-server package or set NATS_SERVER)`;
}

async function waitReady(proc: Subprocess<"ignore", "pipe", "pipe">, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const decoder = new TextDecoder();
  let seen = "";
  const reader = proc.stderr.getReader();
  try {
    while (Date.now() < deadline) {
      const chunk = await Promise.race([
        reader.read(),
        new Promise<{ done: true; value: undefined }>((r) => setTimeout(() => r({ done: true, value: undefined }), deadline - Date.now())),
      ]);
      if (chunk.done) break;
      seen += decoder.decode(chunk.value);
      if (seen.includes("Server is ready")) {
        // Keep draining its log so the pipe never fills up.
        void (async () => {
          while (!(await reader.read()).done) {}
        })().catch(() => {});
        return;
      }
    }
  } catch {
    // fall through to the error below
  }
  proc.kill("SIGKILL");
  throw new Error(`nats-server did not start within ${timeoutMs} ms:\n${seen.slice(-2000)}`);
}

/**
 * Start nats-server (`-js -sd DIR -p PORT -a 127.0.0.1`). Throws a clear
 * error when the binary is missing.
 */
export async function startNatsServer(opts: { port?: number; storeDir?: string } = {}): Promise<NatsServer> {
  const missing = natsServerMissing();
  if (missing) throw new Error(missing);
  const port = opts.port ?? (await freePort());
  const storeDir = opts.storeDir ?? mkdtempSync(join(tmpdir(), "matrixd-nats-"));
  let proc: Subprocess<"ignore", "pipe", "pipe"> | undefined;

  const start = async () => {
    for (let attempt = 0; ; attempt++) {
      proc = Bun.spawn([BINARY, "-js", "-sd", storeDir, "-p", String(port), "-a", "127.0.0.1"], {
        stdin: "ignore",
        stdout: "pipe",
        stderr: "pipe",
      });
      try {
        await waitReady(proc, 15_000);
        return;
      } catch (err) {
        // The port may still be held by the previous process for a moment.
        if (attempt >= 10) throw err;
        await Bun.sleep(300);
      }
    }
  };
  const stop = async () => {
    const p = proc;
    proc = undefined;
    if (!p || p.exitCode !== null) return;
    p.kill("SIGTERM");
    const killer = setTimeout(() => p.kill("SIGKILL"), 5000);
    await p.exited;
    clearTimeout(killer);
  };
  await start();
  return {
    url: `nats://127.0.0.1:${port}`,
    port,
    storeDir,
    stop,
    restart: async () => {
      await stop();
      await start();
    },
    close: async () => {
      await stop();
      rmSync(storeDir, { recursive: true, force: true });
    },
  };
}
