import type { Cancellable } from "./limiter.ts";

/** Rejection reason of a wait cut short by abort or close. */
export const INTERRUPTED: unique symbol = Symbol("interrupted");

export type FailureKind = "network" | "timeout" | "status" | "nonsense";

/** One attempt that went wrong, before deciding whether to retry. */
export class AttemptFailure {
  constructor(
    readonly kind: FailureKind,
    readonly status: number | undefined,
    /** e.g. `answered 503 Service Unavailable`, following the endpoint URL */
    readonly detail: string,
    readonly retryAfterMs: number | undefined,
  ) {}

  get retryable(): boolean {
    if (this.kind !== "status") return true;
    const s = this.status ?? 0;
    return s === 408 || s === 429 || s >= 500;
  }
}

/** The state of one `chat` call that abort and close need to reach. */
export class Call implements Cancellable {
  cancel: ((why: unknown) => void) | null = null;
  /** the attempt's fetch, while one is running */
  ctl: AbortController | null = null;
  timedOut = false;
  stop: "abort" | "closed" | null = null;
  reason: unknown;

  interrupt(stop: "abort" | "closed", reason?: unknown): void {
    if (this.stop) return;
    this.stop = stop;
    this.reason = reason;
    this.ctl?.abort(reason);
    const cancel = this.cancel;
    this.cancel = null;
    cancel?.(INTERRUPTED);
  }
}
