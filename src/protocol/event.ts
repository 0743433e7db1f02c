import { z } from "zod";

/**
 * A cluster event: something an operator wants to know happened (a member
 * came, left or was lost, a lost node's tasks were taken over, an LLM server
 * was restarted, an endpoint went down or came back, a node stopped or resumed taking new
 * tasks while no LLM endpoint answered it, a job's budget was
 * reached, a job changed state or ran its failed tasks again). Each is a log line on the node that saw it
 * and, on a cluster, one entry in the events feed (a JetStream stream kept
 * for a while), which `GET /v1/events` reads from any node.
 */

export const EVENT_KINDS = [
  "member.joined",
  "member.left",
  "member.lost",
  "tasks.taken_over",
  "llm.restarted",
  "endpoint.down",
  "endpoint.up",
  "admission.paused",
  "admission.resumed",
  "budget.reached",
  "job.submitted",
  "job.done",
  "job.cancelled",
  "job.purged",
  "job.retried",
] as const;
export type EventKind = (typeof EVENT_KINDS)[number];

/** One entry of the events feed, as `GET /v1/events` answers it. */
export const ClusterEventSchema = z.object({
  /** its place in the feed (the stream sequence): page on with `?after=` */
  seq: z.number().int().positive(),
  /** epoch ms when the node saw it */
  at: z.number(),
  kind: z.enum(EVENT_KINDS),
  /** the node that saw it */
  node: z.string().min(1),
  /** the member, endpoint URL or server concerned */
  subject: z.string().optional(),
  job: z.string().optional(),
  /** how many (tasks taken over) */
  count: z.number().int().nonnegative().optional(),
  /** one readable sentence */
  message: z.string(),
});
export type ClusterEvent = z.infer<typeof ClusterEventSchema>;

/** An event as stored in the feed: its sequence is the stream's. */
export const StoredEventSchema = ClusterEventSchema.omit({ seq: true });
export type StoredEvent = z.infer<typeof StoredEventSchema>;

/** What a part of a node reports: the node and the time are added by the feed. */
export type EventReport = Omit<StoredEvent, "node" | "at">;

/** What `GET /v1/events` answers. */
export const EventsResponseSchema = z.object({ events: z.array(ClusterEventSchema) });
export type EventsResponse = z.infer<typeof EventsResponseSchema>;

/** The most events one read answers, and how many it answers when not told. */
export const EVENTS_MAX_LIMIT = 1000;
export const EVENTS_DEFAULT_LIMIT = 100;

/** Which events to read: after a sequence (oldest first), at most `limit`, of one job. */
export interface EventQuery {
  /** events whose seq is greater; without it, the latest `limit` events */
  after?: number;
  limit?: number;
  job?: string;
}
