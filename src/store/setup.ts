import {
  AckPolicy,
  type ConsumerConfig,
  DeliverPolicy,
  DiscardPolicy,
  RetentionPolicy,
  StorageType,
  type StreamConfig,
} from "@nats-io/jetstream";
import type { KV } from "@nats-io/kv";
import { ConfigError, describe } from "../errors.ts";
import { sleep } from "../util/wait.ts";
import type { Logger } from "../log.ts";
import type { NatsLink } from "./connection.ts";
import { ApiCodes, isApiError, isTimeout } from "./errors.ts";
import { Buckets, Streams, Subjects } from "./names.ts";

/** Timings that are baked into the shared consumers and buckets (the first node to create them wins). */
export interface ClusterTimings {
  /** a message un-acked this long (its node died) is delivered again */
  ackWaitMs: number;
  /** a member not heard from this long is gone */
  memberTtlMs: number;
}

const ns = (ms: number) => Math.round(ms * 1_000_000);

/**
 * How long a publish waits for the server's ack before it is tried again.
 * Short, because a request can go unanswered (a server restarting takes the
 * message before its streams are loaded) and every publish of matrixd is
 * safe to repeat: hops and seeds carry message ids, rows an expected sequence.
 */
export const PUBLISH_TIMEOUT_MS = 3000;

/**
 * How long and how much of the events feed is kept: a day, and at most this
 * many entries and bytes (the oldest go first). Events are rare (joins,
 * losses, job ends), so these bounds are only met by a flood.
 */
export const EVENTS_KEPT = { maxAgeMs: 24 * 3600_000, maxEntries: 100_000, maxBytes: 64 * 1024 * 1024 } as const;

function streamConfigs(replicas: number): (Partial<StreamConfig> & { name: string })[] {
  const common = { storage: StorageType.File, num_replicas: replicas, discard: DiscardPolicy.Old, duplicate_window: ns(120_000) };
  return [
    { name: Streams.tasks, subjects: [Subjects.tasks], retention: RetentionPolicy.Workqueue, ...common },
    { name: Streams.seeds, subjects: [Subjects.seeds], retention: RetentionPolicy.Workqueue, ...common },
    { name: Streams.rows, subjects: [Subjects.rows], retention: RetentionPolicy.Limits, ...common },
    {
      name: Streams.events,
      subjects: [Subjects.events],
      retention: RetentionPolicy.Limits,
      ...common,
      max_age: ns(EVENTS_KEPT.maxAgeMs),
      max_msgs: EVENTS_KEPT.maxEntries,
      max_bytes: EVENTS_KEPT.maxBytes,
    },
  ];
}

/** The error of creating a stream or bucket with `replicas` copies, saying which setting asked for them. */
function replicasError(what: string, replicas: number, err: unknown): Error {
  if (replicas === 1) return err instanceof Error ? err : new Error(describe(err));
  return new Error(`cannot create ${what} with ${replicas} replicas (nats.replicas): ${describe(err)}`, { cause: err });
}

/**
 * Create matrixd's streams when missing, with `replicas` copies each
 * (idempotent; every node calls it at start, and again when a stream seems
 * gone). An existing stream is left as it is: see `reconcileReplicas`.
 */
export async function ensureStreams(link: NatsLink, replicas = 1): Promise<void> {
  for (const cfg of streamConfigs(replicas)) {
    try {
      await link.jsm.streams.info(cfg.name);
      continue;
    } catch (err) {
      if (!isApiError(err, ApiCodes.streamNotFound)) throw err;
    }
    try {
      await link.jsm.streams.add(cfg);
    } catch (err) {
      // Another node may have created it between our look and our add.
      try {
        await link.jsm.streams.info(cfg.name);
      } catch {
        throw replicasError(`stream ${cfg.name}`, replicas, err);
      }
    }
  }
}

/**
 * Refuse replicas the server cannot keep: more than one copy needs a NATS
 * cluster (a single nats-server refuses to create such a stream, yet takes
 * an update to one and then keeps one copy anyway).
 */
export function checkReplicasPossible(link: NatsLink, replicas: number): void {
  if (replicas > 1 && !link.nc.info?.cluster) {
    throw new ConfigError(
      `nats.replicas is ${replicas}, but the NATS server at ${link.nc.getServer()} is not part of a cluster; set nats.replicas to 1 or connect to a clustered nats-server`,
    );
  }
}

/**
 * Bring the replicas of existing streams and buckets (`names`) up to
 * `replicas`: a stream created with fewer copies (by a node with another
 * setting, or before the setting changed) is updated when the server allows
 * it, else a warning says so. A stream with more copies keeps them, with a
 * warning: one node's setting never lowers what the cluster keeps (lower it
 * with the nats CLI when that is meant).
 */
export async function reconcileReplicas(link: NatsLink, names: readonly string[], replicas: number, log: Logger): Promise<void> {
  for (const name of names) {
    let have: number;
    try {
      have = (await link.jsm.streams.info(name)).config.num_replicas || 1;
    } catch (err) {
      log.warn({ stream: name, err: describe(err) }, "cannot read the replicas of a stream");
      continue;
    }
    if (have === replicas) continue;
    if (have > replicas) {
      log.warn(
        { stream: name, replicas: have, wanted: replicas },
        `stream ${name} has ${have} replicas and nats.replicas of this node is ${replicas}: it keeps ${have} (lower it with the nats CLI if that is meant)`,
      );
      continue;
    }
    try {
      const si = await link.jsm.streams.update(name, { num_replicas: replicas });
      log.info({ stream: name, from: have, to: si.config.num_replicas }, `stream ${name} now has ${si.config.num_replicas} replicas (was ${have})`);
    } catch (err) {
      log.warn(
        { stream: name, replicas: have, wanted: replicas, err: describe(err) },
        `stream ${name} has ${have} replicas, nats.replicas asks for ${replicas}, and the server refused to change it: it keeps ${have}`,
      );
    }
  }
}

