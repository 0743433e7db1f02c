import { LatencyHistogram } from "./latency.ts";

/** Counters of the NATS bus, for /metrics. */
export interface NatsBusStats {
  /** hops run on this node with no serialization */
  localHops: number;
  /** hops stored in the task stream for any node to take */
  remoteHops: number;
  /** hops whose state was already in the stream (a task run twice), dropped */
  duplicateHops: number;
  /** task messages taken off the stream */
  received: number;
  /** their bytes (without the large texts they refer to) */
  hopBytes: number;
  /** of which were deliveries again (a node died, or a hand-back) */
  redelivered: number;
  /** redelivered tasks that already had their row */
  alreadyDone: number;
  seedsTaken: number;
  /** messages that were not what their subject carries, by subject kind */
  garbage: { task: number; seed: number; done: number };
  publishRetries: number;
  /** tasks given back to NATS at shutdown */
  handedBack: number;
  /** remote hop latency: publish to the start of the step on the receiving node */
  hopLatency: LatencyHistogram;
}

/** Counters at zero. */
export function newBusStats(): NatsBusStats {
  return {
    localHops: 0,
    remoteHops: 0,
    duplicateHops: 0,
    received: 0,
    hopBytes: 0,
    redelivered: 0,
    alreadyDone: 0,
    seedsTaken: 0,
    garbage: { task: 0, seed: 0, done: 0 },
    publishRetries: 0,
    handedBack: 0,
    hopLatency: new LatencyHistogram(),
  };
}
