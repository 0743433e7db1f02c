import { Hono } from "hono";
import type { ClusterNode } from "../../cluster/types.ts";
import { EVENTS_MAX_LIMIT, type EventQuery, type EventsResponse } from "../../protocol/event.ts";
import { HttpError } from "../http-error.ts";

/** A query parameter that must be a whole number in [min, max], or absent. */
function wholeNumber(name: string, raw: string | undefined, min: number, max: number): number | undefined {
  if (raw === undefined) return undefined;
  const n = /^\d{1,16}$/.test(raw) ? Number(raw) : Number.NaN;
  if (!Number.isSafeInteger(n) || n < min || n > max) {
    throw new HttpError(400, `${name} must be a whole number from ${min} to ${max}, got "${raw}"`);
  }
  return n;
}

/**
 * `GET /v1/events?after=SEQ&limit=N&job=ID`: the cluster's events feed,
 * oldest first. With `after`, the events after that sequence (page on with
 * the last one's `seq`; a poll at the end of the feed is cheap); without it,
 * the latest `limit` (default 100, at most 1000).
 */
export function eventRoutes(node: ClusterNode): Hono {
  const routes = new Hono();

  routes.get("/", async (c) => {
    const q: EventQuery = {};
    const after = wholeNumber("after", c.req.query("after"), 0, Number.MAX_SAFE_INTEGER);
    const limit = wholeNumber("limit", c.req.query("limit"), 1, EVENTS_MAX_LIMIT);
    const job = c.req.query("job");
    if (job !== undefined && job.length === 0) throw new HttpError(400, "job must name a job, got an empty value");
    if (after !== undefined) q.after = after;
    if (limit !== undefined) q.limit = limit;
    if (job !== undefined) q.job = job;
    return c.json({ events: await node.events(q) } satisfies EventsResponse, 200, { "Cache-Control": "no-store" });
  });

  return routes;
}
