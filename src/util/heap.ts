/**
 * A binary min-heap of items ordered by a number, ties by the order they
 * were pushed: `pop` gives the lowest key first and, among equal keys, the
 * oldest. O(log n) a push or pop.
 */
export class KeyedHeap<T> {
  private keys: number[] = [];
  private orders: number[] = [];
  private items: T[] = [];
  private pushed = 0;

  get size(): number {
    return this.items.length;
  }

  push(key: number, item: T): void {
    this.keys.push(key);
    this.orders.push(this.pushed++);
    this.items.push(item);
    this.up(this.items.length - 1);
  }

  /** The lowest-keyed (then oldest) item, without taking it. */
  peek(): T | undefined {
    return this.items[0];
  }

  pop(): T | undefined {
    const n = this.items.length;
    if (n === 0) return undefined;
    const top = this.items[0] as T;
    const last = n - 1;
    if (last > 0) this.move(last, 0);
    this.keys.pop();
    this.orders.pop();
    this.items.pop();
    if (last > 1) this.down(0);
    return top;
  }

  /** Every item, in no particular order; the heap is emptied. */
  drain(): T[] {
    const all = this.items;
    this.keys = [];
    this.orders = [];
    this.items = [];
    return all;
  }

  private before(a: number, b: number): boolean {
    const ka = this.keys[a] as number;
    const kb = this.keys[b] as number;
    return ka < kb || (ka === kb && (this.orders[a] as number) < (this.orders[b] as number));
  }

  private move(from: number, to: number): void {
    this.keys[to] = this.keys[from] as number;
    this.orders[to] = this.orders[from] as number;
    this.items[to] = this.items[from] as T;
  }

  private swap(a: number, b: number): void {
    const k = this.keys[a] as number;
    const o = this.orders[a] as number;
    const it = this.items[a] as T;
    this.move(b, a);
    this.keys[b] = k;
    this.orders[b] = o;
    this.items[b] = it;
  }

  private up(i: number): void {
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.before(i, parent)) return;
      this.swap(i, parent);
      i = parent;
    }
  }

  private down(i: number): void {
    const n = this.items.length;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) return;
      const r = l + 1;
      const child = r < n && this.before(r, l) ? r : l;
      if (!this.before(child, i)) return;
      this.swap(i, child);
      i = child;
    }
  }
}
