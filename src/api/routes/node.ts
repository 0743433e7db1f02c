import { Hono } from "hono";
import type { ClusterNode } from "../../cluster/types.ts";
import type { HttpMetrics } from "../middleware/metrics.ts";
import type { ClusterResponse } from "../responses.ts";

/** `/v1/cluster` and `/metrics`: what the node and its peers look like. */
export function nodeRoutes(node: ClusterNode, http: HttpMetrics): Hono {
  const routes = new Hono();

  routes.get("/v1/cluster", async (c) => c.json({ node: node.name, members: await node.members() } satisfies ClusterResponse));

  routes.get("/metrics", async (c) => {
    const own = await node.metrics();
    const text = own.length === 0 || own.endsWith("\n") ? own : `${own}\n`;
    return c.body(text + http.text(), 200, { "Content-Type": "text/plain; version=0.0.4; charset=utf-8" });
  });

  return routes;
}
