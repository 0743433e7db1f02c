import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";

/** How long a download link works, ms. */
export const DOWNLOAD_TTL_MS = 60_000;

/**
 * Short-lived links to one job's dataset, for a browser that cannot send a
 * bearer header with a plain link. A link names the job and its expiry and
 * carries an HMAC of both under a key this process drew at start, so the
 * API token never goes into a URL (which proxies and logs keep), and a
 * link that leaks opens one dataset for a minute at most.
 */
export class DownloadSigner {
  readonly #key = randomBytes(32);

  /** The query of a link to `job`'s dataset that works until `now + ttlMs`. */
  sign(job: string, now = Date.now(), ttlMs = DOWNLOAD_TTL_MS): { exp: number; sig: string } {
    const exp = now + ttlMs;
    return { exp, sig: this.#mac(job, exp) };
  }

  /** Whether `sig` was made here for `job` and `exp`, and `exp` has not passed. */
  verify(job: string, exp: number, sig: string, now = Date.now()): boolean {
    if (!Number.isSafeInteger(exp) || exp < now) return false;
    const want = Buffer.from(this.#mac(job, exp), "hex");
    const got = Buffer.from(sig, "hex");
    return got.length === want.length && timingSafeEqual(got, want);
  }

  #mac(job: string, exp: number): string {
    return createHmac("sha256", this.#key).update(`${job}\n${exp}`).digest("hex");
  }
}
