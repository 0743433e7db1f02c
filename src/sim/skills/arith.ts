/**
 * A tiny integer arithmetic parser (+, -, *, parentheses, unary minus), so
 * the simulated model can "solve" "What is 3 * (4 + 5)?" without eval.
 */

const MAX_LEN = 400;
const MAX_DEPTH = 64;

class Parser {
  private i = 0;
  private depth = 0;
  constructor(private readonly s: string) {}

  parse(): number | undefined {
    const v = this.expr();
    this.skip();
    return v !== undefined && this.i === this.s.length ? v : undefined;
  }

  private skip(): void {
    while (this.i < this.s.length && /\s/.test(this.s[this.i]!)) this.i++;
  }

  private expr(): number | undefined {
    let v = this.term();
    for (;;) {
      if (v === undefined) return undefined;
      this.skip();
      const c = this.s[this.i];
      if (c !== "+" && c !== "-") return v;
      this.i++;
      const r = this.term();
      if (r === undefined) return undefined;
      v = safe(c === "+" ? v + r : v - r);
    }
  }

  private term(): number | undefined {
    let v = this.factor();
    for (;;) {
      if (v === undefined) return undefined;
      this.skip();
      const c = this.s[this.i];
      if (c !== "*" && c !== "×") return v;
      this.i++;
      const r = this.factor();
      if (r === undefined) return undefined;
      v = safe(v * r);
    }
  }

  private factor(): number | undefined {
    if (++this.depth > MAX_DEPTH) return undefined;
    try {
      this.skip();
      const c = this.s[this.i];
      if (c === "-" || c === "+") {
        this.i++;
        const v = this.factor();
        return v === undefined ? undefined : c === "-" ? safe(-v) : v;
      }
      if (c === "(") {
        this.i++;
        const v = this.expr();
        this.skip();
        if (this.s[this.i] !== ")") return undefined;
        this.i++;
        return v;
      }
      const start = this.i;
      while (this.i < this.s.length && this.s.charCodeAt(this.i) >= 48 && this.s.charCodeAt(this.i) <= 57) this.i++;
      if (this.i === start) return undefined;
      return safe(Number(this.s.slice(start, this.i)));
    } finally {
      this.depth--;
    }
  }
}

function safe(v: number): number | undefined {
  return Number.isSafeInteger(v) ? (v === 0 ? 0 : v) : undefined;
}

/** The value of an integer expression, or undefined when it is not one (or overflows). */
export function evalArithmetic(expr: string): number | undefined {
  if (expr.length === 0 || expr.length > MAX_LEN) return undefined;
  return new Parser(expr).parse();
}

/** The expression between "What is" and "?" in a question, evaluated; undefined when there is none. */
export function solveWhatIs(question: string): number | undefined {
  const m = /what is\s+([^?]*)\?/i.exec(question);
  return m?.[1] === undefined ? undefined : evalArithmetic(m[1]);
}
