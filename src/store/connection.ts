import { type JetStreamClient, type JetStreamManager, jetstream, jetstreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { readFileSync } from "node:fs";
import { connect, credsAuthenticator, type NatsConnection, type NodeConnectionOptions } from "@nats-io/transport-node";
import { ConfigError, describe } from "../errors.ts";
import type { Logger } from "../log.ts";
import { retry } from "../util/retry.ts";
import { isAuthRefused, NatsUnavailableError } from "./errors.ts";
import { AckedPublisher, type PubAck, type PublishOptions } from "./publisher.ts";

/** How to reach and log in to NATS (from the join config). */
export interface NatsConnectOptions {
  /** `nats://host:port` or `host:port`, one or more */
  servers: string[];
  user?: string;
  pass?: string;
  token?: string;
  /** path of a credentials file (user JWT and NKey seed) */
  creds?: string;
  /** file paths of the CA, client certificate and key */
  tls?: { ca?: string; cert?: string; key?: string };
  /** connection name the server shows (the node name) */
  name: string;
  log: Logger;
  /** aborting stops the first-connect retries */
  signal?: AbortSignal;
}

/** Counters about the connection, for /metrics. */
export interface LinkStats {
  connected: boolean;
  disconnects: number;
  reconnects: number;
  errors: number;
}

/** One NATS connection and the JetStream and KV handles made on it. */
export interface NatsLink {
  readonly nc: NatsConnection;
  readonly js: JetStreamClient;
  readonly jsm: JetStreamManager;
  readonly kvm: Kvm;
  readonly stats: LinkStats;
  /** largest message the server takes, bytes */
  maxPayload(): number;
  /** publish to a stream and wait for its ack (the hot paths: seeds, hops, rows; see AckedPublisher) */
  publish(subject: string, data: Uint8Array, opts: PublishOptions): Promise<PubAck>;
  /** called after each reconnect (pull requests and watchers may need a nudge); returns a function that stops it */
  onReconnect(fn: () => void): () => void;
  /**
   * Settle with `p`, or reject with NatsUnavailableError as soon as the
   * connection drops while `p` is pending: a request in flight when the
   * connection drops never gets its answer, and waiting out its timeout
   * would stall the caller for nothing. The caller tries again.
   */
  unlessDisconnected<T>(p: Promise<T>): Promise<T>;
  close(): Promise<void>;
}

/** Backoff that grows with the length of an outage: 250 ms at first, at most 5 s, with jitter. */
function backoffSince(since: () => number): () => number {
  return () => {
    const outage = Date.now() - since();
    const base = Math.min(5000, Math.max(250, outage / 2));
    return Math.round(base * (0.75 + Math.random() * 0.5));
  };
}

/** A credentials file's bytes; ConfigError naming it when it cannot be read or is not one. */
function readCreds(path: string): Uint8Array {
  let data: Buffer;
  try {
    data = readFileSync(path);
  } catch (err) {
    throw new ConfigError(`cannot read the NATS credentials file ${path} (nats.creds): ${describe(err)}`);
  }
  const text = data.toString("utf8");
  if (!/-{3,}BEGIN NATS USER JWT-{3,}/.test(text) || !/-{3,}BEGIN USER NKEY SEED-{3,}/.test(text)) {
    throw new ConfigError(`${path} (nats.creds) is not a NATS credentials file: it needs a user JWT and an NKey seed, as nsc writes them`);
  }
  return data;
}

/**
 * Why a first connection can never succeed as configured (wrong credentials,
 * a certificate that does not verify), or undefined for a failure worth
 * trying again (the server is down or still starting).
 */
function refusal(err: unknown): string | undefined {
  if (!(err instanceof Error)) return undefined;
  if (isAuthRefused(err)) return `refused this node's credentials: ${err.message}`;
  if (/certificate|self[- ]signed|wrong version number|handshake/i.test(err.message)) return `cannot be reached over TLS as configured: ${err.message}`;
  return undefined;
}

/**
 * Connect to NATS, retrying the first connection forever (with backoff and a
 * log line per attempt) and then reconnecting forever; every status change
 * of the connection is logged. Credentials or TLS settings the server
 * refuses throw ConfigError at once, since trying again cannot help.
 */
export async function connectNats(opts: NatsConnectOptions): Promise<NatsLink> {
  const log = opts.log;
  let downSince = Date.now();
  const options: NodeConnectionOptions = {
    servers: opts.servers,
    name: opts.name,
    maxReconnectAttempts: -1,
    reconnectDelayHandler: backoffSince(() => downSince),
    pingInterval: 10_000,
    maxPingOut: 3,
    timeout: 5_000,
  };
  if (opts.user !== undefined) options.user = opts.user;
  if (opts.pass !== undefined) options.pass = opts.pass;
  if (opts.token !== undefined) options.token = opts.token;
  if (opts.creds !== undefined) options.authenticator = credsAuthenticator(readCreds(opts.creds));
  if (opts.tls) {
    options.tls = {};
    if (opts.tls.ca) options.tls.caFile = opts.tls.ca;
    if (opts.tls.cert) options.tls.certFile = opts.tls.cert;
    if (opts.tls.key) options.tls.keyFile = opts.tls.key;
  }

  const nc = await retry(
    async () => {
      if (opts.signal?.aborted) throw new NatsUnavailableError(`gave up connecting to NATS at ${opts.servers.join(",")}`);
      try {
        return await connect(options);
      } catch (err) {
        const refused = refusal(err);
        if (refused) throw new ConfigError(`NATS at ${opts.servers.join(",")} ${refused} (nats.user/pass, nats.token, nats.creds or nats.tls in the config)`);
        throw err;
      }
    },
    {
      baseMs: 250,
      maxMs: 5000,
      retryable: (err) => !(err instanceof ConfigError || err instanceof NatsUnavailableError),
      onRetry: (err, attempt, retryInMs) => log.warn({ servers: opts.servers, attempt, retryInMs, err: describe(err) }, "cannot connect to NATS, trying again"),
    },
  );
  log.info({ server: nc.getServer() }, "connected to NATS");

  const stats: LinkStats = { connected: true, disconnects: 0, reconnects: 0, errors: 0 };
  const reconnectHooks: (() => void)[] = [];
  // A set: thousands of publishes may wait at once, each leaving it when answered.
  let dropped = new Set<() => void>();
  const conn = nc;
  void (async () => {
    for await (const s of conn.status()) {
      switch (s.type) {
        case "disconnect": {
          stats.connected = false;
          stats.disconnects++;
          downSince = Date.now();
          log.warn({ server: s.server, inFlight: dropped.size }, "NATS disconnected");
          const waiting = dropped;
          dropped = new Set();
          for (const f of waiting) f();
          break;
        }
        case "reconnecting":
          log.debug("NATS reconnecting");
          break;
        case "reconnect":
          stats.connected = true;
          stats.reconnects++;
          log.info({ server: s.server, outageMs: Date.now() - downSince }, "NATS reconnected");
          for (const f of reconnectHooks) f();
          break;
        case "error":
          stats.errors++;
          log.error({ err: describe(s.error) }, "NATS error");
          break;
        case "ldm":
          log.warn({ server: s.server }, "NATS server entering lame duck mode");
          break;
        case "update":
          log.info({ added: s.added, deleted: s.deleted }, "NATS cluster servers changed");
          break;
        case "staleConnection":
          log.warn("NATS connection stale");
          break;
        case "slowConsumer":
          log.warn({ subject: s.sub.getSubject(), pending: s.pending }, "NATS slow consumer");
          break;
        case "forceReconnect":
          log.info("NATS reconnect forced");
          break;
        case "close":
          stats.connected = false;
          log.info("NATS connection closed");
          break;
        case "ping":
          log.debug({ pendingPings: s.pendingPings }, "NATS ping outstanding");
          break;
      }
    }
  })();

  const js = jetstream(conn, { timeout: 5_000 });
  const publisher = new AckedPublisher(conn);
  // No API check here: JetStream may not be up yet (a starting cluster); the first setup request waits for it.
  const jsm = await jetstreamManager(conn, { timeout: 5_000, checkAPI: false });
  return {
    nc: conn,
    js,
    jsm,
    kvm: new Kvm(js),
    stats,
    maxPayload: () => conn.info?.max_payload ?? 1024 * 1024,
    publish: (subject, data, opts) => publisher.publish(subject, data, opts),
    onReconnect: (fn) => {
      reconnectHooks.push(fn);
      return () => {
        const i = reconnectHooks.indexOf(fn);
        if (i >= 0) reconnectHooks.splice(i, 1);
      };
    },
    unlessDisconnected<T>(p: Promise<T>): Promise<T> {
      if (!stats.connected) return p;
      return new Promise<T>((resolve, reject) => {
        const onDrop = () => reject(new NatsUnavailableError("the NATS connection dropped while waiting for an answer"));
        dropped.add(onDrop);
        const forget = () => dropped.delete(onDrop);
        p.then(
          (v) => {
            forget();
            resolve(v);
          },
          (err) => {
            forget();
            reject(err);
          },
        );
      });
    },
    async close() {
      try {
        if (!conn.isClosed()) await conn.drain();
      } catch {
        await conn.close();
      } finally {
        publisher.close();
      }
    },
  };
}
