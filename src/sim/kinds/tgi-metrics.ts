import { PromText, num, simSeries } from "../metrics.ts";
import type { SimLive } from "./types.ts";

/**
 * TGI's router metrics (router/src/server.rs and backends/v3 of v3.3.6, as
 * metrics-exporter-prometheus writes them: no `_total` suffix, no labels but
 * `err` on failures), kept from the requests the server answered.
 */

/** Histogram buckets as TGI sets them: 100 even steps up to a maximum, or its geometric durations. */
function evenBuckets(max: number): number[] {
  return Array.from({ length: 100 }, (_, x) => (max / 100) * (x + 1));
}
function durationBuckets(): number[] {
  const out: number[] = [];
  let v = 0.0001;
  for (let i = 0; i < 35; i++) out.push((v *= 1.5));
  return out;
}

class Histogram {
  readonly counts: Float64Array;
  sum = 0;
  count = 0;
  constructor(readonly bounds: number[]) {
    this.counts = new Float64Array(bounds.length);
  }
  observe(v: number): void {
    this.sum += v;
    this.count++;
    for (let i = 0; i < this.bounds.length; i++) {
      if (v <= this.bounds[i]!) {
        this.counts[i]!++;
        return;
      }
    }
  }
  write(p: PromText, name: string, help: string): void {
    p.head(name, "histogram", help);
    let cum = 0;
    for (let i = 0; i < this.bounds.length; i++) {
      cum += this.counts[i]!;
      p.line(`${name}_bucket{le="${this.bounds[i]}"} ${cum}`);
    }
    p.line(`${name}_bucket{le="+Inf"} ${this.count}`).line(`${name}_sum ${num(this.sum)}`).line(`${name}_count ${this.count}`);
  }
}

/** TGI's counters and histograms of one server. */
export class TgiMetrics {
  requests = 0;
  success = 0;
  readonly failures: Record<string, number> = {};
  private readonly inputLength: Histogram;
  private readonly generated: Histogram;
  private readonly duration = new Histogram(durationBuckets());

  constructor(private readonly live: SimLive) {
    this.inputLength = new Histogram(evenBuckets(live.o.contextTokens - 1));
    this.generated = new Histogram(evenBuckets(live.o.contextTokens));
  }

  failed(err: string): void {
    this.failures[err] = (this.failures[err] ?? 0) + 1;
  }

  done(promptTokens: number, generated: number, seconds: number): void {
    this.success++;
    this.inputLength.observe(promptTokens);
    this.generated.observe(generated);
    this.duration.observe(seconds);
  }

  text(): string {
    const e = this.live.engine();
    const p = new PromText();
    p.one("tgi_request_count", "counter", "Total number of requests", this.requests);
    p.one("tgi_request_success", "counter", "Number of successful requests", this.success);
    // described nowhere in TGI, so its exporter writes no HELP for it
    if (Object.keys(this.failures).length > 0) p.line("# TYPE tgi_request_failure counter");
    for (const [err, n] of Object.entries(this.failures)) p.line(`tgi_request_failure{err="${err}"} ${n}`);
    p.one("tgi_queue_size", "gauge", "Current queue size", e.waiting);
    p.one("tgi_batch_current_size", "gauge", "Current batch size", e.running);
    p.one("tgi_batch_current_max_tokens", "gauge", "Maximum tokens for the current batch", e.running * this.live.o.contextTokens);
    p.one("tgi_batch_inference_count", "counter", "Inference calls per method (prefill or decode)", e.steps);
    this.inputLength.write(p, "tgi_request_input_length", "Input token length per request");
    this.generated.write(p, "tgi_request_generated_tokens", "Generated tokens per request");
    this.duration.write(p, "tgi_request_duration", "Request duration");
    if (this.live.o.simMetrics) simSeries(p, this.live);
    return p.text();
  }
}
