import { Template as Jinja } from "@huggingface/jinja";

/**
 * String templates of workflow files (messages, model names, reasons):
 * Jinja, through the implementation Hugging Face chat templates use, over
 * the task's `seed`, `vars`, `options`, `history` and `task` (and `reply`
 * where an LLM role's reply is known).
 */

/** A template that does not compile, or failed when rendered. */
export class TemplateError extends Error {
  override name = "TemplateError";
}

/** A compiled template; a string with no `{{`/`{%` is kept as it is. */
export class Template {
  readonly #jinja: Jinja | undefined;

  private constructor(
    readonly source: string,
    jinja: Jinja | undefined,
  ) {
    this.#jinja = jinja;
  }

  static compile(source: string): Template {
    if (!source.includes("{{") && !source.includes("{%") && !source.includes("{#")) return new Template(source, undefined);
    try {
      return new Template(source, new Jinja(source));
    } catch (err) {
      throw new TemplateError(`does not compile: ${message(err)}`);
    }
  }

  /** True when the template is a plain string. */
  get constant(): boolean {
    return this.#jinja === undefined;
  }

  render(ctx: Record<string, unknown>): string {
    if (!this.#jinja) return this.source;
    try {
      return this.#jinja.render(ctx);
    } catch (err) {
      throw new TemplateError(`${JSON.stringify(short(this.source))}: ${message(err)}`);
    }
  }
}

function message(err: unknown): string {
  const m = err instanceof Error ? err.message : String(err);
  // The parser's own failures on an unclosed block surface as a JavaScript TypeError.
  if (err instanceof TypeError && /undefined is not an object|Cannot read properties of undefined/.test(m)) return "unexpected end of template (a block is not closed)";
  return m.split("\n")[0] ?? m;
}

function short(s: string, max = 80): string {
  return s.length > max ? `${s.slice(0, max)}...` : s;
}

/** Variables a template reads: `vars.NAME` (and `vars["NAME"]`, `vars.get("NAME")`). */
export function templateVarsRead(source: string): string[] {
  const out = new Set<string>();
  for (const block of source.matchAll(/\{\{([\s\S]*?)\}\}|\{%([\s\S]*?)%\}/g)) {
    const code = block[1] ?? block[2] ?? "";
    for (const m of code.matchAll(/\bvars\s*(?:\.\s*([A-Za-z_][A-Za-z0-9_]*)|\[\s*["']([^"']+)["']\s*\])/g)) out.add((m[1] ?? m[2]) as string);
  }
  return [...out];
}

/** Variables a template reads only under an `{% if vars.NAME %}` test of themselves (reading them unset is fine there). */
export function templateVarsGuarded(source: string): string[] {
  const out = new Set<string>();
  for (const m of source.matchAll(/\{%-?\s*(?:el)?if\s+(?:not\s+)?vars\.([A-Za-z_][A-Za-z0-9_]*)\b/g)) out.add(m[1] as string);
  for (const m of source.matchAll(/vars\.([A-Za-z_][A-Za-z0-9_]*)\s+is\s+(?:not\s+)?defined/g)) out.add(m[1] as string);
  return [...out];
}
