import { type NatsConnectOptions, type NatsLink, connectNats } from "./connection.ts";
import { JobStore } from "./jobstore.ts";
import { Membership } from "./membership.ts";
import { ResultStore } from "./results.ts";
import { type ClusterTimings, ensureStreams, openBuckets, openMembersBucket } from "./setup.ts";

/** Everything a node keeps in NATS, opened on one connection. */
export interface NatsCluster {
  link: NatsLink;
  timings: ClusterTimings;
  jobs: JobStore;
  results: ResultStore;
  membership: Membership;
  close(): Promise<void>;
}

/**
 * Connect, create the streams and buckets when missing, and open the job,
 * result and membership stores.
 */
export async function openNatsCluster(opts: NatsConnectOptions & { timings: ClusterTimings }): Promise<NatsCluster> {
  const link = await connectNats(opts);
  try {
    await ensureStreams(link);
    const buckets = await openBuckets(link, opts.timings);
    return {
      link,
      timings: opts.timings,
      jobs: new JobStore(link, buckets, opts.timings, opts.log),
      results: new ResultStore(link, opts.log),
      membership: new Membership(buckets.members, opts.name, opts.log, () => openMembersBucket(link, opts.timings)),
      close: () => link.close(),
    };
  } catch (err) {
    await link.close();
    throw err;
  }
}
