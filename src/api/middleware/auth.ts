import { createHash, timingSafeEqual } from "node:crypto";
import type { MiddlewareHandler } from "hono";
import { HttpError } from "../http-error.ts";

export interface BearerAuthOptions {
  /** the token every request must carry; when undefined the middleware lets everything through */
  token: string | undefined;
}

function digest(s: string): Buffer {
  return createHash("sha256").update(s).digest();
}

/**
 * Requires `Authorization: Bearer <token>`. The comparison runs in constant
 * time over SHA-256 digests, so neither the token's content nor its length
 * leaks through response timing. Routes that must stay open are registered
 * before this middleware.
 */
export function bearerAuth(opts: BearerAuthOptions): MiddlewareHandler {
  const expected = opts.token === undefined ? undefined : digest(opts.token);
  return async function auth(c, next) {
    if (expected === undefined) return next();
    const header = c.req.header("authorization") ?? "";
    const m = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header);
    const challenge = { "WWW-Authenticate": 'Bearer realm="matrixd"' };
    if (!m) throw new HttpError(401, "missing bearer token (Authorization: Bearer <token>)", { headers: challenge });
    if (!timingSafeEqual(digest(m[1] as string), expected)) {
      throw new HttpError(401, "wrong bearer token", {
        headers: { "WWW-Authenticate": 'Bearer realm="matrixd", error="invalid_token"' },
      });
    }
    return next();
  };
}
