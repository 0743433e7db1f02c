/** The NATS side of matrixd: the only folder that speaks to NATS. */
export { NatsBusImpl, type NatsBusOptions, type SeedHandler } from "./bus.ts";
export { connectNats, type LinkStats, type NatsConnectOptions, type NatsLink } from "./connection.ts";
export { JobStoreError, NatsPayloadError, NatsUnavailableError } from "./errors.ts";
export { handOff, type HandOff } from "./handoff.ts";
export { Hold, Keeper, parseAckSubject, type Delivery } from "./holds.ts";
export { JobStore, type SeedProgress } from "./jobstore.ts";
export { LATENCY_BUCKETS_MS, LatencyHistogram } from "./latency.ts";
export { Membership } from "./membership.ts";
export { Buckets, hopMsgId, jobKey, SAFE_NAME, safeName, Streams, Subjects, taskToken } from "./names.ts";
export { type NatsCluster, openNatsCluster } from "./open.ts";
export { Puller, type PullerOptions, type SlotPool } from "./puller.ts";
export { addToTally, emptyTally, ResultStore, type ResultStats, type StoreOutcome } from "./results.ts";
export { type ClusterTimings, ensureStreams } from "./setup.ts";
export { RoleSlots, SlotGroup } from "./slots.ts";
export { type NatsBusStats, newBusStats } from "./stats.ts";
export {
  type DoneNotice,
  type JobRecord,
  JobRecordSchema,
  type JobRecordState,
  type JobSettings,
  JobSettingsSchema,
  type JobTally,
  type MemberRecord,
  MemberRecordSchema,
  type NodeCounters,
  type SeedMessage,
  SeedMessageSchema,
  type SeedRef,
  type TaskEnvelope,
  TaskEnvelopeSchema,
} from "./wire.ts";