/** The shared durable pull consumer every node pulls a role's tasks from. */
export function roleConsumerConfig(name: string, subject: string, t: ClusterTimings): Partial<ConsumerConfig> {
  return {
    durable_name: name,
    filter_subject: subject,
    ack_policy: AckPolicy.Explicit,
    deliver_policy: DeliverPolicy.All,
    ack_wait: ns(t.ackWaitMs),
    max_deliver: -1,
    max_ack_pending: -1,
    max_waiting: 4096,
  };
}

/** A job's seed consumer: at most `concurrency` seeds un-acked, that is tasks in flight, cluster-wide. */
export function seedConsumerConfig(name: string, subject: string, concurrency: number, t: ClusterTimings): Partial<ConsumerConfig> {
  return {
    durable_name: name,
    filter_subject: subject,
    ack_policy: AckPolicy.Explicit,
    deliver_policy: DeliverPolicy.All,
    ack_wait: ns(t.ackWaitMs),
    max_deliver: -1,
    max_ack_pending: concurrency,
    max_waiting: 4096,
  };
}

/** Tries at creating a consumer whose create request times out. */
const CONSUMER_CREATE_TRIES = 5;

/**
 * Create a durable consumer unless it exists (an existing one keeps its
 * settings). A create request that times out is tried again: on a NATS
 * cluster missing a server, nats-server 2.9 answers some of them late or
 * never (it may place the consumer on the missing server), and a late one
 * may have made the consumer after all, which the next look finds.
 */
export async function ensureConsumer(link: NatsLink, stream: string, cfg: Partial<ConsumerConfig>): Promise<void> {
  const name = cfg.durable_name as string;
  for (let attempt = 1; ; attempt++) {
    try {
      await link.jsm.consumers.info(stream, name);
      return;
    } catch (err) {
      if (!isApiError(err, ApiCodes.consumerNotFound)) throw err;
    }
    try {
      await link.jsm.consumers.add(stream, cfg);
      return;
    } catch (err) {
      // A concurrent create with the same settings succeeds; report anything else.
      try {
        await link.jsm.consumers.info(stream, name);
        return;
      } catch {
        if (!isTimeout(err) || attempt >= CONSUMER_CREATE_TRIES) {
          throw new Error(`cannot create consumer ${stream}/${name}: ${describe(err)}`, { cause: err });
        }
      }
    }
    await sleep(250 * attempt);
  }
}

/**
 * The keys of a bucket that match `filter`, from its stream's list of
 * subjects. The KV client's keys() makes a consumer for that, and on a NATS
 * cluster missing a server nats-server 2.9 may place it on the missing one:
 * the request then times out. The subject list is the stream leader's
 * answer, which a cluster that has lost one server of three still gives.
 * Deleted keys may be listed (their delete marker is a message): a get
 * tells them apart.
 */
export async function bucketKeys(link: NatsLink, bucket: string, filter = ">"): Promise<string[]> {
  const prefix = `$KV.${bucket}.`;
  const si = await link.jsm.streams.info(`KV_${bucket}`, { subjects_filter: `${prefix}${filter}` });
  return Object.keys(si.state.subjects ?? {}).map((s) => s.slice(prefix.length));
}

/** The KV buckets of the cluster. */
export interface ClusterBuckets {
  jobs: KV;
  stats: KV;
  members: KV;
}

/** Open a bucket, creating it when missing (another node creating it at the same moment is fine). */
async function openBucket(link: NatsLink, name: string, opts: Parameters<NatsLink["kvm"]["create"]>[1]): Promise<KV> {
  try {
    return await link.kvm.create(name, opts);
  } catch (err) {
    // Another node may be creating it at the same moment: bind to theirs.
    try {
      return await link.kvm.open(name);
    } catch {
      throw replicasError(`bucket ${name}`, opts?.replicas ?? 1, err);
    }
  }
}

/** The streams behind the buckets (a bucket is a stream named KV_<bucket>). */
export const BUCKET_STREAMS = [Buckets.jobs, Buckets.stats, Buckets.members].map((b) => `KV_${b}`);

/**
 * The members bucket. It lives in memory (heartbeats every second need no
 * disk), so a nats-server that restarts has lost its copy: on a single
 * server each node calls this again when its heartbeat fails, and the bucket
 * comes back as it was. On a cluster it has `replicas` copies like the
 * rest (nats-server replicates memory streams too), so losing one server
 * loses no member.
 */
export function openMembersBucket(link: NatsLink, t: ClusterTimings, replicas = 1): Promise<KV> {
  return openBucket(link, Buckets.members, { history: 1, ttl: t.memberTtlMs, storage: StorageType.Memory, replicas });
}

/** Open (creating when missing, with `replicas` copies) the jobs, stats and members buckets. */
export async function openBuckets(link: NatsLink, t: ClusterTimings, replicas = 1): Promise<ClusterBuckets> {
  const jobs = await openBucket(link, Buckets.jobs, { history: 1, storage: StorageType.File, replicas });
  const stats = await openBucket(link, Buckets.stats, { history: 1, storage: StorageType.File, replicas });
  const members = await openMembersBucket(link, t, replicas);
  return { jobs, stats, members };
}
