import { z } from "zod";
import { validate } from "../config/load.ts";
import { formatIssues } from "../util/issues.ts";
import type { CheckedSeed, ClusterNode, JobSubmission } from "../cluster/types.ts";
import type { AnyWorkflow } from "../plugin/api.ts";
import type { Registry } from "../plugin/registry.ts";
import { type SubmitSettings, SubmitSettingsSchema } from "../protocol/job.ts";
import { parseSeedLine } from "../seeds/seeds.ts";
import { IdSet } from "../util/idset.ts";
import { LineTooLongError, readLines } from "../util/lines.ts";
import { HttpError } from "./http-error.ts";

/** Bad seed lines named one by one in a 400; past this many, "and N more". */
export const MAX_REPORTED_LINES = 50;

export interface SubmissionLimits {
  /** seeds a job may have at most (413 past it) */
  maxSeeds: number;
}

/** Characters a line of a streamed submission may have; a seed is at most about 1 MB (NATS's message limit). */
export const MAX_SEED_LINE_CHARS = 4 * 1024 * 1024;

/**
 * Checks seed lines one at a time against a workflow's seed schema and keeps
 * the good ones. Every bad line is counted; the first MAX_REPORTED_LINES are
 * named. Duplicate seed ids are bad lines too: two tasks with one id could
 * never both get their row. Ids are remembered as hashes (IdSet), so a
 * streamed job of millions of seeds is checked in a few bytes per seed.
 */
export class SeedCheck {
  /** the seeds to submit, as received (lines or objects), blank lines left out; only when kept */
  readonly seeds: unknown[] = [];
  readonly problems: string[] = [];
  bad = 0;
  good = 0;
  readonly #ids = new IdSet();

  constructor(
    readonly workflow: AnyWorkflow,
    readonly limits: SubmissionLimits,
    /** keep the good seeds in `seeds` (a whole body); a stream hands each on instead */
    private readonly keep = true,
  ) {}

  /**
   * Check one seed (its line number counts from 1); `raw` is what is
   * submitted when it is good. Returns the seed when it is good.
   */
  add(text: string, line: number, raw: unknown = text): CheckedSeed | undefined {
    const parsed = parseSeedLine(text, line, this.workflow.seedSchema);
    if (parsed === null) return undefined;
    if (this.good + this.bad >= this.limits.maxSeeds) {
      throw new HttpError(413, `too many seeds: a job may have at most ${this.limits.maxSeeds}`);
    }
    let problem: string | undefined;
    if (!parsed.ok) problem = parsed.error;
    else {
      const first = this.#ids.add(parsed.id, line);
      if (first !== 0) problem = `seed line ${line}: duplicate seed id "${parsed.id}" (first on line ${first})`;
    }
    if (problem === undefined && parsed.ok) {
      this.good++;
      if (this.keep) this.seeds.push(raw);
      return { id: parsed.id, line, seed: parsed.seed };
    }
    this.bad++;
    if (problem !== undefined && this.problems.length < MAX_REPORTED_LINES) this.problems.push(problem);
    return undefined;
  }

  /** Throws the 400 naming the bad lines, or one for an empty job. */
  finish(): void {
    if (this.bad > 0) {
      const details = [...this.problems];
      if (this.bad > this.problems.length) details.push(`and ${this.bad - this.problems.length} more`);
      const total = this.good + this.bad;
      throw new HttpError(
        400,
        `${this.bad} of ${total} seed lines are bad for workflow "${this.workflow.name}" (nothing was submitted):\n${details.join("\n")}`,
        { details },
      );
    }
    if (this.good === 0) throw new HttpError(400, "the job has no seeds");
  }
}

const JsonSubmissionSchema = z.strictObject({
  workflow: z.string().min(1).optional(),
  seeds: z.array(z.unknown()),
  config: z.record(z.string(), z.unknown()).optional(),
});

function workflowOf(registry: Registry, name: string | undefined): AnyWorkflow {
  if (name === undefined || name === "") {
    throw new HttpError(400, "the workflow is required (\"workflow\" in a JSON body, ?workflow=NAME with an NDJSON body)");
  }
  if (!registry.names().includes(name)) {
    throw new HttpError(400, `unknown workflow "${name}" (known: ${registry.names().join(", ")})`);
  }
  return registry.get(name);
}

/** Validate a job's settings and its workflow options; 400 naming the key otherwise. */
export function checkSettings(workflow: AnyWorkflow, raw: unknown): SubmitSettings {
  const parsed = SubmitSettingsSchema.safeParse(raw ?? {});
  if (!parsed.success) throw new HttpError(400, `config: ${formatIssues(parsed.error)}`);
  const settings = parsed.data;
  if (settings.workflow !== undefined && settings.workflow !== workflow.name) {
    throw new HttpError(400, `config: "workflow" is "${settings.workflow}" but the job is for "${workflow.name}"`);
  }
  // ConfigError names the bad option; the error handler answers it with a 400.
  validate(workflow.configSchema, settings.options ?? {}, `config: options of workflow "${workflow.name}"`);
  return settings;
}

