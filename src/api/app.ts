import { Hono } from "hono";
import type { ClusterNode } from "../cluster/types.ts";
import type { Logger } from "../log.ts";
import type { Registry } from "../plugin/registry.ts";
import { DASHBOARD_CSP, DASHBOARD_HTML, DASHBOARD_ICON } from "./dashboard/page.ts";
import { DownloadSigner } from "./download.ts";
import { bearerAuth } from "./middleware/auth.ts";
import { errorHandler, notFound } from "./middleware/errors.ts";
import { bodyLimit } from "./middleware/limits.ts";
import { HttpMetrics, requestMetrics } from "./middleware/metrics.ts";
import { eventRoutes } from "./routes/events.ts";
import { downloadRoutes, jobRoutes } from "./routes/jobs.ts";
import { nodeRoutes } from "./routes/node.ts";

/** Request bodies past this many bytes answer 413 (64 GiB: an NDJSON submission streams, in bounded memory). */
export const DEFAULT_MAX_BODY_BYTES = 64 * 1024 ** 3;
/** JSON bodies past this many bytes answer 413 (64 MiB: a JSON body is parsed whole). */
export const DEFAULT_MAX_JSON_BYTES = 64 * 1024 * 1024;
/** Jobs with more seeds than this answer 413. */
export const DEFAULT_MAX_SEEDS = 50_000_000;

export interface AppOptions {
  /** when set, every route but `/healthz` and the dashboard page needs `Authorization: Bearer <token>` */
  token?: string;
  /** bytes a request body may have (default 64 GiB) */
  maxBodyBytes?: number;
  /** bytes a JSON body may have (default 64 MiB) */
  maxJsonBytes?: number;
  /** seeds a job may have (default 50,000,000) */
  maxSeeds?: number;
  log?: Logger;
  /** the workflows seeds are checked against: the node's own */
  registry: Registry;
}

/**
 * The HTTP API of a node, over any ClusterNode. Serve it with
 * `Bun.serve({ fetch: app.fetch })`, or call `app.request(...)` in tests.
 *
 * Open routes: `GET /healthz`, `GET /` (the dashboard page holds no
 * data; its script asks for the token) and its icon, and `GET /v1/download/:id` (a
 * job's dataset, only through a signed link that expires within a
 * minute). Everything else sits behind the bearer token when one is set.
 *
 * @example
 * ```ts
 * const app = createApp(node, { registry, token: process.env.MATRIXD_TOKEN, log });
 * Bun.serve({ hostname: "0.0.0.0", port: 7420, fetch: app.fetch });
 * ```
 */
export function createApp(node: ClusterNode, opts: AppOptions): Hono {
  const registry = opts.registry;
  const http = new HttpMetrics(node.name);
  const app = new Hono();

  app.onError(errorHandler({ log: opts.log }));
  app.notFound(notFound());
  app.use(requestMetrics(http));

  app.get("/healthz", (c) => c.json({ status: "ok", node: node.name }));
  app.get("/", (c) => c.html(DASHBOARD_HTML, 200, { "Content-Security-Policy": DASHBOARD_CSP, "Cache-Control": "no-cache" }));
  app.get("/favicon.ico", (c) => c.body(DASHBOARD_ICON, 200, { "Content-Type": "image/svg+xml", "Cache-Control": "max-age=86400" }));
  const downloads = new DownloadSigner();
  app.route("/v1/download", downloadRoutes(node, downloads));

  app.use(bearerAuth({ token: opts.token }));
  app.use(bodyLimit({ maxBytes: opts.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES, maxJsonBytes: opts.maxJsonBytes ?? DEFAULT_MAX_JSON_BYTES }));

  app.route(
    "/v1/jobs",
    jobRoutes({ node, registry, limits: { maxSeeds: opts.maxSeeds ?? DEFAULT_MAX_SEEDS }, downloads }),
  );
  app.route("/v1/events", eventRoutes(node));
  app.route("/", nodeRoutes(node, http));
  return app;
}
