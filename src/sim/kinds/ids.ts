import { hex32, mix32 } from "../../util/hash.ts";

/**
 * Ids in the shapes real servers give them (uuid hex, random alphanumerics),
 * drawn deterministically from a seed and a counter, so that a sim's answers
 * are reproducible and unique within a server.
 */

const ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

// every answer gets one, so these are made of a few hash rounds, not a generator per id

/** `len` lowercase hex digits (a uuid4().hex is 32). */
export function hexId(seed: number, n: number, len = 32): string {
  let h = mix32(seed ^ mix32(n + 0x5bd1e995));
  let out = "";
  while (out.length < len) {
    out += hex32(h);
    h = mix32(h + 0x9e3779b9);
  }
  return out.length === len ? out : out.slice(0, len);
}

/** `len` letters and digits, as llama.cpp's and OpenAI's ids. */
export function alnumId(seed: number, n: number, len: number): string {
  let h = mix32(seed ^ mix32(n + 0x27d4eb2f));
  let out = "";
  while (out.length < len) {
    // five letters of 62 from each 32-bit draw (62^5 < 2^32)
    let x = h;
    for (let k = 0; k < 5 && out.length < len; k++) {
      out += ALNUM[x % 62];
      x = Math.floor(x / 62);
    }
    h = mix32(h + 0x9e3779b9);
  }
  return out;
}

/**
 * Ids of one server's answers: `len` hex digits, a prefix drawn once for the
 * server and the rest from the answer's number, so each id costs one hash.
 */
export function hexIds(seed: number, len = 32): (n: number) => string {
  const prefix = hexId(seed, 0, len - 8);
  return (n) => prefix + hex32(mix32(n ^ seed));
}
