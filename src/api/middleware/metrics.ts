import type { MiddlewareHandler } from "hono";
import { routePath } from "hono/route";

/** Upper bounds (seconds) of the latency histogram's buckets. */
const BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10] as const;

interface Series {
  method: string;
  route: string;
  status: number;
  count: number;
}

interface Latency {
  method: string;
  route: string;
  buckets: number[];
  sum: number;
  count: number;
}

function label(v: string): string {
  return v.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}

/**
 * The HTTP API's own counters: requests by method, route pattern and status,
 * latency to the response head by method and route, requests in flight.
 * Routes are the registered patterns (`/v1/jobs/:id`), never raw paths, so a
 * scan of random URLs cannot grow the series without bound.
 */
export class HttpMetrics {
  #requests = new Map<string, Series>();
  #latency = new Map<string, Latency>();
  inFlight = 0;

  observe(method: string, route: string, status: number, seconds: number): void {
    const rk = `${method} ${route} ${status}`;
    const s = this.#requests.get(rk) ?? { method, route, status, count: 0 };
    s.count++;
    this.#requests.set(rk, s);
    const lk = `${method} ${route}`;
    const l = this.#latency.get(lk) ?? { method, route, buckets: BUCKETS.map(() => 0), sum: 0, count: 0 };
    for (let i = 0; i < BUCKETS.length; i++) if (seconds <= (BUCKETS[i] as number)) l.buckets[i] = (l.buckets[i] as number) + 1;
    l.sum += seconds;
    l.count++;
    this.#latency.set(lk, l);
  }

  /** Prometheus text exposition of the counters. */
  text(): string {
    const out: string[] = [
      "# HELP matrixd_http_requests_total HTTP requests answered, by method, route and status.",
      "# TYPE matrixd_http_requests_total counter",
    ];
    for (const s of this.#requests.values()) {
      out.push(`matrixd_http_requests_total{method="${label(s.method)}",route="${label(s.route)}",status="${s.status}"} ${s.count}`);
    }
    out.push(
      "# HELP matrixd_http_request_duration_seconds Time from request to response head.",
      "# TYPE matrixd_http_request_duration_seconds histogram",
    );
    for (const l of this.#latency.values()) {
      const base = `method="${label(l.method)}",route="${label(l.route)}"`;
      BUCKETS.forEach((b, i) => out.push(`matrixd_http_request_duration_seconds_bucket{${base},le="${b}"} ${l.buckets[i]}`));
      out.push(`matrixd_http_request_duration_seconds_bucket{${base},le="+Inf"} ${l.count}`);
      out.push(`matrixd_http_request_duration_seconds_sum{${base}} ${l.sum}`);
      out.push(`matrixd_http_request_duration_seconds_count{${base}} ${l.count}`);
    }
    out.push(
      "# HELP matrixd_http_requests_in_flight HTTP requests being handled now.",
      "# TYPE matrixd_http_requests_in_flight gauge",
      `matrixd_http_requests_in_flight ${this.inFlight}`,
    );
    return `${out.join("\n")}\n`;
  }
}

/** Counts every request into `metrics`, errors and 404s included. */
export function requestMetrics(metrics: HttpMetrics): MiddlewareHandler {
  return async function countRequest(c, next) {
    const start = performance.now();
    metrics.inFlight++;
    try {
      await next();
    } finally {
      metrics.inFlight--;
      // The last matched pattern is the handler's; only this catch-all matching means no route did.
      let route = routePath(c, -1);
      if (route === "" || route === "*" || route === "/*") route = "unmatched";
      metrics.observe(c.req.method, route, c.res.status, (performance.now() - start) / 1000);
    }
  };
}
