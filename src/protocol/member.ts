import { z } from "zod";
import { SERVER_KINDS } from "../llm/dialect/types.ts";

/**
 * A cluster member as its heartbeat tells it: written to the members bucket
 * by each node, read back by every node, answered by `GET /v1/cluster` and
 * read by `matrixd status`. One schema for all of them.
 */

/** Slots of one role on a node. */
export const RoleLoadSchema = z.object({
  slots: z.number().int().nonnegative(),
  busy: z.number().int().nonnegative(),
  queued: z.number().int().nonnegative(),
  /** step latency of the last minute or two, ms: median and 99th percentile (absent before a step ran lately) */
  p50Ms: z.number().nonnegative().optional(),
  p99Ms: z.number().nonnegative().optional(),
});
export type RoleLoad = z.infer<typeof RoleLoadSchema>;

/** One LLM endpoint as a node's LLM client sees it: its load, limits and counters. */
export const EndpointInfoSchema = z.object({
  url: z.string(),
  models: z.array(z.string()),
  inFlight: z.number(),
  limit: z.number(),
  healthy: z.boolean(),
  requests: z.number(),
  errors: z.number(),
  promptTokens: z.number(),
  completionTokens: z.number(),
  /** requests queued in the client for this endpoint */
  waiting: z.number().optional(),
  /** moving average of successful request latency, ms (0 before the first) */
  latencyMs: z.number().optional(),
  /** the most requests in flight it is configured for (the adaptive `limit` stays at or below it) */
  maxConcurrency: z.number().optional(),
  /** running and waiting requests the server itself reported lately (its /metrics), all clients together */
  serverRunning: z.number().optional(),
  serverWaiting: z.number().optional(),
  /** sequences the server runs at once, when it says (or, when it does not, what it ran while it queued) */
  serverSlots: z.number().optional(),
  /** the server's kind, once given or found out */
  kind: z.enum(SERVER_KINDS).optional(),
  /** tokens of context per sequence, when the server says */
  contextTokens: z.number().optional(),
  /** load metrics its kind should publish and it does not: its load is not seen */
  missingMetrics: z.array(z.string()).optional(),
});
export type EndpointInfo = z.infer<typeof EndpointInfoSchema>;

/** A node's pool of per-task environments. */
export const EnvServiceInfoSchema = z.object({ driver: z.string(), capacity: z.number(), inUse: z.number() });

/** One node as the cluster sees it. */
export const MemberSchema = z.object({
  node: z.string().min(1),
  version: z.string(),
  /** base URL of its HTTP API, when it serves one */
  http: z.string().optional(),
  /** hosted roles (`workflow.role`) and their slots */
  roles: z.record(z.string(), RoleLoadSchema),
  /** slot groups that roles share (the LLM-bound roles share one sized to the LLM services): their size and use */
  groups: z.record(z.string(), z.object({ slots: z.number().int().nonnegative(), busy: z.number().int().nonnegative() })).optional(),
  services: z.object({
    llm: z.array(EndpointInfoSchema),
    env: EnvServiceInfoSchema.optional(),
  }),
  startedAt: z.number(),
  /** epoch ms of its last heartbeat */
  seenAt: z.number(),
  state: z.enum(["running", "draining"]),
});
export type Member = z.infer<typeof MemberSchema>;
