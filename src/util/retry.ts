import { sleep } from "./wait.ts";

/** The wait before try `attempt + 1` after `attempt` failures (from 1): `baseMs` doubled each time, at most `maxMs`. */
export function backoffMs(attempt: number, baseMs: number, maxMs: number): number {
  return Math.min(maxMs, baseMs * 2 ** Math.min(Math.max(0, attempt - 1), 30));
}

export interface RetryOptions {
  /** the first wait; each next one is twice the last */
  baseMs: number;
  /** the longest wait */
  maxMs: number;
  /** tries in all; the last error is thrown after them (default: no limit) */
  tries?: number;
  /** errors worth another try; any other is thrown at once (default: every error) */
  retryable?: (err: unknown) => boolean;
  /** checked after each failure: when true, the error is thrown instead of waiting */
  giveUp?: () => boolean;
  /** told of each failure that will be tried again (`attempt` counts failures from 1), before the wait */
  onRetry?: (err: unknown, attempt: number, waitMs: number) => void | Promise<void>;
}

/**
 * Run `fn` until it resolves, waiting with exponential backoff between
 * failures. Throws the last error when it is not retryable, when the tries
 * are spent or when `giveUp` says so.
 */
export async function retry<T>(fn: (attempt: number) => Promise<T>, o: RetryOptions): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn(attempt);
    } catch (err) {
      if (o.retryable && !o.retryable(err)) throw err;
      if (o.tries !== undefined && attempt >= o.tries) throw err;
      if (o.giveUp?.()) throw err;
      const wait = backoffMs(attempt, o.baseMs, o.maxMs);
      await o.onRetry?.(err, attempt, wait);
      await sleep(wait);
    }
  }
}
