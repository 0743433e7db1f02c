import { z } from "zod";
import { KeyedHeap } from "../util/heap.ts";
import { Rng } from "../util/hash.ts";
import { describeValue, Expr, ExprError, toCel } from "../workflow/expr.ts";

/**
 * Which tasks a job starts first. Seeds are read ahead `window` at a time
 * and taken from that window in the job's order: `file` (as the seed file
 * has them), `shuffle` (a deterministic shuffle drawn from the job's seed, so
 * a file sorted by topic or length does not start all its long tasks last),
 * `largest` or `smallest` (by `key`, a CEL expression over the seed: the
 * longest documents first, say, so the longest tasks do not end the job
 * alone). Ties, and seeds whose key cannot be read, go in file order; only
 * the order changes, never which tasks there are or their ids.
 */
export const AdmissionSchema = z
  .strictObject({
    order: z.enum(["file", "shuffle", "largest", "smallest"]).default("file"),
    /** CEL over `seed`, giving a number: what `largest` and `smallest` sort by */
    key: z.string().min(1).optional(),
    /** seeds read ahead and ordered at once (memory: this many seeds) */
    window: z.number().int().min(1).max(1_000_000).default(4096),
  })
  .superRefine((a, ctx) => {
    const keyed = a.order === "largest" || a.order === "smallest";
    if (keyed && a.key === undefined) ctx.addIssue({ code: "custom", path: ["key"], message: `order "${a.order}" needs a key (CEL over the seed, e.g. "size(seed.text)")` });
    if (!keyed && a.key !== undefined) ctx.addIssue({ code: "custom", path: ["key"], message: `a key sorts only with order "largest" or "smallest", not "${a.order}"` });
    if (a.key !== undefined) {
      try {
        Expr.compile(a.key);
      } catch (err) {
        ctx.addIssue({ code: "custom", path: ["key"], message: err instanceof Error ? err.message : String(err) });
      }
    }
  });
export type Admission = z.infer<typeof AdmissionSchema>;

/**
 * Puts items (a job's seeds, or its task messages) in the job's admission
 * order: `push` each as it is read and admit what it gives back, then
 * `flush` at the end for the rest. Items with no seed (failed rows of bad
 * lines) pass at once. `onFirstKeyError` hears of the first seed whose key
 * cannot be read (such seeds are admitted in file order; `keyErrors` counts
 * them).
 */
export class AdmissionOrder<T> {
  readonly #order: Admission["order"];
  readonly #window: number;
  readonly #key: Expr | undefined;
  readonly #rng: Rng;
  readonly #buffer: T[] = [];
  /** `largest` and `smallest`: the window by key (negated for largest), ties in the order read */
  readonly #heap: KeyedHeap<T> | undefined;
  #sign = 1;
  /** seeds whose key could not be read */
  keyErrors = 0;

  constructor(
    admission: Admission | undefined,
    readonly seedOf: (item: T) => Record<string, unknown> | undefined,
    jobSeed: number,
    readonly onFirstKeyError: (err: Error, item: T) => void = () => {},
  ) {
    this.#order = admission?.order ?? "file";
    this.#window = admission?.window ?? 1;
    this.#rng = new Rng(jobSeed ^ 0x5eed0a0d);
    if (admission?.key !== undefined && (this.#order === "largest" || this.#order === "smallest")) {
      this.#key = Expr.compile(admission.key);
      this.#sign = this.#order === "largest" ? -1 : 1;
      this.#heap = new KeyedHeap();
    }
  }

  /** Take one item in; what to admit now (in order). */
  push(item: T): T[] {
    if (this.#order === "file") return [item];
    const seed = this.seedOf(item);
    if (seed === undefined) return [item];
    if (this.#heap) {
      const key = this.#keyOf(seed, item);
      if (key === undefined) return [item];
      this.#heap.push(this.#sign * key, item);
      return this.#heap.size > this.#window ? [this.#heap.pop() as T] : [];
    }
    // shuffle: once the window is full, each item read sends out a random one of the window
    const buf = this.#buffer;
    if (buf.length < this.#window) {
      buf.push(item);
      return [];
    }
    const j = this.#rng.below(buf.length);
    const out = buf[j] as T;
    buf[j] = item;
    return [out];
  }

  /** The items still held, in order: the input has ended. */
  flush(): T[] {
    if (this.#heap) {
      const out: T[] = [];
      while (this.#heap.size > 0) out.push(this.#heap.pop() as T);
      return out;
    }
    const buf = this.#buffer.splice(0);
    for (let i = buf.length - 1; i > 0; i--) {
      const j = this.#rng.below(i + 1);
      [buf[i], buf[j]] = [buf[j] as T, buf[i] as T];
    }
    return buf;
  }

  #keyOf(seed: Record<string, unknown>, item: T): number | undefined {
    try {
      const v = (this.#key as Expr).eval({ seed: toCel(seed) });
      if (typeof v === "number" && Number.isFinite(v)) return v;
      throw new ExprError(`admission key ${JSON.stringify((this.#key as Expr).source)} gave ${describeValue(v)}, not a number`);
    } catch (err) {
      if (++this.keyErrors === 1) this.onFirstKeyError(err instanceof Error ? err : new Error(String(err)), item);
      return undefined;
    }
  }
}

/** `items` in the admission order. */
export function* inAdmissionOrder<T>(items: Iterable<T>, order: AdmissionOrder<T>): Generator<T> {
  for (const item of items) yield* order.push(item);
  yield* order.flush();
}

/** `items`, read as they come, in the admission order. */
export async function* inAdmissionOrderAsync<T>(items: AsyncIterable<T>, order: AdmissionOrder<T>): AsyncGenerator<T> {
  for await (const item of items) yield* order.push(item);
  yield* order.flush();
}
