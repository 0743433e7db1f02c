import { hostname } from "node:os";
import { builtinWorkflows } from "../plugins/index.ts";
import { createApp } from "../src/api/app.ts";
import { type JoinConfig, loadJoinConfig, roleSelection } from "../src/cluster/config.ts";
import { type RunningClusterNode, startClusterNode } from "../src/cluster/node.ts";
import { describe, UsageError } from "../src/errors.ts";
import { createLogger } from "../src/log.ts";
import { loadPlugin, Registry } from "../src/plugin/registry.ts";
import { checkEnvDriver, checkNodeEndpoints, checkSupervised, preflight } from "../src/preflight/index.ts";
import { NODE_FLAGS, parseCommand } from "./args.ts";
import { superviseFlags } from "./llm.ts";
import { openNodeServices } from "./services.ts";
import { handleSignals } from "./signals.ts";

export const JOIN_HELP = `matrixd join: join a cluster over NATS, host agent roles, serve the HTTP API

usage: matrixd join --nats URL[,URL...] [--http HOST:PORT] [--llm sim|URL ...] [--config FILE]
                    [--token T] [--name NODE] [--plugin PATH ...] [--supervise CMD ...] [--env docker|bwrap]

  --nats URL[,URL]     NATS servers (JetStream enabled), e.g. nats://10.0.0.2:4222
  --http HOST:PORT     serve the HTTP API there (jobs, results, cluster, metrics, dashboard);
                       beyond loopback it needs a bearer token (--token, config token or
                       $MATRIXD_TOKEN), or matrixd refuses to start
  --llm sim|URL        'sim' starts a simulated LLM in-process; a URL is an OpenAI-compatible
                       endpoint; repeat for several
  --supervise CMD      start and watch a local LLM server (a command with {port})
  --env docker|bwrap   per-task environments for tool-using workflows, advertised to the cluster
  --config FILE        YAML or JSON: nats (servers, user, pass, token, tls, ackWaitSec,
                       memberTtlSec, replicas, offloadBytes), http, token, name, roles, llm, sim, limits, plugins
  --token T            bearer token of the HTTP API
  --name NODE          node name in the cluster (default hostname-pid)
  --plugin PATH        load a workflow from a file; repeatable
  --log-level LEVEL    pino level of the JSON log on stdout (default info)
  --log-file FILE      write the JSON log to FILE (appended) instead of stdout

Before it joins, every LLM endpoint must answer GET /v1/models (with its API key; supervised
servers once started) and the --env driver must be there (a Docker engine that answers, a bwrap
that runs); else exit 2 with one line naming it. A dead endpoint among live ones is a warning.

SIGTERM or SIGINT: stop taking work, hand tasks in flight back to the cluster, leave, exit 0.
exit codes: 0 left cleanly, 1 runtime failure, 2 usage or config error`;

/** Whether an HTTP host only listens on this machine. */
export function isLoopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, "").toLowerCase();
  return h === "localhost" || h === "::1" || /^127\.\d+\.\d+\.\d+$/.test(h);
}

/** Split `HOST:PORT` (IPv6 in brackets). */
export function splitHostPort(addr: string): { host: string; port: number } {
  const m = /^(\[[^\]]+\]|[^:]+):(\d{1,5})$/.exec(addr);
  const port = m ? Number(m[2]) : Number.NaN;
  if (!m || !(port >= 0 && port <= 65535)) throw new UsageError(`--http must be HOST:PORT, got "${addr}"`);
  return { host: (m[1] as string).replace(/^\[|\]$/g, ""), port };
}

