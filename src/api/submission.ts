import { z } from "zod";
import { configIssues, validate } from "../config/load.ts";
import type { JobSubmission } from "../cluster/types.ts";
import type { AnyWorkflow } from "../plugin/api.ts";
import type { Registry } from "../plugin/registry.ts";
import { parseSeedLine } from "../seeds/seeds.ts";
import { readLines } from "../util/lines.ts";
import { HttpError } from "./http-error.ts";
import { type JobSettings, JobSettingsSchema } from "./job-settings.ts";

/** Bad seed lines named one by one in a 400; past this many, "and N more". */
export const MAX_REPORTED_LINES = 50;

export interface SubmissionLimits {
  /** seeds a job may have at most (413 past it) */
  maxSeeds: number;
}

/**
 * Checks seed lines one at a time against a workflow's seed schema and keeps
 * the good ones. Every bad line is counted; the first MAX_REPORTED_LINES are
 * named. Duplicate seed ids are bad lines too: two tasks with one id could
 * never both get their row.
 */
export class SeedCheck {
  /** the seeds to submit, as received (lines or objects), blank lines left out */
  readonly seeds: unknown[] = [];
  readonly problems: string[] = [];
  bad = 0;
  #firstLine = new Map<string, number>();

  constructor(
    readonly workflow: AnyWorkflow,
    readonly limits: SubmissionLimits,
  ) {}

  /** Check one seed (its line number counts from 1); `raw` is what is submitted when it is good. */
  add(text: string, line: number, raw: unknown = text): void {
    const parsed = parseSeedLine(text, line, this.workflow.seedSchema);
    if (parsed === null) return;
    if (this.seeds.length + this.bad >= this.limits.maxSeeds) {
      throw new HttpError(413, `too many seeds: a job may have at most ${this.limits.maxSeeds}`);
    }
    let problem: string | undefined;
    if (!parsed.ok) problem = parsed.error;
    else {
      const first = this.#firstLine.get(parsed.id);
      if (first !== undefined) problem = `seed line ${line}: duplicate seed id "${parsed.id}" (first on line ${first})`;
      else this.#firstLine.set(parsed.id, line);
    }
    if (problem === undefined) {
      this.seeds.push(raw);
      return;
    }
    this.bad++;
    if (this.problems.length < MAX_REPORTED_LINES) this.problems.push(problem);
  }

  /** Throws the 400 naming the bad lines, or one for an empty job. */
  finish(): void {
    if (this.bad > 0) {
      const details = [...this.problems];
      if (this.bad > this.problems.length) details.push(`and ${this.bad - this.problems.length} more`);
      const total = this.seeds.length + this.bad;
      throw new HttpError(
        400,
        `${this.bad} of ${total} seed lines are bad for workflow "${this.workflow.name}" (nothing was submitted):\n${details.join("\n")}`,
        { details },
      );
    }
    if (this.seeds.length === 0) throw new HttpError(400, "the job has no seeds");
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
export function checkSettings(workflow: AnyWorkflow, raw: unknown): JobSettings {
  const parsed = JobSettingsSchema.safeParse(raw ?? {});
  if (!parsed.success) throw new HttpError(400, `config: ${configIssues(parsed.error)}`);
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

/**
 * Read and validate a submission: a JSON body `{workflow, seeds[], config?}`
 * (content type application/json), or any other body as NDJSON, one seed per
 * line, with `?workflow=` and optional `?config=` (JSON). NDJSON is checked
 * line by line as it streams in. Nothing is submitted unless every seed is
 * good: a 400 names the bad lines, a 413 answers too many seeds.
 */
export async function readSubmission(
  req: Request,
  query: { workflow?: string; config?: string },
  registry: Registry,
  limits: SubmissionLimits,
): Promise<JobSubmission> {
  const type = (req.headers.get("content-type") ?? "").split(";")[0]?.trim().toLowerCase() ?? "";
  if (type === "application/json") {
    const parsed = JsonSubmissionSchema.safeParse(await readJsonBody(req));
    if (!parsed.success) throw new HttpError(400, `body: ${configIssues(parsed.error)}`);
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
    return { workflow: workflow.name, seeds: check.seeds, config: settings };
  }
  const workflow = workflowOf(registry, query.workflow);
  const settings = checkSettings(workflow, parseConfigParam(query.config));
  if (!req.body) throw new HttpError(400, "the job has no seeds (empty body)");
  const check = new SeedCheck(workflow, limits);
  let line = 0;
  for await (const text of readLines(req.body)) {
    check.add(text, ++line);
    if ((line & 4095) === 4095) await breather();
  }
  check.finish();
  return { workflow: workflow.name, seeds: check.seeds, config: settings };
}
