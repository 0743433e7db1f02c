import type { ErrorClass } from "./dialect/types.ts";
import type { Cancellable } from "../util/wait.ts";

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
    /** what an error answer means (its dialect's reading of status and words) */
    readonly cls: ErrorClass = "transient",
  ) {}

  /** Whether trying again may help: not for a request the server can never take as sent. */
  get retryable(): boolean {
    return this.kind !== "status" || this.cls === "transient" || this.cls === "overload";
  }

  /** Why the request cannot succeed as sent, when that is what the answer says. */
  get problem(): "config" | "context" | undefined {
    return this.kind === "status" && (this.cls === "config" || this.cls === "context") ? this.cls : undefined;
  }
}

/** The state of one `chat` call that abort and close need to reach. */
export class Call implements Cancellable {
  cancel: ((why: unknown) => void) | null = null;
  /** the attempt's fetch, while one is running */
  ctl: AbortController | null = null;
  timedOut = false;
  stop: "abort" | "closed" | null = null;
  /** counted among the requests waiting for an endpoint to come back */
  held = false;
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
