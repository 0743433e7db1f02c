import type { Logger } from "../log.ts";
import type { AttemptFailure } from "./call.ts";
import { type Endpoint, FAILS_TO_DOWN } from "./endpoint.ts";
import type { Completion } from "./wire.ts";

/** How long a failing endpoint is avoided while others can serve. */
const PENALTY_MS = 1000;
/** Load a broken endpoint counts as, in capacities, while penalized. */
const BROKEN_PENALTY_LOAD = 100;

/**
 * What a failed attempt does to its endpoint's standing: an overloaded one
 * (429, timeout) is avoided a little and its concurrency cut (AIMD); a
 * broken one (network, 5xx, nonsense) is avoided more and, failing again,
 * taken down for a backoff. Returns true when this failure took it down.
 */
export function penalize(
  ep: Endpoint,
  f: AttemptFailure,
  o: { epoch: number; now: number; adaptive: boolean; maxBackoffMs: number; log: Logger },
): boolean {
  const overload = f.kind === "timeout" || (f.kind === "status" && f.cls === "overload");
  const broken = f.kind === "network" || f.kind === "nonsense" || (f.kind === "status" && f.cls === "transient");
  // a request the server cannot take as sent says nothing of the server
  if (!overload && !broken) return false;
  // an overloaded endpoint still takes work when the others are fuller; a broken one hardly
  ep.penalize(o.now, Math.max(PENALTY_MS, f.retryAfterMs ?? 0), broken ? BROKEN_PENALTY_LOAD : 1);
  if (overload && ep.onOverload(o.epoch, o.adaptive)) {
    o.log.info({ endpoint: ep.url, limit: ep.slots.limit, reason: f.detail }, "LLM endpoint concurrency cut");
  }
  if (broken && ep.onFailure(o.now, Math.max(1, o.maxBackoffMs))) {
    o.log.warn({ event: "endpoint.down", endpoint: ep.url, fails: ep.fails, reason: f.detail }, "LLM endpoint down");
    return true;
  }
  return false;
}

/**
 * What an answer does: the endpoint is up, its limit may grow, and its
 * token counts and budget are settled. Returns true when it was down.
 */
export function credit(ep: Endpoint, done: Completion, o: { sentTokens: number; ms: number; adaptive: boolean; log: Logger }): boolean {
  const wasDown = ep.fails >= FAILS_TO_DOWN;
  if (wasDown) o.log.info({ event: "endpoint.up", endpoint: ep.url }, "LLM endpoint up again");
  ep.onSuccess(o.ms, o.adaptive);
  ep.answeredOnce = true;
  ep.unreachableSince = -1;
  ep.promptTokens += done.prompt;
  ep.completionTokens += done.completion;
  // the estimate was charged up front; settle with what was really used
  if (o.sentTokens > 0) ep.tpm?.give(o.sentTokens - done.prompt - done.completion);
  return wasDown;
}
