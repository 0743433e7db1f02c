/**
 * A binary min-heap over a `before` order: `pop` gives the item that goes
 * before every other. O(log n) a push or pop, O(n) a `filter`.
 */
export class Heap<T> {
  private items: T[] = [];

  constructor(private readonly before: (a: T, b: T) => boolean) {}

  get size(): number {
    return this.items.length;
  }

  /** The first item, without taking it. */
  peek(): T | undefined {
    return this.items[0];
  }

  push(item: T): void {
    const a = this.items;
    let i = a.length;
    a.push(item);
    while (i > 0) {
      const p = (i - 1) >> 1;
      const parent = a[p] as T;
      if (!this.before(item, parent)) break;
      a[i] = parent;
      i = p;
    }
    a[i] = item;
  }

  pop(): T | undefined {
    const a = this.items;
    const top = a[0];
    const last = a.pop();
    if (a.length > 0 && last !== undefined) this.sink(last, 0);
    return top;
  }

  /** Keeps only the items `keep` accepts, in heap order again. */
  filter(keep: (item: T) => boolean): void {
    const a = this.items.filter(keep);
    this.items = a;
    for (let i = (a.length >> 1) - 1; i >= 0; i--) this.sink(a[i] as T, i);
  }

  /** Every item, in no particular order; the heap is emptied. */
  drain(): T[] {
    const all = this.items;
    this.items = [];
    return all;
  }

  private sink(item: T, from: number): void {
    const a = this.items;
    const n = a.length;
    let i = from;
    for (;;) {
      let c = 2 * i + 1;
      if (c >= n) break;
      const r = c + 1;
      if (r < n && this.before(a[r] as T, a[c] as T)) c = r;
      if (!this.before(a[c] as T, item)) break;
      a[i] = a[c] as T;
      i = c;
    }
    a[i] = item;
  }
}

interface Keyed<T> {
  key: number;
  n: number;
  item: T;
}

/**
 * A heap of items ordered by a number, ties by the order they were pushed:
 * `pop` gives the lowest key first and, among equal keys, the oldest.
 */
export class KeyedHeap<T> {
  private readonly heap = new Heap<Keyed<T>>((a, b) => a.key < b.key || (a.key === b.key && a.n < b.n));
  private pushed = 0;

  get size(): number {
    return this.heap.size;
  }

  push(key: number, item: T): void {
    this.heap.push({ key, n: this.pushed++, item });
  }

  /** The lowest-keyed (then oldest) item, without taking it. */
  peek(): T | undefined {
    return this.heap.peek()?.item;
  }

  pop(): T | undefined {
    return this.heap.pop()?.item;
  }

  /** Every item, in no particular order; the heap is emptied. */
  drain(): T[] {
    return this.heap.drain().map((k) => k.item);
  }
}
