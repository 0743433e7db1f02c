import type { Logger } from "../log.ts";
import type { Endpoint } from "./endpoint.ts";
import { describeNetworkError } from "./wire.ts";

/** How often each endpoint's metrics are read. */
export const POLL_MS = 1_000;
const POLL_TIMEOUT_MS = 2_000;
/** Polls in a row that cannot connect before the endpoint is taken out. */
const POLL_FAILS_OUT = 2;

/**
 * Reads the load of the endpoints that ask for it (`metrics` in their
 * config) from their Prometheus metrics, once a second: vLLM's running and
 * waiting requests, and the slots when the server says. A server whose
 * metrics refuse connections is reported out until they answer again; one
 * that answers with an error status or slowly is only left without a fresh
 * load (a loaded vLLM may be slow to render its metrics).
 */
export class MetricsPoller {
  private timer: ReturnType<typeof setInterval> | undefined;
  private stopped = false;
  private readonly stopping = new AbortController();
  /** the poll under way of each endpoint */
  private readonly running = new Map<Endpoint, Promise<void>>();

  constructor(
    private readonly endpoints: () => readonly Endpoint[],
    /** called when a poll takes an endpoint out or brings it back */
    private readonly onHealth: (ep: Endpoint, up: boolean) => void,
    private readonly log: Logger,
  ) {}

  /** Start polling (if any endpoint asks), and poll `now` at once. */
  ensure(now: readonly Endpoint[] = []): void {
    if (this.stopped) return;
    for (const ep of now) if (ep.metricsUrl) void this.poll(ep);
    if (this.timer === undefined && this.endpoints().some((e) => e.metricsUrl)) {
      this.timer = setInterval(() => this.tick(), POLL_MS);
      // polling alone does not keep a process alive
      this.timer.unref?.();
    }
  }

  /** Read every polled endpoint's metrics now; resolves when all have answered or failed. */
  async refresh(): Promise<void> {
    await Promise.all(this.endpoints().map((ep) => (ep.metricsUrl ? (this.running.get(ep) ?? this.poll(ep)) : undefined)));
  }

  stop(): void {
    this.stopped = true;
    this.stopping.abort();
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
  }

  private tick(): void {
    for (const ep of this.endpoints()) if (ep.metricsUrl && !this.running.has(ep)) void this.poll(ep);
  }

  private poll(ep: Endpoint): Promise<void> {
    const under = this.running.get(ep);
    if (under) return under;
    const p = this.pollOnce(ep).finally(() => this.running.delete(ep));
    this.running.set(ep, p);
    return p;
  }

  private async pollOnce(ep: Endpoint): Promise<void> {
    const url = ep.metricsUrl;
    if (!url || ep.removed) return;
    try {
      const signal = AbortSignal.any([this.stopping.signal, AbortSignal.timeout(POLL_TIMEOUT_MS)]);
      const res = await fetch(url, { signal, ...(ep.authorization ? { headers: { authorization: ep.authorization } } : {}) });
      const text = await res.text();
      if (this.stopped) return;
      if (res.status === 404 || res.status === 501) {
        // llama.cpp without --metrics answers 501; a server without the route, 404: its load stays unseen
        ep.noMetrics();
        ep.missingMetrics = ["(no metrics at all)"];
        this.log.warn({ endpoint: ep.url, status: res.status, url }, "LLM endpoint has no metrics: its load is not seen (start llama.cpp with --metrics, SGLang with --enable-metrics)");
        return;
      }
      if (!res.ok) {
        this.log.debug({ endpoint: ep.url, status: res.status }, "cannot read LLM endpoint metrics");
        return;
      }
      ep.pollFails = 0;
      if (ep.healthFromMetrics) this.onHealth(ep, true);
      // metrics read before the kind is known would be read with the wrong names
      if (!ep.dialect) return;
      const load = ep.dialect.parseLoad(text);
      if (load.missing.length > 0 && ep.missingMetrics.length === 0) {
        this.log.warn({ endpoint: ep.url, kind: ep.dialect?.kind, missing: load.missing }, "LLM endpoint metrics lack the names its kind publishes: its load is not seen");
      }
      ep.missingMetrics = load.missing;
      // zeros read for names that are not there are no load report
      if (load.missing.length === 0) ep.observe(load, performance.now());
    } catch (err) {
      if (this.stopped) return;
      const why = describeNetworkError(err);
      // a timeout is a busy server, not a dead one
      if (!/refused|reset|closed|ECONN|Unable to connect/i.test(why)) return;
      if (++ep.pollFails === POLL_FAILS_OUT) this.log.warn({ endpoint: ep.url, reason: why }, "LLM endpoint metrics unreachable");
      if (ep.pollFails >= POLL_FAILS_OUT && ep.healthFromMetrics) this.onHealth(ep, false);
    }
  }
}
