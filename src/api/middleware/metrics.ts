import type { MiddlewareHandler } from "hono";
import { matchedRoutes } from "hono/route";
import { Histogram } from "../../metrics/histogram.ts";
import { label, PromWriter } from "../../metrics/text.ts";

/** Upper bounds (ms) of the latency histogram's buckets. */
const BUCKETS_MS = [1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 10_000] as const;

interface Series {
  labels: string;
  count: number;
}

interface Latency {
  labels: string;
  hist: Histogram;
}

/**
 * The HTTP API's own counters: requests by method, route pattern and status,
 * latency to the response head by method and route, requests in flight;
 * every series names the node. Routes are the registered patterns
 * (`/v1/jobs/:id`), never raw paths, so a scan of random URLs cannot grow
 * the series without bound.
 */
export class HttpMetrics {
  #requests = new Map<string, Series>();
  #latency = new Map<string, Latency>();
  inFlight = 0;

  constructor(readonly node: string) {}

  observe(method: string, route: string, status: number, seconds: number): void {
    const lk = `${method} ${route}`;
    const rk = `${lk} ${status}`;
    let s = this.#requests.get(rk);
    if (!s) {
      s = { labels: `${label("method", method)},${label("route", route)},status="${status}"`, count: 0 };
      this.#requests.set(rk, s);
    }
    s.count++;
    let l = this.#latency.get(lk);
    if (!l) {
      l = { labels: `${label("method", method)},${label("route", route)}`, hist: new Histogram(BUCKETS_MS) };
      this.#latency.set(lk, l);
    }
    l.hist.observe(seconds * 1000);
  }

  /** Prometheus text exposition of the counters. */
  text(): string {
    const w = new PromWriter(label("node", this.node));
    w.many("matrixd_http_requests_total", "counter", "HTTP requests answered, by method, route and status.", [...this.#requests.values()].map((s) => [s.labels, s.count]));
    w.histogram("matrixd_http_request_duration_seconds", "Time from request to response head.", [...this.#latency.values()].map((l) => [l.labels, l.hist]));
    w.one("matrixd_http_requests_in_flight", "gauge", "HTTP requests being handled now.", this.inFlight);
    return w.text();
  }
}

/**
 * The pattern of the route that answered: the last matched route that is a
 * handler (middleware is registered for every method, as `ALL`), whether
 * or not the middleware after it ran; "unmatched" when none matched.
 */
function routeOf(c: Parameters<MiddlewareHandler>[0]): string {
  const routes = matchedRoutes(c);
  for (let i = routes.length - 1; i >= 0; i--) {
    const r = routes[i];
    if (r && r.method !== "ALL") return r.path;
  }
  return "unmatched";
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
      metrics.observe(c.req.method, routeOf(c), c.res.status, (performance.now() - start) / 1000);
    }
  };
}
