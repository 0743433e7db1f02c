import { spawnSync, type Subprocess } from "bun";
import { closeSync, copyFileSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { z } from "zod";
import { freePort } from "../../src/util/net.ts";
import { waitFor } from "./wait.ts";

/** A nats-server with JetStream, started for a test on a port it picks itself, with its own store. */
export interface NatsServer {
  url: string;
  port: number;
  /** the JetStream store folder (kept across restarts) */
  storeDir: string;
  /** the process id of the server running now (undefined while stopped) */
  readonly pid: number | undefined;
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

/** The listen addresses a server writes to its ports file (`--ports_file_dir`). */
const PortsFileSchema = z.object({
  nats: z.array(z.string()).min(1),
  monitoring: z.array(z.string()).optional(),
  cluster: z.array(z.string()).optional(),
});

/** The port of the first URL in a ports-file list. */
function portOf(urls: readonly string[] | undefined, what: string): number {
  const url = urls?.[0];
  if (url === undefined) throw new Error(`the nats-server ports file names no ${what} port`);
  return Number(new URL(url).port);
}

/** The ports server `pid` chose (`-1` in its options), from the file it writes in `dir` once it listens. */
async function portsOf(dir: string, pid: number, timeoutMs = 15_000): Promise<z.infer<typeof PortsFileSchema>> {
  const name = await waitFor(`nats-server ${pid}'s ports file in ${dir}`, () => readdirSync(dir).find((f) => f.endsWith(`_${pid}.ports`)), timeoutMs);
  return PortsFileSchema.parse(JSON.parse(readFileSync(join(dir, name), "utf8")));
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
 * Start nats-server (`-js -sd DIR -a 127.0.0.1`, or without `-js` when
 * `opts.jetstream` is false) on a port it picks itself
 * (`-p -1`, read back from its ports file), or on `opts.port` when given.
 * `opts.include` names config files (an `authorization` block, say) that
 * its config includes, so a shipped one is tested as it is. Throws a clear
 * error when the binary is missing.
 */
export async function startNatsServer(
  opts: { port?: number; storeDir?: string; args?: string[]; /** false: a server without JetStream */ jetstream?: boolean; include?: string[] } = {},
): Promise<NatsServer> {
  const missing = natsServerMissing();
  if (missing) throw new Error(missing);
  const storeDir = opts.storeDir ?? mkdtempSync(join(tmpdir(), "matrixd-nats-"));
  const portsDir = mkdtempSync(join(tmpdir(), "matrixd-nats-ports-"));
  const configArgs: string[] = [];
  if (opts.include?.length) {
    // nats-server resolves an include beside the including file, so each is copied there.
    const config = join(portsDir, "server.conf");
    for (const f of opts.include) copyFileSync(f, join(portsDir, basename(f)));
    writeFileSync(config, opts.include.map((f) => `include ./${basename(f)}\n`).join(""));
    configArgs.push("-c", config);
  }
  let port = opts.port;
  let proc: Subprocess<"ignore", "pipe", "pipe"> | undefined;

  const start = async (): Promise<number> => {
    for (let attempt = 0; ; attempt++) {
      const listen = port === undefined ? ["-p", "-1", "--ports_file_dir", portsDir] : ["-p", String(port)];
      const js = opts.jetstream === false ? [] : ["-js", "-sd", storeDir];
      proc = Bun.spawn([BINARY, ...configArgs, ...js, ...listen, "-a", "127.0.0.1", ...(opts.args ?? [])], {
        stdin: "ignore",
        stdout: "pipe",
        stderr: "pipe",
      });
      try {
        await waitReady(proc, 15_000);
        port ??= portOf((await portsOf(portsDir, proc.pid)).nats, "client");
        return port;
      } catch (err) {
        // A restart reuses the port, which the previous process may still hold for a moment.
        if (attempt >= 10) throw err;
        proc.kill("SIGKILL");
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
  // Known once the first start has listened: a restart must come back on it, where the clients reconnect.
  const chosen = await start();
  return {
    url: `nats://127.0.0.1:${chosen}`,
    port: chosen,
    storeDir,
    get pid() {
      return proc?.pid;
    },
    stop,
    restart: async () => {
      await stop();
      await start();
    },
    close: async () => {
      await stop();
      rmSync(storeDir, { recursive: true, force: true });
      rmSync(portsDir, { recursive: true, force: true });
    },
  };
}

/** One server of a test NATS cluster. */
export interface ClusterMember {
  /** its `server_name` */
  name: string;
  url: string;
  port: number;
  /** where the other servers' routes connect */
  routePort: number;
  /** its HTTP monitoring port (/jsz, /routez) */
  monitorPort: number;
  /** its JetStream store folder (kept across restarts) */
  storeDir: string;
  /** its config file */
  configPath: string;
  /** its log (appended to across restarts) */
  logPath: string;
  /** whether its process runs */
  readonly running: boolean;
}

/** A NATS cluster with JetStream (3 servers by default) on loopback, for tests and benchmarks. */
export interface NatsServerCluster {
  /** the client URLs of every server, in order */
  urls: string[];
  servers: readonly ClusterMember[];
  /** Stop server `i`: SIGTERM with a grace, or SIGKILL at once. Its store is kept. */
  stop(i: number, signal?: "SIGTERM" | "SIGKILL"): Promise<void>;
  /** Start a stopped server `i` again (same ports, same store) and wait until the cluster is whole again. */
  start(i: number): Promise<void>;
  /** Stop server `i` and start it again. */
  restart(i: number, signal?: "SIGTERM" | "SIGKILL"): Promise<void>;
  /**
   * Wait until every running server has routes to every other running one
   * and knows the JetStream meta leader (bounded by `timeoutMs`).
   */
  waitReady(timeoutMs?: number): Promise<void>;
  /** Stop every server and remove the stores, configs and logs. */
  close(): Promise<void>;
}

/** The JetStream meta group as a server's /jsz shows it (the leader lists its followers). */
interface MetaCluster {
  leader?: string;
  replicas?: { name: string; current: boolean }[];
}

/** A server's JSON monitoring endpoint, or undefined when it does not answer. */
async function monitor<T>(port: number, path: string): Promise<T | undefined> {
  try {
    const res = await fetch(`http://127.0.0.1:${port}${path}`, { signal: AbortSignal.timeout(1000) });
    return res.ok ? ((await res.json()) as T) : undefined;
  } catch {
    return undefined;
  }
}

function tail(path: string, n = 1500): string {
  try {
    return readFileSync(path, "utf8").slice(-n);
  } catch {
    return "";
  }
}

/**
 * Start a NATS cluster of `size` servers on 127.0.0.1, each with a distinct
 * `server_name`, JetStream store folder and config file in one temporary
 * folder. The servers pick their client, monitoring and route ports
 * themselves, all but the first server's route port, where the others
 * connect to find each other (a JetStream cluster needs a configured route
 * at start, so that one port is chosen before). Once started, each config
 * names its server's ports and every route, so a restarted server comes back
 * where the clients and the other servers look for it. Resolves once the
 * cluster has a JetStream meta leader that every server knows. Throws a
 * clear error when the binary is missing.
 */
export async function startNatsCluster(opts: { size?: number } = {}): Promise<NatsServerCluster> {
  const missing = natsServerMissing();
  if (missing) throw new Error(missing);
  const size = opts.size ?? 3;
  const dir = mkdtempSync(join(tmpdir(), "matrixd-nats-cluster-"));
  const portsDir = join(dir, "ports");
  mkdirSync(portsDir);
  const clusterName = `mx-${Math.random().toString(36).slice(2, 8)}`;
  const seedRoute = `nats-route://127.0.0.1:${await freePort()}`;
  const members = Array.from({ length: size }, (_, i) => {
    const name = `n${i + 1}`;
    const storeDir = join(dir, name);
    mkdirSync(storeDir, { recursive: true });
    return {
      name,
      // known once the server has started and written its ports file
      port: 0,
      routePort: 0,
      monitorPort: 0,
      url: "",
      storeDir,
      configPath: join(dir, `${name}.conf`),
      logPath: join(dir, `${name}.log`),
      proc: undefined as Subprocess | undefined,
      get running(): boolean {
        return this.proc !== undefined && this.proc.exitCode === null && this.proc.signalCode === null;
      },
    };
  });
  const writeConfig = (m: (typeof members)[number], listen: { client: string; monitor: string; route: string }, routes: readonly string[], extra: string[] = []) => {
    writeFileSync(
      m.configPath,
      [
        `server_name: ${m.name}`,
        `listen: 127.0.0.1:${listen.client}`,
        `http: 127.0.0.1:${listen.monitor}`,
        ...extra,
        `jetstream { store_dir: ${JSON.stringify(m.storeDir)} }`,
        "cluster {",
        `  name: ${clusterName}`,
        `  listen: 127.0.0.1:${listen.route}`,
        `  routes: [ ${routes.join(", ")} ]`,
        "}",
        "",
      ].join("\n"),
    );
  };
  members.forEach((m, i) => {
    const route = i === 0 ? new URL(seedRoute).port : "-1";
    writeConfig(m, { client: "-1", monitor: "-1", route }, [seedRoute], [`ports_file_dir: ${JSON.stringify(portsDir)}`]);
  });

  const spawn = (m: (typeof members)[number]) => {
    const fd = openSync(m.logPath, "a");
    m.proc = Bun.spawn([BINARY, "-c", m.configPath], { stdin: "ignore", stdout: fd, stderr: fd });
    closeSync(fd);
  };

  const logs = () => members.map((m) => `--- ${m.name} (${m.running ? "running" : "stopped"})\n${tail(m.logPath)}`).join("\n");

  const waitReady = async (timeoutMs = 30_000) => {
    const deadline = Date.now() + timeoutMs;
    let last = "";
    while (Date.now() < deadline) {
      const up = members.filter((m) => m.running);
      const views = await Promise.all(
        up.map(async (m) => {
          const meta = (await monitor<{ meta_cluster?: MetaCluster }>(m.monitorPort, "/jsz"))?.meta_cluster;
          return {
            name: m.name,
            routes: (await monitor<{ num_routes: number }>(m.monitorPort, "/routez"))?.num_routes,
            leader: meta?.leader,
            // the leader lists its followers, with whether each has caught up
            current: meta?.replicas?.filter((r) => r.current).length,
          };
        }),
      );
      const leaders = new Set(views.map((v) => v.leader));
      const leader = views.find((v) => v.name === views[0]?.leader);
      last = JSON.stringify(views);
      if (
        up.length > 0 &&
        views.every((v) => v.routes !== undefined && v.routes >= up.length - 1) &&
        leaders.size === 1 &&
        leader !== undefined &&
        (leader.current ?? 0) >= up.length - 1
      ) {
        return;
      }
      await Bun.sleep(100);
    }
    throw new Error(`NATS cluster not ready within ${timeoutMs} ms (routes and meta leader per server: ${last})\n${logs()}`);
  };

  const stop = async (i: number, signal: "SIGTERM" | "SIGKILL" = "SIGTERM") => {
    const m = members[i];
    if (!m) throw new RangeError(`no server ${i} in a cluster of ${size}`);
    const p = m.proc;
    m.proc = undefined;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    p.kill(signal);
    const killer = setTimeout(() => p.kill("SIGKILL"), 5000);
    await p.exited;
    clearTimeout(killer);
  };

  const start = async (i: number) => {
    const m = members[i];
    if (!m) throw new RangeError(`no server ${i} in a cluster of ${size}`);
    if (m.running) return;
    // The ports may still be held by the previous process for a moment: a server that exits at once is started again.
    for (let attempt = 0; ; attempt++) {
      spawn(m);
      await Bun.sleep(200);
      if (m.running) break;
      if (attempt >= 10) throw new Error(`nats-server ${m.name} exits at once:\n${tail(m.logPath)}`);
      await Bun.sleep(300);
    }
    await waitReady();
  };

  const close = async () => {
    await Promise.all(members.map((_, i) => stop(i, "SIGKILL")));
    rmSync(dir, { recursive: true, force: true });
  };

  try {
    for (const m of members) spawn(m);
    for (const m of members) {
      if (!m.proc) throw new Error(`nats-server ${m.name} did not start`);
      const ports = await portsOf(portsDir, m.proc.pid).catch((err: unknown) => {
        throw new Error(`nats-server ${m.name} did not write its ports: ${err instanceof Error ? err.message : String(err)}\n${tail(m.logPath)}`);
      });
      m.port = portOf(ports.nats, "client");
      m.monitorPort = portOf(ports.monitoring, "monitoring");
      m.routePort = portOf(ports.cluster, "route");
      m.url = `nats://127.0.0.1:${m.port}`;
    }
    const routes = members.map((m) => `nats-route://127.0.0.1:${m.routePort}`);
    for (const m of members) writeConfig(m, { client: String(m.port), monitor: String(m.monitorPort), route: String(m.routePort) }, routes);
    await waitReady();
  } catch (err) {
    await close();
    throw err;
  }
  return {
    urls: members.map((m) => m.url),
    servers: members,
    stop,
    start,
    restart: async (i, signal) => {
      await stop(i, signal);
      await start(i);
    },
    waitReady,
    close,
  };
}
