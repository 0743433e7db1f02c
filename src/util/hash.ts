/**
 * Hashes and seeded generators: fast, and stable across runs, processes and
 * machines, so the same input decides the same way everywhere (a task's
 * random draws, an endpoint's share of prefixes, the simulated server's
 * answers).
 */

/** FNV-1a's offset basis: the hash of nothing, where a chain of `fnv1a` calls starts. */
export const FNV_OFFSET = 0x811c9dc5;
const FNV_PRIME = 0x01000193;

/** 32-bit FNV-1a over the UTF-16 code units of `text`, continuing from `h`. */
export function fnv1a(text: string, h: number = FNV_OFFSET): number {
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, FNV_PRIME);
  }
  return h >>> 0;
}

/** Folds the four bytes of a 32-bit number into `h` (FNV-1a; order matters). */
export function fnvInt(n: number, h: number = FNV_OFFSET): number {
  for (let i = 0; i < 4; i++) {
    h ^= (n >>> (i * 8)) & 0xff;
    h = Math.imul(h, FNV_PRIME);
  }
  return h >>> 0;
}

/**
 * A strong 32-bit finalizer: FNV-1a's low bits are poor, so a hash that
 * becomes a number (a draw, a score) goes through this first.
 */
export function mix32(x: number): number {
  x ^= x >>> 16;
  x = Math.imul(x, 0x7feb352d);
  x ^= x >>> 15;
  x = Math.imul(x, 0x846ca68b);
  x ^= x >>> 16;
  return x >>> 0;
}

/** Two hashes mixed into one well-spread 32-bit score (rendezvous hashing). */
export function mix2(a: number, b: number): number {
  return mix32((a ^ Math.imul(b, 0x9e3779b1)) >>> 0);
}

/** Eight hex digits of a 32-bit hash. */
export function hex32(h: number): string {
  return (h >>> 0).toString(16).padStart(8, "0");
}

/** 64 bits of FNV-1a as 16 hex digits (two differently seeded halves). */
export function hashHex(text: string): string {
  return hex32(fnv1a(text)) + hex32(fnv1a(text, 0x9747b28c));
}

/** A small seeded generator (mulberry32) for sequences of draws. */
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
  /** a number in [0, 1) */
  next(): number {
    return this.nextU32() / 4294967296;
  }
  /** an integer in [0, n) */
  below(n: number): number {
    return Math.floor(this.next() * n);
  }
}

/** A deterministic generator of numbers in [0,1) from a 32-bit seed. */
export function seededRandom(seed: number): () => number {
  const rng = new Rng(seed);
  return () => rng.next();
}

/** JSON with object keys sorted, so equal values hash equally. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_k, v: unknown) => {
    if (v && typeof v === "object" && !Array.isArray(v)) {
      const out: Record<string, unknown> = {};
      for (const k of Object.keys(v).sort()) out[k] = (v as Record<string, unknown>)[k];
      return out;
    }
    return v;
  });
}
