import type { Histogram } from "./histogram.ts";

/** A label value, escaped for the text exposition. */
export function escapeLabel(v: string): string {
  return v.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"');
}

/** One label pair, `name="value"`, its value escaped. */
export function label(name: string, value: string): string {
  return `${name}="${escapeLabel(value)}"`;
}

/** A sample value as Prometheus writes it. */
export function num(v: number): string {
  return Number.isFinite(v) ? String(v) : v > 0 ? "+Inf" : v < 0 ? "-Inf" : "NaN";
}

/** The types of family matrixd exports. */
export type MetricType = "counter" | "gauge" | "histogram";

/** Rows of one family: the labels inside the braces (without the base ones) and the value. */
export type Rows<T> = Iterable<readonly [labels: string, value: T]>;

/**
 * Collects the families of one exposition: HELP and TYPE once per family,
 * the base labels (the node) first in every sample. A family named twice
 * and a counter not ending in `_total` throw: they are what `promtool
 * check metrics` refuses, and a mistake in matrixd, not in its input.
 *
 * @example
 * ```ts
 * const w = new PromWriter(label("node", "a"));
 * w.many("matrixd_role_busy", "gauge", "Busy slots.", [[label("role", "r"), 3]]);
 * w.text(); // # HELP ...\n# TYPE ...\nmatrixd_role_busy{node="a",role="r"} 3\n
 * ```
 */
export class PromWriter {
  readonly #out: string[] = [];
  readonly #names = new Set<string>();

  constructor(readonly base = "") {}

  /** HELP and TYPE of a family; its samples follow. */
  family(name: string, type: MetricType, help: string): this {
    if (this.#names.has(name)) throw new Error(`metric family ${name} written twice`);
    if (type === "counter" && !name.endsWith("_total")) throw new Error(`counter ${name} must end in _total`);
    this.#names.add(name);
    this.#out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    return this;
  }

  /** One sample (of the family last opened); `labels` is the inside of the braces, "" for none. */
  sample(name: string, labels: string, value: number): this {
    const all = this.base && labels ? `${this.base},${labels}` : this.base || labels;
    this.#out.push(all ? `${name}{${all}} ${num(value)}` : `${name} ${num(value)}`);
    return this;
  }

  /** A family of one sample. */
  one(name: string, type: MetricType, help: string, value: number, labels = ""): this {
    return this.family(name, type, help).sample(name, labels, value);
  }

  /** A family with a sample per row. */
  many(name: string, type: MetricType, help: string, rows: Rows<number>): this {
    this.family(name, type, help);
    for (const [labels, v] of rows) this.sample(name, labels, v);
    return this;
  }

  /** A histogram family from histograms of milliseconds, exported in seconds. */
  histogram(name: string, help: string, rows: Rows<Histogram>): this {
    this.family(name, "histogram", help);
    for (const [labels, h] of rows) {
      const sep = labels ? `${labels},` : "";
      let cum = 0;
      h.bounds.forEach((le, i) => {
        cum += h.counts[i] as number;
        this.sample(`${name}_bucket`, `${sep}le="${le / 1000}"`, cum);
      });
      this.sample(`${name}_bucket`, `${sep}le="+Inf"`, h.count);
      this.sample(`${name}_sum`, labels, h.sum / 1000);
      this.sample(`${name}_count`, labels, h.count);
    }
    return this;
  }

  /** The exposition, ending with a newline (empty with no family). */
  text(): string {
    return this.#out.length === 0 ? "" : `${this.#out.join("\n")}\n`;
  }
}