function parseConfigParam(text: string | undefined): unknown {
  if (text === undefined || text === "") return undefined;
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new HttpError(400, `?config= is not JSON: ${(err as Error).message}`);
  }
}

async function readJsonBody(req: Request): Promise<unknown> {
  try {
    return await req.json();
  } catch (err) {
    if (err instanceof HttpError) throw err;
    throw new HttpError(400, `the body is not JSON: ${(err as Error).message}`);
  }
}

/** Let other requests in while a large submission is checked. */
function breather(): Promise<void> {
  return new Promise((r) => setImmediate(r));
}

/** Whether a request's body is a JSON submission (else it is NDJSON, streamed). */
export function isJsonBody(req: Request): boolean {
  return (req.headers.get("content-type") ?? "").split(";")[0]?.trim().toLowerCase() === "application/json";
}

/** A submission read whole (a JSON body), or the head of an NDJSON one whose seed lines are still to come. */
export type ReadSubmission =
  | { kind: "whole"; submission: JobSubmission }
  | { kind: "stream"; workflow: AnyWorkflow; settings: SubmitSettings; lines: AsyncIterable<string> };

/**
 * Read a submission: a JSON body `{workflow, seeds[], config?}` (content
 * type application/json), checked whole; or any other body as NDJSON, one
 * seed per line, with `?workflow=` and optional `?config=` (JSON), whose
 * workflow and settings are checked here and whose lines are left to
 * {@link submitStream}. Nothing is submitted unless every seed is good: a
 * 400 names the bad lines, a 413 answers too many seeds.
 */
export async function readSubmission(
  req: Request,
  query: { workflow?: string; config?: string },
  registry: Registry,
  limits: SubmissionLimits,
): Promise<ReadSubmission> {
  if (isJsonBody(req)) {
    const parsed = JsonSubmissionSchema.safeParse(await readJsonBody(req));
    if (!parsed.success) throw new HttpError(400, `body: ${formatIssues(parsed.error)}`);
    const body = parsed.data;
    const workflow = workflowOf(registry, body.workflow ?? query.workflow);
    const settings = checkSettings(workflow, body.config ?? parseConfigParam(query.config));
    if (body.seeds.length > limits.maxSeeds) {
      throw new HttpError(413, `too many seeds: a job may have at most ${limits.maxSeeds}, got ${body.seeds.length}`);
    }
    const check = new SeedCheck(workflow, limits);
    for (let i = 0; i < body.seeds.length; i++) {
      const seed = body.seeds[i];
      const text = typeof seed === "string" ? seed : (JSON.stringify(seed) ?? "null");
      check.add(text, i + 1, seed);
      if ((i & 4095) === 4095) await breather();
    }
    check.finish();
    return { kind: "whole", submission: { workflow: workflow.name, seeds: check.seeds, config: settings } };
  }
  const workflow = workflowOf(registry, query.workflow);
  const settings = checkSettings(workflow, parseConfigParam(query.config));
  if (!req.body) throw new HttpError(400, "the job has no seeds (empty body)");
  return { kind: "stream", workflow, settings, lines: readLines(req.body, MAX_SEED_LINE_CHARS) };
}

/**
 * Check an NDJSON submission's lines as they stream in and hand each good
 * seed to the node at once, so a job of tens of millions of seeds never sits
 * in memory (only a hash of each id does, to find duplicates). The job
 * starts once the last line is in and every line was good; on the first bad
 * line storing stops, the rest is still checked (to name every bad line, up
 * to MAX_REPORTED_LINES) and the job is dropped as if never submitted.
 */
export async function submitStream(
  node: ClusterNode,
  s: Extract<ReadSubmission, { kind: "stream" }>,
  limits: SubmissionLimits,
): Promise<{ id: string; total: number }> {
  const check = new SeedCheck(s.workflow, limits, false);
  const intake = await node.intake({ workflow: s.workflow.name, config: s.settings });
  let line = 0;
  let started = false;
  try {
    try {
      for await (const text of s.lines) {
        const seed = check.add(text, ++line);
        if (seed && check.bad === 0) await intake.add(seed);
        if ((line & 4095) === 4095) await breather();
      }
    } catch (err) {
      if (err instanceof LineTooLongError) throw new HttpError(413, `seed line ${err.line} is longer than ${err.maxChars} characters`);
      throw err;
    }
    check.finish();
    const r = await intake.commit();
    started = true;
    return r;
  } finally {
    if (!started) await intake.abort().catch(() => undefined);
  }
}
