/**
 * The cluster's store in NATS: the connection, the streams and buckets and
 * their names, job records, seeds, rows, per-node counters and members.
 * With src/bus/nats/ the only code that speaks to NATS.
 */
export { connectNats, type LinkStats, type NatsConnectOptions, type NatsLink } from "./connection.ts";
export { BrokenRecordError, isNatsUnavailable, JobStoreError, NatsPayloadError, NatsUnavailableError } from "./errors.ts";
export { EventStore } from "./events.ts";
export { JobStore, type SeedProgress } from "./jobstore.ts";
export { Membership } from "./membership.ts";
export { Buckets, hopMsgId, jobKey, jobToken, SAFE_NAME, safeName, Streams, Subjects, taskToken } from "./names.ts";
export { type NatsCluster, openNatsCluster } from "./open.ts";
export {
  type JobRecord,
  JobRecordSchema,
  type JobRecordState,
  type NodeCounters,
  type SeedMessage,
  SeedMessageSchema,
} from "./records.ts";
export { DEFAULT_OFFLOAD_BYTES, PartMissingError, type PartKind, type PartStats, PartStore, partBucket } from "./parts.ts";
export { ResultStore, type ResultStats, type StoreOutcome } from "./results.ts";
export { BUCKET_STREAMS, type ClusterTimings, EVENTS_KEPT, ensureStreams } from "./setup.ts";
