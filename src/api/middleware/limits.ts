import type { MiddlewareHandler } from "hono";
import { HttpError } from "../http-error.ts";

export interface BodyLimitOptions {
  /** bytes a request body may have at most */
  maxBytes: number;
  /** bytes a JSON body may have at most (it is parsed whole, unlike NDJSON, which streams); default maxBytes */
  maxJsonBytes?: number;
}

function tooLarge(max: number): HttpError {
  return new HttpError(413, `request body is larger than the limit of ${max} bytes`);
}

/**
 * Answers 413 for a body past `maxBytes`. A declared Content-Length is
 * checked before anything is read; a chunked body is counted as the handler
 * streams it, and the stream errors with the 413 the moment it goes past the
 * limit, so no body is ever buffered here (unlike a check that reads the
 * whole body first) and the handler keeps streaming line by line.
 */
export function bodyLimit(opts: BodyLimitOptions): MiddlewareHandler {
  return async function limitBody(c, next) {
    const raw = c.req.raw;
    if (!raw.body) return next();
    const json = (raw.headers.get("content-type") ?? "").split(";")[0]?.trim().toLowerCase() === "application/json";
    const max = json ? Math.min(opts.maxBytes, opts.maxJsonBytes ?? opts.maxBytes) : opts.maxBytes;
    const declared = raw.headers.get("content-length");
    if (declared !== null && Number(declared) > max) throw tooLarge(max);
    let seen = 0;
    const counted = raw.body.pipeThrough(
      new TransformStream<Uint8Array, Uint8Array>({
        transform(chunk, ctl) {
          seen += chunk.byteLength;
          if (seen > max) ctl.error(tooLarge(max));
          else ctl.enqueue(chunk);
        },
      }),
    );
    c.req.raw = new Request(raw, { body: counted, duplex: "half" } as RequestInit);
    return next();
  };
}