/** `matrixd join`: runs until SIGTERM/SIGINT; returns the exit code. */
export async function joinMain(argv: string[]): Promise<number> {
  const { values: f } = parseCommand("join", argv, {
    ...NODE_FLAGS,
    nats: { type: "string" },
    http: { type: "string" },
    token: { type: "string" },
    name: { type: "string" },
  });
  if (f.help) {
    console.log(JOIN_HELP);
    return 0;
  }
  const cfg: JoinConfig = loadJoinConfig(f.config);
  const servers = f.nats !== undefined ? f.nats.split(",").map((s) => s.trim()).filter(Boolean) : cfg.nats.servers;
  if (servers.length === 0) throw new UsageError("--nats needs at least one server URL");
  const httpAddr = f.http ?? cfg.http;
  const token = f.token ?? cfg.token ?? process.env.MATRIXD_TOKEN;
  const http = httpAddr !== undefined ? splitHostPort(httpAddr) : undefined;
  if (http && !isLoopback(http.host) && !token) {
    throw new UsageError(`--http ${httpAddr} listens beyond loopback: give a bearer token (--token, config token or $MATRIXD_TOKEN)`);
  }
  const name = f.name ?? cfg.name ?? `${hostname()}-${process.pid}`;
  const log = createLogger({ level: f["log-level"] ?? cfg.log?.level ?? "info", stream: "stdout", ...(f["log-file"] !== undefined ? { file: f["log-file"] } : {}) });

  const registry = new Registry(builtinWorkflows);
  for (const p of [...cfg.plugins, ...(f.plugin ?? [])]) for (const w of await loadPlugin(p)) registry.add(w);
  const llm = { flags: f.llm, section: cfg.llm, supervise: [...cfg.supervise, ...superviseFlags(f.supervise)], sim: cfg.sim };
  await preflight("join", [() => checkEnvDriver({ flag: f.env, config: cfg.env }), () => checkNodeEndpoints(llm)]);
  const svc = await openNodeServices(f, cfg, log);
  await preflight("join", [() => checkSupervised(svc.llm, cfg.llm)]).catch(async (err) => {
    await svc.close();
    throw err;
  });

  const abort = new AbortController();
  let node: RunningClusterNode | undefined;
  let server: ReturnType<typeof Bun.serve> | undefined;
  const leave = async (): Promise<void> => {
    try {
      await node?.close();
    } catch (err) {
      log.error({ err: describe(err) }, "leaving the cluster failed");
    }
    server?.stop(true);
    await svc.close();
  };
  let askedToLeave = (): void => undefined;
  const leaveAsked = new Promise<void>((resolve) => {
    askedToLeave = resolve;
  });
  handleSignals({
    graceful: (signal) => {
      log.info({ signal }, "leaving the cluster");
      abort.abort();
      askedToLeave();
    },
    forced: (signal) => log.warn({ signal }, "second signal: exiting now"),
  });

  try {
    node = await startClusterNode({
      name,
      nats: { servers, user: cfg.nats.user, pass: cfg.nats.pass, token: cfg.nats.token, creds: cfg.nats.creds, tls: cfg.nats.tls },
      timings: { ackWaitMs: cfg.nats.ackWaitSec * 1000, memberTtlMs: cfg.nats.memberTtlSec * 1000 },
      replicas: cfg.nats.replicas,
      offloadBytes: cfg.nats.offloadBytes,
      workflows: registry,
      roles: roleSelection(cfg.roles),
      defaultSlots: cfg.defaultSlots,
      llm: svc.llm?.client,
      supervisors: svc.llm?.supervisors,
      services: svc.services,
      log,
      localFirst: cfg.localFirst,
      prices: cfg.prices,
      shareLlm: cfg.shareLlm,
      signal: abort.signal,
    });
  } catch (err) {
    await svc.close();
    if (abort.signal.aborted) return 0;
    throw err;
  }
  if (abort.signal.aborted) {
    await leave();
    return 0;
  }
  if (http) {
    const app = createApp(node, {
      token,
      maxBodyBytes: cfg.limits.maxBodyBytes,
      maxJsonBytes: cfg.limits.maxJsonBytes,
      maxSeeds: cfg.limits.maxSeeds,
      log,
      registry,
    });
    server = Bun.serve({ hostname: http.host, port: http.port, fetch: app.fetch, idleTimeout: 0 });
    const shown = http.host.includes(":") ? `[${http.host}]` : http.host;
    const url = `http://${shown}:${server.port}`;
    node.setHttp(url);
    log.info({ url }, "HTTP API listening");
  }
  log.info({ node: node.name, nats: servers }, "node running; SIGTERM or SIGINT to leave");
  await leaveAsked;
  await leave();
  return 0;
}
