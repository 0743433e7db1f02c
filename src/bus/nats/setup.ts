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
import { describe } from "../../errors.ts";
import type { NatsLink } from "./connection.ts";
import { ApiCodes, apiErrorCode } from "./errors.ts";
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

function streamConfigs(): (Partial<StreamConfig> & { name: string })[] {
  const common = { storage: StorageType.File, num_replicas: 1, discard: DiscardPolicy.Old, duplicate_window: ns(120_000) };
  return [
    { name: Streams.tasks, subjects: [Subjects.tasks], retention: RetentionPolicy.Workqueue, ...common },
    { name: Streams.seeds, subjects: [Subjects.seeds], retention: RetentionPolicy.Workqueue, ...common },
    { name: Streams.rows, subjects: [Subjects.rows], retention: RetentionPolicy.Limits, ...common },
  ];
}

/** Create matrixd's streams when missing (idempotent; every node calls it at start). */
export async function ensureStreams(link: NatsLink): Promise<void> {
  for (const cfg of streamConfigs()) {
    try {
      await link.jsm.streams.info(cfg.name);
      continue;
    } catch (err) {
      if (apiErrorCode(err) !== ApiCodes.streamNotFound) throw err;
    }
    try {
      await link.jsm.streams.add(cfg);
    } catch (err) {
      // Another node may have created it between our look and our add.
      try {
        await link.jsm.streams.info(cfg.name);
      } catch {
        throw err;
      }
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

/** Create a durable consumer unless it exists (an existing one keeps its settings). */
export async function ensureConsumer(link: NatsLink, stream: string, cfg: Partial<ConsumerConfig>): Promise<void> {
  const name = cfg.durable_name as string;
  try {
    await link.jsm.consumers.info(stream, name);
    return;
  } catch (err) {
    if (apiErrorCode(err) !== ApiCodes.consumerNotFound) throw err;
  }
  try {
    await link.jsm.consumers.add(stream, cfg);
  } catch (err) {
    // A concurrent create with the same settings succeeds; report anything else.
    try {
      await link.jsm.consumers.info(stream, name);
    } catch {
      throw new Error(`cannot create consumer ${stream}/${name}: ${describe(err)}`, { cause: err });
    }
  }
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
      throw err;
    }
  }
}

/**
 * The members bucket. It lives in memory (heartbeats every second need no
 * disk), so a restarted nats-server has lost it: each node calls this again
 * when its heartbeat fails, and the bucket comes back as it was.
 */
export function openMembersBucket(link: NatsLink, t: ClusterTimings): Promise<KV> {
  return openBucket(link, Buckets.members, { history: 1, ttl: t.memberTtlMs, storage: StorageType.Memory });
}

/** Open (creating when missing) the jobs, stats and members buckets. */
export async function openBuckets(link: NatsLink, t: ClusterTimings): Promise<ClusterBuckets> {
  const jobs = await openBucket(link, Buckets.jobs, { history: 1, storage: StorageType.File });
  const stats = await openBucket(link, Buckets.stats, { history: 1, storage: StorageType.File });
  const members = await openMembersBucket(link, t);
  return { jobs, stats, members };
}
