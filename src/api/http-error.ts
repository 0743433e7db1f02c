/**
 * The one error type of the HTTP API: a status and a message meant for the
 * client. The error handler (middleware/errors.ts) turns it into
 * `{"error": message}` with that status; anything else thrown becomes a 500.
 *
 * @example
 * ```ts
 * throw new HttpError(404, `no job "${id}"`);
 * ```
 */
export class HttpError extends Error {
  override name = "HttpError";
  constructor(
    readonly status: 400 | 401 | 403 | 404 | 405 | 409 | 413 | 415 | 500 | 503,
    message: string,
    options?: { cause?: unknown; headers?: Record<string, string>; details?: string[] },
  ) {
    super(message, options);
    this.headers = options?.headers;
    this.details = options?.details;
  }
  /** extra response headers (e.g. WWW-Authenticate on a 401) */
  readonly headers: Record<string, string> | undefined;
  /** one line per problem, when there are several (bad seed lines) */
  readonly details: string[] | undefined;
}
