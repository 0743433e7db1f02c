/**
 * A hosted API's per-minute rate limits (requests and tokens), as OpenAI
 * applies and reports them: buckets that refill continuously, headers
 * `x-ratelimit-{limit,remaining,reset}-{requests,tokens}` on every answer
 * (resets written like Go durations: "20ms", "1.2s", "6m0s"), and a 429
 * naming the limit that ran out and when to try again.
 */

/** A duration as OpenAI writes it: Go's time.Duration format, to the millisecond. */
export function goDuration(ms: number): string {
  const t = Math.max(0, Math.ceil(ms));
  if (t < 1000) return `${t}ms`;
  const trim = (s: number): string => String(Number(s.toFixed(3)));
  if (t < 60_000) return `${trim(t / 1000)}s`;
  const h = Math.floor(t / 3_600_000);
  const m = Math.floor((t % 3_600_000) / 60_000);
  const s = trim((t % 60_000) / 1000);
  return h > 0 ? `${h}h${m}m${s}s` : `${m}m${s}s`;
}

class Bucket {
  private level: number;
  private last: number;
  private readonly perMs: number;
  constructor(
    readonly limit: number,
    now: number,
  ) {
    this.level = limit;
    this.last = now;
    this.perMs = limit / 60_000;
  }
  refill(now: number): void {
    this.level = Math.min(this.limit, this.level + (now - this.last) * this.perMs);
    this.last = now;
  }
  remaining(): number {
    return Math.floor(this.level);
  }
  /** ms until `n` more are there */
  waitFor(n: number): number {
    return Math.max(0, (n - this.level) / this.perMs);
  }
  /** ms until the bucket is full again */
  reset(): number {
    return (this.limit - this.level) / this.perMs;
  }
  take(n: number): void {
    this.level -= n;
  }
}

/** The outcome of a request against the limits. */
export type LimitCheck =
  | { ok: true; headers: Record<string, string> }
  | { ok: false; headers: Record<string, string>; kind: "requests" | "tokens"; message: string; retryMs: number };

/** The limits of one server; 0 = no limit of that kind. */
export class RateLimits {
  private readonly requests: Bucket | undefined;
  private readonly tokens: Bucket | undefined;

  constructor(
    rpm: number,
    tpm: number,
    private readonly model: string,
    private readonly now: () => number = () => performance.now(),
  ) {
    const t = now();
    this.requests = rpm > 0 ? new Bucket(rpm, t) : undefined;
    this.tokens = tpm > 0 ? new Bucket(tpm, t) : undefined;
  }

  /** The headers as things stand. */
  headers(): Record<string, string> {
    const t = this.now();
    this.requests?.refill(t);
    this.tokens?.refill(t);
    return this.currentHeaders();
  }

  /** Takes one request and `tokens` (its prompt plus the completion it may ask for) if both limits allow. */
  check(tokens: number): LimitCheck {
    const t = this.now();
    const r = this.requests;
    const k = this.tokens;
    r?.refill(t);
    k?.refill(t);
    if (r && r.remaining() < 1) {
      const wait = r.waitFor(1);
      const used = r.limit - r.remaining();
      return this.refused("requests", wait, `Rate limit reached for ${this.model} in organization org-sim on requests per min (RPM): Limit ${r.limit}, Used ${used}, Requested 1. Please try again in ${goDuration(wait)}. Visit https://platform.openai.com/account/rate-limits to learn more.`);
    }
    if (k && tokens > k.limit) {
      return this.refused("tokens", 60_000, `Request too large for ${this.model} in organization org-sim on tokens per min (TPM): Limit ${k.limit}, Requested ${tokens}. The input or output tokens must be reduced in order to run successfully. Visit https://platform.openai.com/account/rate-limits to learn more.`);
    }
    if (k && k.remaining() < tokens) {
      const wait = k.waitFor(tokens);
      const used = k.limit - k.remaining();
      return this.refused("tokens", wait, `Rate limit reached for ${this.model} in organization org-sim on tokens per min (TPM): Limit ${k.limit}, Used ${used}, Requested ${tokens}. Please try again in ${goDuration(wait)}. Visit https://platform.openai.com/account/rate-limits to learn more.`);
    }
    r?.take(1);
    k?.take(tokens);
    return { ok: true, headers: this.currentHeaders() };
  }

  private refused(kind: "requests" | "tokens", retryMs: number, message: string): LimitCheck {
    const headers = this.currentHeaders();
    headers["retry-after"] = String(Math.max(1, Math.ceil(retryMs / 1000)));
    headers["retry-after-ms"] = String(Math.ceil(retryMs));
    return { ok: false, headers, kind, message, retryMs };
  }

  private currentHeaders(): Record<string, string> {
    const h: Record<string, string> = {};
    const r = this.requests;
    const k = this.tokens;
    if (r) {
      h["x-ratelimit-limit-requests"] = String(r.limit);
      h["x-ratelimit-remaining-requests"] = String(r.remaining());
      h["x-ratelimit-reset-requests"] = goDuration(r.reset());
    }
    if (k) {
      h["x-ratelimit-limit-tokens"] = String(k.limit);
      h["x-ratelimit-remaining-tokens"] = String(k.remaining());
      h["x-ratelimit-reset-tokens"] = goDuration(k.reset());
    }
    return h;
  }
}
