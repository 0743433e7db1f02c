/** The bus over NATS: tasks handed between roles, seeds pulled into slots, admission holds. */
export { NatsBusImpl, type NatsBusOptions, type SeedHandler } from "./bus.ts";
export { handOff, type HandOff } from "./handoff.ts";
export { Hold, Keeper, parseAckSubject, type Delivery } from "./holds.ts";
export { LATENCY_BUCKETS_MS, LatencyHistogram } from "./latency.ts";
export { Puller, type PullerOptions, type SlotPool } from "./puller.ts";
export { RoleSlots, SlotGroup } from "./slots.ts";
export { type NatsBusStats, newBusStats } from "./stats.ts";
export { type DoneNotice, type SeedRef, type TaskEnvelope, TaskEnvelopeSchema } from "./wire.ts";
