import { LlmError } from "../errors.ts";
import type { AttemptFailure } from "./call.ts";
import type { Endpoint } from "./endpoint.ts";

/** Nonsense answers are retried this many times, however many retries are allowed. */
const NONSENSE_RETRIES = 2;
/**
 * Timeouts are retried this many times, however many retries are allowed: an
 * attempt is given its whole generation time, and a server that let three
 * pass is stuck, not busy.
 */
const TIMEOUT_RETRIES = 2;
/**
 * Broken connections to a watched endpoint (supervised, polled, reported by
 * the cluster) that a request may see without spending its retries: the
 * server is restarting, and the request waits for it or goes elsewhere.
 */
const MAX_EXCUSED = 100;

/** What a failed attempt means for the request. */
export type AfterFailure = "choose-again" | "retry";

/** The attempts of one chat request: what failed where, and whether it may go on. */
export class Tries {
  attempts = 0;
  /** failures that count against the retries */
  counted = 0;
  excused = 0;
  nonsense = 0;
  timeouts = 0;
  /** the last answer's Retry-After: the next try waits at least that long */
  retryAfterMs = 0;
  last: Endpoint | undefined;
  /** last failure per endpoint URL, for the final message */
  #failures: Map<string, string> | undefined;

  constructor(private readonly retries: number) {}

  /**
   * Record a failed attempt at `ep`. Returns "choose-again" for a broken
   * connection to a watched server (it is restarting: not counted), "retry"
   * when the request may try again; throws the request's final error when
   * the failure cannot be retried or the retries are spent.
   */
  failed(ep: Endpoint, f: AttemptFailure): AfterFailure {
    this.last = ep;
    (this.#failures ??= new Map()).set(ep.url, f.detail);
    if (f.kind === "network" && ep.managed && this.excused < MAX_EXCUSED) {
      this.excused++;
      return "choose-again";
    }
    return "retry";
  }

  /** After the endpoint was penalized: throw when the request must end, else count the retry. */
  spend(ep: Endpoint, f: AttemptFailure): void {
    if (!f.retryable) {
      const problem = f.problem;
      throw new LlmError(`LLM request rejected: ${ep.url} ${f.detail}`, f.status, ep.url, false, problem ? { problem } : undefined);
    }
    this.counted++;
    this.retryAfterMs = f.retryAfterMs ?? 0;
    const spent =
      (f.kind === "nonsense" && ++this.nonsense > NONSENSE_RETRIES) || (f.kind === "timeout" && ++this.timeouts > TIMEOUT_RETRIES);
    if (spent || this.counted > this.retries) {
      const n = this.attempts;
      throw new LlmError(`LLM request failed after ${n} attempt${n === 1 ? "" : "s"}: ${this.summary()}`, f.status, ep.url, true);
    }
  }

  /** The wait before the next try: full jitter over an exponential step, at least Retry-After. */
  delay(backoffMs: number, maxBackoffMs: number): number {
    const step = Math.min(maxBackoffMs, backoffMs * 2 ** Math.min(30, this.counted - 1));
    // Retry-After holds this request back, not the endpoint: the others' own 429s and the AIMD cut do that
    return Math.max(Math.random() * step, this.retryAfterMs);
  }

  /** "URL what happened; URL what happened" over every endpoint tried, or "" */
  summary(): string {
    return this.#failures ? [...this.#failures].map(([url, d]) => `${url} ${d}`).join("; ") : "";
  }
}
