import { fnv1a } from "./hash.ts";

/**
 * The ids seen so far and the line each was first seen on, in 12 bytes per
 * slot (a 64-bit hash of the id and the line), so a submission of tens of
 * millions of seeds can be checked for duplicate ids without keeping the ids:
 * 25 million ids take about 400 MB at the most, one million 16 MB.
 *
 * Two ids count as one only when both 32-bit halves of their hash agree: for
 * 25 million distinct ids the chance that any two collide is about 2 in
 * 100,000.
 */
export class IdSet {
  #hi: Uint32Array;
  #lo: Uint32Array;
  /** line of first sight, 0 for an empty slot */
  #line: Uint32Array;
  #size = 0;

  constructor(initialSlots = 1024) {
    const n = 2 ** Math.ceil(Math.log2(Math.max(16, initialSlots)));
    this.#hi = new Uint32Array(n);
    this.#lo = new Uint32Array(n);
    this.#line = new Uint32Array(n);
  }

  get size(): number {
    return this.#size;
  }

  /**
   * Note `id`, first seen on `line` (1 or more). Returns 0 when it is new,
   * else the line it was first seen on.
   */
  add(id: string, line: number): number {
    if (line < 1) throw new RangeError("line numbers count from 1");
    if ((this.#size + 1) * 4 > this.#line.length * 3) this.#grow();
    const [hi, lo] = hash64(id);
    return this.#put(hi, lo, line);
  }

  #put(hi: number, lo: number, line: number): number {
    const mask = this.#line.length - 1;
    let i = (lo ^ Math.imul(hi, 0x9e3779b1)) & mask;
    for (;;) {
      const at = this.#line[i] as number;
      if (at === 0) {
        this.#hi[i] = hi;
        this.#lo[i] = lo;
        this.#line[i] = line;
        this.#size++;
        return 0;
      }
      if (this.#hi[i] === hi && this.#lo[i] === lo) return at;
      i = (i + 1) & mask;
    }
  }

  #grow(): void {
    const [hi, lo, line] = [this.#hi, this.#lo, this.#line];
    const n = line.length * 2;
    this.#hi = new Uint32Array(n);
    this.#lo = new Uint32Array(n);
    this.#line = new Uint32Array(n);
    this.#size = 0;
    for (let i = 0; i < line.length; i++) {
      if (line[i] !== 0) this.#put(hi[i] as number, lo[i] as number, line[i] as number);
    }
  }
}

/** Two independent 32-bit hashes of a string (FNV-1a, and a multiply-xorshift mix), as one 64-bit hash. */
function hash64(s: string): [number, number] {
  let b = 0x9747b28c ^ s.length;
  for (let i = 0; i < s.length; i++) {
    b = Math.imul(b ^ s.charCodeAt(i), 0x5bd1e995);
    b ^= b >>> 15;
  }
  b = Math.imul(b ^ (b >>> 13), 0xc2b2ae35);
  b ^= b >>> 16;
  return [fnv1a(s), b >>> 0];
}
