import type { AnyWorkflow } from "../plugin/api.ts";
import { IdSet } from "../util/idset.ts";
import { parseSeedLine } from "./seeds.ts";

/** One seed, checked against its workflow's seed schema (id unique in its job). */
export interface CheckedSeed {
  id: string;
  /** its line in the submission, from 1 */
  line: number;
  seed: Record<string, unknown>;
}

/** A bad seed line and what is wrong with it. */
export interface SeedProblem {
  line: number;
  message: string;
}

/** Bad seed lines named one by one; past this many, only counted. */
export const MAX_REPORTED_LINES = 50;

export interface SeedCheckOptions {
  /** keep the good seeds in `seeds` (a whole submission); a stream hands each on instead */
  keep?: boolean;
  /** seeds a job may have at most */
  maxSeeds?: number;
  /** the error thrown at the first seed past `maxSeeds` */
  tooMany?: (maxSeeds: number) => Error;
}

/**
 * Checks the seed lines of a submission one at a time against a workflow's
 * seed schema. Every bad line is counted; the first MAX_REPORTED_LINES are
 * named. Duplicate seed ids are bad lines too: two tasks with one id could
 * never both get their row. Ids are remembered as hashes (IdSet), so a
 * streamed job of millions of seeds is checked in a few bytes per seed.
 */
export class SeedCheck {
  /** the good seeds, in order; only when kept */
  readonly seeds: CheckedSeed[] = [];
  readonly problems: SeedProblem[] = [];
  bad = 0;
  good = 0;
  readonly #ids = new IdSet();

  constructor(
    readonly workflow: AnyWorkflow,
    private readonly opts: SeedCheckOptions = {},
  ) {}

  /** Check one seed line (counting from 1). Returns the seed when it is good. */
  add(text: string, line: number): CheckedSeed | undefined {
    const parsed = parseSeedLine(text, line, this.workflow.seedSchema);
    if (parsed === null) return undefined;
    const max = this.opts.maxSeeds;
    if (max !== undefined && this.good + this.bad >= max) {
      throw this.opts.tooMany?.(max) ?? new RangeError(`too many seeds: a job may have at most ${max}`);
    }
    if (!parsed.ok) return this.#bad(line, parsed.error);
    const first = this.#ids.add(parsed.id, line);
    if (first !== 0) return this.#bad(line, `seed line ${line}: duplicate seed id "${parsed.id}" (first on line ${first})`);
    this.good++;
    const seed: CheckedSeed = { id: parsed.id, line, seed: parsed.seed };
    if (this.opts.keep ?? true) this.seeds.push(seed);
    return seed;
  }

  /** Refuse the seed just added, good by its schema, for another reason (its size): it counts as a bad line. */
  refuse(seed: CheckedSeed, message: string): void {
    this.good--;
    if (this.seeds[this.seeds.length - 1] === seed) this.seeds.pop();
    this.#bad(seed.line, message);
  }

  #bad(line: number, message: string): undefined {
    this.bad++;
    if (this.problems.length < MAX_REPORTED_LINES) this.problems.push({ line, message });
    return undefined;
  }
}

/** The text of a submitted seed: a line as it is, an object as JSON. */
export function seedText(raw: unknown): string {
  return typeof raw === "string" ? raw : (JSON.stringify(raw) ?? "null");
}
