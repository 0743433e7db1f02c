import type { Rng } from "../../util/hash.ts";

/**
 * A string matching a regular expression, for answers under a regex
 * constraint (vLLM guided_regex, SGLang regex, TGI's regex grammar). Covers
 * what such patterns use: literals and escapes, `.`, `\d \w \s`, classes
 * `[a-z_]` and `[^...]`, groups with `|`, and the quantifiers `? * + {n,m}`
 * (lazy or not). Anchors are dropped. Anything else (look-arounds,
 * back-references) makes it give up: undefined.
 */

type Node =
  | { t: "chars"; set: string }
  | { t: "not"; set: string }
  | { t: "alt"; options: Node[][] }
  | { t: "rep"; node: Node; min: number; max: number };

const DIGITS = "0123456789";
const WORD = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_";
const PRINTABLE = "abcdefghijklmnopqrstuvwxyz0123456789 -_.,:;!?ABCDEFGHIJKLMNOPQRSTUVWXYZ";
const MAX_PATTERN = 2000;
/** an unbounded repeat stops here */
const OPEN_REPEAT = 3;

class Parser {
  i = 0;
  constructor(private readonly s: string) {}

  alternation(): Node[][] {
    const options: Node[][] = [this.sequence()];
    while (this.s[this.i] === "|") {
      this.i++;
      options.push(this.sequence());
    }
    return options;
  }

  private sequence(): Node[] {
    const seq: Node[] = [];
    while (this.i < this.s.length && this.s[this.i] !== "|" && this.s[this.i] !== ")") {
      const atom = this.atom();
      if (atom) seq.push(this.quantified(atom));
    }
    return seq;
  }

  private atom(): Node | undefined {
    const c = this.s[this.i++]!;
    if (c === "^" || c === "$") return undefined;
    if (c === ".") return { t: "not", set: "\n" };
    if (c === "\\") return this.escape();
    if (c === "[") return this.klass();
    if (c === "(") {
      if (this.s[this.i] === "?") {
        if (this.s[this.i + 1] !== ":") throw new Error("unsupported group");
        this.i += 2;
      }
      const options = this.alternation();
      if (this.s[this.i++] !== ")") throw new Error("unclosed group");
      return { t: "alt", options };
    }
    if ("*+?{".includes(c)) throw new Error("nothing to repeat");
    return { t: "chars", set: c };
  }

  private escape(): Node {
    const c = this.s[this.i++];
    if (c === undefined) throw new Error("trailing backslash");
    if (c === "d") return { t: "chars", set: DIGITS };
    if (c === "w") return { t: "chars", set: WORD };
    if (c === "s") return { t: "chars", set: " " };
    if (c === "D" || c === "W" || c === "S") return { t: "not", set: c === "D" ? DIGITS : c === "W" ? WORD : " \t\n" };
    if (c === "n") return { t: "chars", set: "\n" };
    if (c === "t") return { t: "chars", set: "\t" };
    if (/[0-9bBkpPu]/.test(c)) throw new Error("unsupported escape");
    return { t: "chars", set: c };
  }

  private klass(): Node {
    let negated = false;
    if (this.s[this.i] === "^") {
      negated = true;
      this.i++;
    }
    let set = "";
    while (this.i < this.s.length && this.s[this.i] !== "]") {
      const c = this.s[this.i++]!;
      if (c === "\\") {
        const e = this.s[this.i++] ?? "";
        if (e === "d") set += DIGITS;
        else if (e === "w") set += WORD;
        else if (e === "s") set += " ";
        else set += e === "n" ? "\n" : e === "t" ? "\t" : e;
        continue;
      }
      if (this.s[this.i] === "-" && this.s[this.i + 1] !== undefined && this.s[this.i + 1] !== "]") {
        this.i++;
        let end = this.s[this.i++]!;
        if (end === "\\") end = this.s[this.i++] ?? end;
        for (let k = c.charCodeAt(0); k <= end.charCodeAt(0) && set.length < 512; k++) set += String.fromCharCode(k);
        continue;
      }
      set += c;
    }
    if (this.s[this.i++] !== "]") throw new Error("unclosed class");
    return negated ? { t: "not", set } : { t: "chars", set };
  }

  private quantified(node: Node): Node {
    const c = this.s[this.i];
    let min = 1;
    let max = 1;
    if (c === "?") [min, max] = [0, 1];
    else if (c === "*") [min, max] = [0, OPEN_REPEAT];
    else if (c === "+") [min, max] = [1, OPEN_REPEAT];
    else if (c === "{") {
      const m = /^\{(\d+)(,(\d*))?\}/.exec(this.s.slice(this.i));
      if (!m) return node;
      min = Number(m[1]);
      max = m[2] === undefined ? min : m[3] ? Number(m[3]) : min + OPEN_REPEAT;
      this.i += m[0].length - 1;
    } else return node;
    this.i++;
    if (this.s[this.i] === "?") this.i++;
    return { t: "rep", node, min, max: Math.max(min, max) };
  }
}

function emit(node: Node, rng: Rng, out: string[]): void {
  switch (node.t) {
    case "chars":
      out.push(node.set[rng.below(node.set.length)] ?? "");
      return;
    case "not": {
      const allowed = [...PRINTABLE].filter((ch) => !node.set.includes(ch));
      out.push(allowed[rng.below(allowed.length)] ?? "x");
      return;
    }
    case "alt": {
      const seq = node.options[rng.below(node.options.length)] ?? [];
      for (const n of seq) emit(n, rng, out);
      return;
    }
    case "rep": {
      // at least one when allowed, so that optional parts show up in answers
      const n = Math.min(node.max, Math.max(node.min, 1 + rng.below(2)));
      for (let k = 0; k < n; k++) emit(node.node, rng, out);
    }
  }
}

/** A string that `new RegExp(pattern)` matches, drawn from `rng`; undefined when the pattern is beyond this sampler. */
export function sampleRegex(pattern: string, rng: Rng): string | undefined {
  if (pattern.length > MAX_PATTERN) return undefined;
  try {
    const p = new Parser(pattern);
    const options = p.alternation();
    if (p.i !== pattern.length) return undefined;
    const out: string[] = [];
    emit({ t: "alt", options }, rng, out);
    const text = out.join("");
    // the server's grammar makes the whole answer match, so check it anchored
    return new RegExp(`^(?:${pattern})$`).test(text) ? text : undefined;
  } catch {
    return undefined;
  }
}
