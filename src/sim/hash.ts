/**
 * Hashing and deterministic draws. Everything the simulated server decides
 * about a request (length, answer, injected errors) comes from these, so the
 * same request gets the same answer on any server, in any run.
 */
import { mix32 } from "../util/hash.ts";

/** A uniform draw in [0, 1) from a hash and a salt naming the purpose. */
export function uniform(h: number, salt: number): number {
  return mix32((h ^ mix32(Math.imul(salt + 1, 0x9e3779b9))) >>> 0) / 4294967296;
}

/** An integer in [0, n) from a hash and a salt. */
export function pick(h: number, salt: number, n: number): number {
  return Math.floor(uniform(h, salt) * n);
}

/** A standard normal draw (Box-Muller) from a hash and a salt. */
export function normal(h: number, salt: number): number {
  const u1 = uniform(h, salt * 2 + 1) || 1 / 4294967296;
  const u2 = uniform(h, salt * 2 + 2);
  return Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2);
}

/** The non-ASCII characters JavaScript's `\s` matches, so counts agree with `split(/\s+/)`. */
function isWideSpace(c: number): boolean {
  return (
    c === 0xa0 ||
    c === 0x1680 ||
    (c >= 0x2000 && c <= 0x200a) ||
    c === 0x2028 ||
    c === 0x2029 ||
    c === 0x202f ||
    c === 0x205f ||
    c === 0x3000 ||
    c === 0xfeff
  );
}

/** Whitespace-separated words in `s`: the sim's unit of tokens. */
export function countWords(s: string): number {
  let n = 0;
  let inWord = false;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    const space = c <= 32 ? c === 32 || (c >= 9 && c <= 13) : c > 127 && isWideSpace(c);
    if (space) inWord = false;
    else if (!inWord) {
      inWord = true;
      n++;
    }
  }
  return n;
}
