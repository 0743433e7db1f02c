/** What one check found, before any task is admitted. */
export const CheckStatus = {
  ok: "ok",
  /** something is off but the job can run (a dead endpoint among live ones) */
  warn: "warn",
  /** the job cannot run as configured */
  fail: "fail",
} as const;
export type CheckStatus = (typeof CheckStatus)[keyof typeof CheckStatus];

/**
 * One result of a check: which check, what it looked at (an endpoint URL, a
 * model, a driver, a path) and a one-line message that names it.
 */
export interface CheckResult {
  check: string;
  target: string;
  status: CheckStatus;
  message: string;
}

/** A check: its results, found in parallel with the others. */
export type Check = () => CheckResult[] | Promise<CheckResult[]>;

/** Each probe gives up after this long: a server that says nothing in 3 s counts as not answering. */
export const PROBE_TIMEOUT_MS = 3_000;

export function result(check: string, target: string, status: CheckStatus, message: string): CheckResult {
  return { check, target, status, message };
}
