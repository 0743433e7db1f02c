/**
 * Hashing and deterministic draws. Everything the simulated server decides
 * about a request (length, answer, injected errors) comes from these, so the
 * same request gets the same answer on any server, in any run.
 */

const FNV_OFFSET = 0x811c9dc5;
const FNV_PRIME = 0x01000193;

/** FNV-1a over the UTF-16 code units of `s`, continuing from `h`. */
export function fnv1a(s: string, h: number = FNV_OFFSET): number {
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, FNV_PRIME);
  }
  return h >>> 0;
}

/** Folds a 32-bit number into `h` (order matters). */
export function fnvInt(n: number, h: number = FNV_OFFSET): number {
  for (let i = 0; i < 4; i++) {
    h ^= (n >>> (i * 8)) & 0xff;
    h = Math.imul(h, FNV_PRIME);
  }
  return h >>> 0;
}

/**
 * A strong 32-bit finalizer: FNV-1a's low bits are poor, so every draw goes
 * through this before it is used as a number.
 */
export function mix32(x: number): number {
  x ^= x >>> 16;
  x = Math.imul(x, 0x7feb352d);
  x ^= x >>> 15;
  x = Math.imul(x, 0x846ca68b);
  x ^= x >>> 16;
  return x >>> 0;
}

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

/** A small seeded generator (mulberry32) for sequences of draws, such as filler text. */
export class Rng {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0;
  }
  /** next 32-bit unsigned value */
  nextU32(): number {
    this.s = (this.s + 0x6d2b79f5) >>> 0;
    let t = this.s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }
  /** an integer in [0, n) */
  below(n: number): number {
    return Math.floor((this.nextU32() / 4294967296) * n);
  }
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

/** Eight hex digits of a 32-bit hash. */
export function hex32(h: number): string {
  return (h >>> 0).toString(16).padStart(8, "0");
}
