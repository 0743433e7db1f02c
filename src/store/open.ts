import { describe } from "../errors.ts";
import { retry } from "../util/retry.ts";
import { DEFAULT_OFFLOAD_BYTES } from "./parts.ts";
import { type NatsConnectOptions, type NatsLink, connectNats } from "./connection.ts";
import { isNatsUnavailable } from "./errors.ts";
import { EventStore } from "./events.ts";
import { JobStore } from "./jobstore.ts";
import { Membership } from "./membership.ts";
import { ResultStore } from "./results.ts";
import { PartStore } from "./parts.ts";
import { Buckets, Streams } from "./names.ts";
import {
  BUCKET_STREAMS,
  bucketKeys,
  type ClusterTimings,
  checkReplicasPossible,
  ensureStreams,
  openBuckets,
  openMembersBucket,
  reconcileReplicas,
} from "./setup.ts";

/** Everything a node keeps in NATS, opened on one connection. */
export interface NatsCluster {
  link: NatsLink;
  timings: ClusterTimings;
  /** copies of each stream and bucket this node creates (nats.replicas) */
  replicas: number;
  jobs: JobStore;
  results: ResultStore;
  /** the large texts of task states and rows, in the object store */
  parts: PartStore;
  membership: Membership;
  /** the cluster's events feed */
  events: EventStore;
  close(): Promise<void>;
}

/**
 * Run `setup` until JetStream answers it: failures that mean "not ready
 * yet" (timeouts, no responders, JetStream not enabled yet) are tried again
 * with backoff and a log line each, until `opts.signal` aborts; anything
 * else is thrown.
 */
function untilJetStreamAnswers<T>(opts: NatsConnectOptions, setup: () => Promise<T>): Promise<T> {
  return retry(setup, {
    baseMs: 250,
    maxMs: 5000,
    retryable: isNatsUnavailable,
    giveUp: () => opts.signal?.aborted === true,
    onRetry: (err, attempt, retryInMs) => opts.log.warn({ attempt, retryInMs, err: describe(err) }, "JetStream is not answering yet; trying again"),
  });
}

/**
 * Connect, create the streams and buckets when missing (with `replicas`
 * copies each, default 1), bring existing ones up to `replicas` where the
 * server allows it, and open the job, result, membership and event stores.
 */
export async function openNatsCluster(
  opts: NatsConnectOptions & { timings: ClusterTimings; replicas?: number; offloadBytes?: number },
): Promise<NatsCluster> {
  const replicas = opts.replicas ?? 1;
  const link = await connectNats(opts);
  try {
    checkReplicasPossible(link, replicas);
    // A NATS cluster that is starting has no JetStream leader yet: wait for it rather than give up.
    const buckets = await untilJetStreamAnswers(opts, async () => {
      await ensureStreams(link, replicas);
      const b = await openBuckets(link, opts.timings, replicas);
      await reconcileReplicas(link, [...Object.values(Streams), ...BUCKET_STREAMS], replicas, opts.log);
      return b;
    });
    const parts = new PartStore(link, opts.log, opts.offloadBytes ?? DEFAULT_OFFLOAD_BYTES, replicas);
    return {
      link,
      timings: opts.timings,
      replicas,
      jobs: new JobStore(link, buckets, opts.timings, opts.log),
      results: new ResultStore(link, opts.log, parts),
      parts,
      membership: new Membership(
        buckets.members,
        opts.name,
        opts.log,
        () => openMembersBucket(link, opts.timings, replicas),
        () => bucketKeys(link, Buckets.members),
      ),
      events: new EventStore(link, opts.log),
      close: () => link.close(),
    };
  } catch (err) {
    await link.close();
    throw err;
  }
}
