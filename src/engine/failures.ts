import type { Failure, FailureTally } from "../protocol/job.ts";

/** Distinct reasons a tally keeps; failures of any further reason are counted under OTHER_REASONS. */
export const MAX_REASONS = 20;
/** The reason that counts the failures past MAX_REASONS distinct ones. */
export const OTHER_REASONS = "other reasons";
/** Reasons a status or summary lists at most. */
export const TOP_REASONS = 10;
/** Characters of an example error kept (a tally travels in NATS every second). */
const MAX_ERROR = 2000;
const MAX_REASON = 200;

/**
 * The reason of a failed task's error: its first line with what differs
 * from task to task (numbers, ids, quoted values, URL ports and path
 * numbers, the task's own id) replaced, so that the same failure of
 * every task groups into one reason.
 *
 * @example
 * ```ts
 * failureReason("connection refused after 7 attempts to http://127.0.0.1:4312/v1");
 * // "connection refused after N attempts to http://127.0.0.1:N/v1"
 * ```
 */
export function failureReason(error: string, task?: string): string {
  let s = (error.split("\n").find((l) => l.trim().length > 0) ?? "").trim();
  if (task && task.length >= 3) s = s.split(task).join("<task>");
  // URLs and quoted text, once replaced, are set aside so the rules for numbers and ids leave them alone
  const kept: string[] = [];
  const keep = (text: string) => `\u0000${letters(kept.push(text) - 1)}\u0000`;
  s = s
    .replace(/\b[a-z][a-z0-9+.-]*:\/\/[^\s"'`<>()]+/gi, (u) => keep(url(u)))
    .replace(/"(?:[^"\\]|\\.)*"|'[^'\s][^']*'|`[^`]*`/g, (q) => keep(quoted(q)))
    // an HTTP status says what went wrong (429 is not 500): it stays
    .replace(/\b(?:answered|status|HTTP|code) [1-5]\d\d\b/g, keep)
    .replace(/\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b/gi, "<id>")
    .replace(/\b(?!\d+(?:ms|s|m|h|k|kb|mb|gb|b|x)\b)(?=[A-Za-z0-9_-]*\d[A-Za-z0-9_-]*\d)(?=[A-Za-z0-9_-]*[A-Za-z])[A-Za-z0-9_-]{8,}\b/g, "<id>")
    .replace(/(?<![A-Za-z_<])\d+(?:[.,]\d+)*(?=(?:ms|s|m|h|k|kb|mb|gb|b|x|%)?(?![A-Za-z_]))/gi, "N")
    .replace(/\s+/g, " ")
    .replace(/\u0000([a-z]+)\u0000/g, (_, k: string) => kept[index(k)] ?? "");
  if (s.length > MAX_REASON) s = `${s.slice(0, MAX_REASON - 1)}…`;
  return s || "no error given";
}

/** 0 → "a", 25 → "z", 26 → "ba": a marker's number in letters only (no rule for numbers touches it). */
function letters(n: number): string {
  let out = "";
  do {
    out = String.fromCharCode(97 + (n % 26)) + out;
    n = Math.floor(n / 26);
  } while (n > 0);
  return out;
}

function index(k: string): number {
  let n = 0;
  for (const c of k) n = n * 26 + (c.charCodeAt(0) - 97);
  return n;
}

/** A URL with its port and its path's numeric segments replaced; its query and fragment dropped. */
function url(u: string): string {
  const m = /^([a-z][a-z0-9+.-]*:\/\/)([^/:?#]*)(:\d+)?([^?#]*)/i.exec(u);
  if (!m) return u;
  const [, scheme, host, port, path] = m;
  return `${scheme}${host}${port ? ":N" : ""}${(path ?? "").replace(/(?<=\/)\d+(?=\/|$)/g, "N")}`;
}

/** A quoted value replaced, unless it is a short name (a field, a role): `"id" must be a string` stays. */
function quoted(q: string): string {
  const inner = q.slice(1, -1);
  return /^[A-Za-z_][A-Za-z_.-]{0,31}$/.test(inner) ? q : `${q[0]}…${q[0]}`;
}

/** Count `count` failures of `reason` into `t`, with an example when the reason is new. */
export function addFailure(t: FailureTally, reason: string, count: number, task: string, error: string): void {
  const known = t[reason];
  if (known) {
    known.count += count;
    return;
  }
  const key = reason !== OTHER_REASONS && distinct(t) >= MAX_REASONS ? OTHER_REASONS : reason;
  const into = t[key];
  if (into) into.count += count;
  else t[key] = { count, task, error: error.length > MAX_ERROR ? `${error.slice(0, MAX_ERROR - 1)}…` : error };
}

function distinct(t: FailureTally): number {
  const n = Object.keys(t).length;
  return OTHER_REASONS in t ? n - 1 : n;
}

/** Count a failed task's error into `t`. */
export function addFailedTask(t: FailureTally, task: string, error: string | undefined): void {
  const e = error ?? "";
  addFailure(t, failureReason(e, task), 1, task, e || "no error given");
}

/** Add another tally's failures (another node's) into `t`. */
export function mergeFailures(t: FailureTally, other: FailureTally): void {
  for (const [reason, f] of Object.entries(other)) addFailure(t, reason, f.count, f.task, f.error);
}

/** The most common reasons, most first (ties by reason), at most `max`. */
export function topFailures(t: FailureTally | undefined, max = TOP_REASONS): Failure[] {
  return Object.entries(t ?? {})
    .map(([reason, f]) => ({ reason, count: f.count, task: f.task, error: f.error }))
    .sort((a, b) => b.count - a.count || a.reason.localeCompare(b.reason))
    .slice(0, max);
}

function n(x: number): string {
  return x.toLocaleString("en-US");
}

/**
 * The failure lines of a summary: `allFailed`, when every row failed, one
 * line saying so with the main reason (to print first); `reasons`, the most
 * common reasons with their counts and one example task each (at most `max`).
 */
export function failureSummary(failures: readonly Failure[] | undefined, ok: number, failed: number, max = 5): { allFailed?: string; reasons: string[] } {
  const list = failures ?? [];
  const top = list[0];
  const allFailed = ok === 0 && failed > 0 ? `every task failed (${n(failed)} of ${n(failed)})${top ? `: ${top.reason} (${n(top.count)})` : ""}` : undefined;
  if (failed === 0 || list.length === 0) return { ...(allFailed ? { allFailed } : {}), reasons: [] };
  const shown = list.slice(0, max);
  const width = Math.max(...shown.map((f) => n(f.count).length));
  const reasons = [
    `  failures by reason${list.length > max ? ` (the ${max} most common)` : ""}:`,
    ...shown.map((f) => `    ${n(f.count).padStart(width)}  ${f.reason}  (e.g. task ${f.task})`),
  ];
  return { ...(allFailed ? { allFailed } : {}), reasons };
}
