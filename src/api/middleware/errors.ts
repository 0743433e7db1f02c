import type { Context, ErrorHandler, NotFoundHandler } from "hono";
import { HTTPException } from "hono/http-exception";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import { isNatsUnavailable, JobStoreError } from "../../store/index.ts";
import { ConfigError, CodecError, describe, SeedError } from "../../errors.ts";
import type { Logger } from "../../log.ts";
import { WorkflowError } from "../../workflow/index.ts";
import { HttpError } from "../http-error.ts";
import type { ErrorBody } from "../responses.ts";

export interface ErrorHandlerOptions {
  log?: Logger;
}

/**
 * The one place errors become responses: HttpError keeps its status and
 * message; the project's input errors (bad seed, config or message) are the
 * client's fault and answer 400 (a workflow definition's problems each in
 * `details`); a job that exists already or changed
 * under the request answers 409; NATS that cannot answer now answers 503
 * (try again); hono's own exceptions keep their status; anything else is a
 * 500 naming the error, and is logged.
 */
export function errorHandler(opts: ErrorHandlerOptions = {}): ErrorHandler {
  return function handleError(err: Error, c: Context): Response {
    if (err instanceof HttpError) {
      const body: ErrorBody = { error: err.message };
      if (err.details) body.details = err.details;
      if (err.status >= 500) opts.log?.error({ err, method: c.req.method, path: c.req.path }, "request failed");
      return c.json(body, err.status, err.headers);
    }
    if (err instanceof WorkflowError) {
      // A workflow definition that fails its checks: every problem, one per detail.
      return c.json({ error: err.message, details: err.problems } satisfies ErrorBody, 400);
    }
    if (err instanceof SeedError || err instanceof ConfigError || err instanceof CodecError) {
      return c.json({ error: err.message } satisfies ErrorBody, 400);
    }
    if (err instanceof JobStoreError) {
      return c.json({ error: err.message } satisfies ErrorBody, 409);
    }
    if (isNatsUnavailable(err)) {
      opts.log?.warn({ err: describe(err), method: c.req.method, path: c.req.path }, "NATS cannot answer now");
      return c.json({ error: `the cluster's NATS cannot answer now (${err.name}: ${describe(err)}); try again` } satisfies ErrorBody, 503, { "Retry-After": "2" });
    }
    if (err instanceof HTTPException) {
      // hono's own (a malformed body it parsed, ...): keep the status, answer JSON like everything else
      const status = err.status as ContentfulStatusCode;
      if (status >= 500) opts.log?.error({ err, method: c.req.method, path: c.req.path }, "request failed");
      return c.json({ error: err.message || `HTTP ${status}` } satisfies ErrorBody, status);
    }
    opts.log?.error({ err, method: c.req.method, path: c.req.path }, "request failed");
    return c.json({ error: `internal error: ${err.name}: ${describe(err)}` } satisfies ErrorBody, 500);
  };
}

/** 404 for a route that does not exist, in the same JSON shape as every error. */
export function notFound(): NotFoundHandler {
  return function routeNotFound(c: Context): Response {
    return c.json({ error: `no route ${c.req.method} ${c.req.path}` } satisfies ErrorBody, 404);
  };
}
