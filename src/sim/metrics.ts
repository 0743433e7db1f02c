import type { SimLive } from "./kinds/types.ts";

/**
 * What the HTTP side counts, and the Prometheus text helpers the kinds'
 * /metrics share. Each kind renders its own server's series; the `sim:`
 * series (the simulator's own figures, from which utilization can be read
 * off the server) come after them, whatever the kind.
 */

/** Latency buckets, seconds: vLLM's, with finer ones below since the sim runs time-scaled. */
export const LATENCY_BUCKETS = [
  0.01, 0.025, 0.05, 0.1, 0.3, 0.5, 0.8, 1, 1.5, 2, 2.5, 5, 10, 15, 20, 30, 40, 50, 60, 120, 240, 480, 960, 1920, 7680,
];

/** Counters the HTTP side keeps (the engine keeps its own). */
export class ServerCounters {
  requests = 0;
  success: Record<string, number> = { stop: 0, length: 0, abort: 0 };
  injected: Record<string, number> = { "429": 0, "500": 0 };
  rejected = 0;
  /** requests each rule of the sim script answered, by rule number - 1 */
  scripted: number[] = [];
  readonly latencyBuckets = new Float64Array(LATENCY_BUCKETS.length);
  latencySum = 0;
  latencyCount = 0;

  observeLatency(seconds: number): void {
    this.latencySum += seconds;
    this.latencyCount++;
    for (let i = 0; i < LATENCY_BUCKETS.length; i++) {
      if (seconds <= LATENCY_BUCKETS[i]!) {
        this.latencyBuckets[i]!++;
        break;
      }
    }
  }
}

/** A label value, escaped for the text exposition. */
export function esc(v: string): string {
  return v.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"');
}

/** A sample value as Prometheus writes it. */
export function num(v: number): string {
  return Number.isFinite(v) ? String(v) : v > 0 ? "+Inf" : v < 0 ? "-Inf" : "NaN";
}

/** Collects series: HELP, TYPE and samples, in order. */
export class PromText {
  private readonly out: string[] = [];

  /** A series with one sample; `labels` is the inside of the braces ("" for none). */
  one(name: string, type: string, help: string, value: number, labels = ""): this {
    this.out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`, labels ? `${name}{${labels}} ${num(value)}` : `${name} ${num(value)}`);
    return this;
  }

  /** HELP and TYPE lines only; samples follow with `line`. */
  head(name: string, type: string, help: string): this {
    this.out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    return this;
  }

  line(s: string): this {
    this.out.push(s);
    return this;
  }

  /** The exposition, ending with a newline. */
  text(): string {
    return this.out.join("\n") + "\n";
  }
}

/** The `sim:` series: capacity, utilization, and the counters every kind shares. */
export function simSeries(p: PromText, live: SimLive): void {
  const label = `model_name="${esc(live.o.model)}"`;
  const e = live.engine();
  const s = live.server;
  p.one("sim:ceiling_tokens_per_second", "gauge", "Most generated tokens per second of wall time (every slot busy).", live.ceilingTps, label);
  p.one("sim:slots", "gauge", "Sequences decoded at once at most.", live.o.slots, label);
  p.one("sim:running_seconds_total", "counter", "Integral over wall time of running/slots, seconds.", e.runningSeconds, label);
  p.one("sim:running", "gauge", "Sequences decoding now.", e.running, label);
  p.one("sim:waiting", "gauge", "Requests queued for a slot.", e.waiting, label);
  p.one("sim:prompt_tokens_total", "counter", "Prompt tokens of the requests admitted.", e.promptTokens, label);
  p.one("sim:generation_tokens_total", "counter", "Tokens generated.", e.generationTokens, label);
  p.one("sim:requests_total", "counter", "Chat completion requests received.", s.requests, label);
  p.one("sim:rejected_requests_total", "counter", "Chat completion requests refused as invalid (400, 404, 413...).", s.rejected, label);
  p.head("sim:injected_errors_total", "counter", "Errors answered on purpose.");
  for (const [code, n] of Object.entries(s.injected)) p.line(`sim:injected_errors_total{code="${code}",${label}} ${n}`);
  if (s.scripted.length > 0) {
    p.head("sim:script_replies_total", "counter", "Requests answered by each rule of the sim script (errors included).");
    s.scripted.forEach((n, i) => p.line(`sim:script_replies_total{rule="${i + 1}",${label}} ${n}`));
  }
  p.one("sim:http_busy", "gauge", "HTTP threads busy (llama.cpp's pool; 0 for other kinds).", live.http.busy, label);
  p.one("sim:http_waiting", "gauge", "HTTP requests waiting for a thread (llama.cpp's pool; 0 for other kinds).", live.http.waiting, label);
}

/** The Prometheus content type every kind answers /metrics with. */
export const PROM_HEADERS = { "content-type": "text/plain; version=0.0.4; charset=utf-8" };
