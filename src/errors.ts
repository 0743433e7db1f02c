/**
 * The few named errors of matrixd. Each carries a message that names what is
 * wrong; `cause` keeps the underlying error where there is one.
 */

/** Bad command line: exit code 2. */
export class UsageError extends Error {
  override name = "UsageError";
}

/** Bad config file or option value: exit code 2. */
export class ConfigError extends Error {
  override name = "ConfigError";
}

/** A message or file that could not be decoded or failed its schema. */
export class CodecError extends Error {
  override name = "CodecError";
}

/**
 * An LLM request that failed after its retries (or could not be retried).
 * `problem` says when the request itself cannot succeed as sent: "config"
 * (a bad field, an unknown model, a server started without a flag it
 * needs) or "context" (the prompt does not fit the server's context).
 */
export class LlmError extends Error {
  override name = "LlmError";
  readonly problem: "config" | "context" | undefined;
  constructor(
    message: string,
    readonly status: number | undefined,
    readonly endpoint: string | undefined,
    readonly retryable: boolean,
    options?: { cause?: unknown; problem?: "config" | "context" },
  ) {
    super(message, options);
    this.problem = options?.problem;
  }
}

/** An agent gave up on a task; the task ends as a failed row with this reason. */
export class TaskError extends Error {
  override name = "TaskError";
}

/** A task's row too big to store; the task ends as a failed row saying so, without its history. */
export class RowTooBigError extends Error {
  override name = "RowTooBigError";
}

/** A seed line that is not JSON or fails the workflow's seed schema. */
export class SeedError extends Error {
  override name = "SeedError";
  constructor(
    message: string,
    readonly line: number,
  ) {
    super(message);
  }
}

/** Exit code for an error: 2 for usage and config, 1 for everything else. */
export function exitCodeOf(err: unknown): number {
  return err instanceof UsageError || err instanceof ConfigError ? 2 : 1;
}

/** A one-line description of any thrown value. */
export function describe(err: unknown): string {
  if (err instanceof Error) return err.message || err.name;
  return String(err);
}
