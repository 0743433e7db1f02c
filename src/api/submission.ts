import { z } from "zod";
import { formatIssues } from "../util/issues.ts";
import { CheckedHead, CheckedJob, checkJobHead, type JobHead } from "../cluster/submit.ts";
import type { ClusterNode } from "../cluster/types.ts";
import { registryLookup } from "../cluster/workflows.ts";
import type { AnyWorkflow } from "../plugin/api.ts";
import type { Registry } from "../plugin/registry.ts";
import { SeedCheck, seedText } from "../seeds/check.ts";
import { LineTooLongError, readLines } from "../util/lines.ts";
import { isRecord } from "../util/record.ts";
import { type LoadedWorkflow, loadDefinition } from "../workflow/index.ts";
import { HttpError } from "./http-error.ts";

export { MAX_REPORTED_LINES } from "../seeds/check.ts";

export interface SubmissionLimits {
  /** seeds a job may have at most (413 past it) */
  maxSeeds: number;
}

/** Characters a line of a streamed submission may have; a seed is at most about 1 MB (NATS's message limit). */
export const MAX_SEED_LINE_CHARS = 4 * 1024 * 1024;

/** A check of a submission's seed lines, with the API's limit: 413 past `maxSeeds`. */
function seedCheck(workflow: AnyWorkflow, limits: SubmissionLimits, keep: boolean): SeedCheck {
  return new SeedCheck(workflow, {
    keep,
    maxSeeds: limits.maxSeeds,
    tooMany: (max) => new HttpError(413, `too many seeds: a job may have at most ${max}`),
  });
}

/** Throws the 400 naming a check's bad lines, or one for an empty job. */
function finishCheck(check: SeedCheck): void {
  if (check.bad > 0) {
    const details = check.problems.map((p) => p.message);
    if (check.bad > details.length) details.push(`and ${check.bad - details.length} more`);
    const total = check.good + check.bad;
    throw new HttpError(
      400,
      `${check.bad} of ${total} seed lines are bad for workflow "${check.workflow.name}" (nothing was submitted):\n${details.join("\n")}`,
      { details },
    );
  }
  if (check.good === 0) throw new HttpError(400, "the job has no seeds");
}

const Definition = z.record(z.string(), z.unknown());
const Config = z.record(z.string(), z.unknown());

const JsonSubmissionSchema = z.strictObject({
  workflow: z.string().min(1).optional(),
  /** a workflow definition (a workflow file as JSON), instead of `workflow` */
  definition: Definition.optional(),
  seeds: z.array(z.unknown()),
  config: Config.optional(),
});

/** The first line of an NDJSON body without `?workflow=`: the definition the job carries, and its settings. */
const NdjsonHeadSchema = z.strictObject({ definition: Definition, config: Config.optional() });

/** What an NDJSON body without `?workflow=` starts with. */
const NDJSON_HEAD = 'a line {"definition": {...}, "config": {...}} (config optional) before the seed lines';

function workflowOf(registry: Registry, name: string | undefined): AnyWorkflow {
  if (name === undefined || name === "") {
    throw new HttpError(
      400,
      `the workflow is required ("workflow" or "definition" in a JSON body; ?workflow=NAME with an NDJSON body, or without it ${NDJSON_HEAD})`,
    );
  }
  const workflow = registry.find(name);
  if (!workflow) throw new HttpError(400, `unknown workflow "${name}" (known: ${registry.names().join(", ")})`);
  return workflow;
}

/**
 * Check a definition a job carries, as every node will: its `ts` roles may
 * name this node's workflows. A WorkflowError lists every problem; the
 * error handler answers it with a 400 whose `details` are the problems.
 */
function carriedOf(raw: unknown, registry: Registry): LoadedWorkflow {
  return loadDefinition(raw, { workflows: registryLookup(registry) });
}

/** Check a job's settings and its workflow options once, for the node to take as they are; 400 naming the key otherwise. */
export function checkSettings(workflow: AnyWorkflow, raw: unknown, carried?: LoadedWorkflow): JobHead {
  // ConfigError names the bad key or option; the error handler answers it with a 400.
  return checkJobHead(workflow, raw, { settings: "config", options: `config: options of workflow "${workflow.name}"` }, carried);
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
  | { kind: "whole"; submission: CheckedJob }
  | {
      kind: "stream";
      workflow: AnyWorkflow;
      head: JobHead;
      /** the seed lines (after the definition line, when there is one) */
      lines: AsyncIterable<string>;
      /** lines of the body before the first seed line (1 with a definition line): seed lines are counted from 1 after them */
      skipped: number;
    };

/**
 * Read a submission. A JSON body (content type application/json)
 * `{workflow, seeds[], config?}`, or `{definition, seeds[], config?}` for a
 * workflow the job carries, is checked whole. Any other body is NDJSON, one
 * seed per line: with `?workflow=NAME` (and optional `?config=`, JSON), or,
 * for a workflow the job carries, without `?workflow=` and with a first
 * line `{"definition": {...}, "config": {...}}` (config optional) before the
 * seed lines, which are counted from 1 after it. Its workflow and settings
 * are checked here and its lines are left to {@link submitStream}. A
 * definition with problems answers 400 naming each; nothing is submitted
 * unless every seed is good: a 400 names the bad lines, a 413 answers too
 * many seeds.
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
    if (body.definition !== undefined && (body.workflow ?? query.workflow) !== undefined) {
      throw new HttpError(400, 'give "workflow" (a workflow of the nodes) or "definition" (a workflow the job carries), not both');
    }
    const carried = body.definition !== undefined ? carriedOf(body.definition, registry) : undefined;
    const workflow = carried?.workflow ?? workflowOf(registry, body.workflow ?? query.workflow);
    const head = checkSettings(workflow, body.config ?? parseConfigParam(query.config), carried);
    if (body.seeds.length > limits.maxSeeds) {
      throw new HttpError(413, `too many seeds: a job may have at most ${limits.maxSeeds}, got ${body.seeds.length}`);
    }
    const check = seedCheck(workflow, limits, true);
    for (let i = 0; i < body.seeds.length; i++) {
      check.add(seedText(body.seeds[i]), i + 1);
      if ((i & 4095) === 4095) await breather();
    }
    finishCheck(check);
    return { kind: "whole", submission: new CheckedJob(head, check.seeds) };
  }
  if (query.workflow !== undefined || !req.body) {
    const workflow = workflowOf(registry, query.workflow);
    const head = checkSettings(workflow, parseConfigParam(query.config));
    if (!req.body) throw new HttpError(400, "the job has no seeds (empty body)");
    return { kind: "stream", workflow, head, lines: readLines(req.body, MAX_SEED_LINE_CHARS), skipped: 0 };
  }
  // No ?workflow=: the first line carries the definition.
  const it = readLines(req.body, MAX_SEED_LINE_CHARS)[Symbol.asyncIterator]();
  let first: IteratorResult<string>;
  try {
    first = await it.next();
  } catch (err) {
    if (err instanceof LineTooLongError) throw new HttpError(413, `the definition line is longer than ${err.maxChars} characters`);
    throw err;
  }
  if (first.done) workflowOf(registry, undefined);
  const headLine = parseHeadLine(first.value as string, registry);
  if (headLine.config !== undefined && query.config !== undefined) {
    throw new HttpError(400, "give the job's settings in the definition line's \"config\" or in ?config=, not both");
  }
  const carried = carriedOf(headLine.definition, registry);
  const head = checkSettings(carried.workflow, headLine.config ?? parseConfigParam(query.config), carried);
  return { kind: "stream", workflow: carried.workflow, head, lines: rest(it), skipped: 1 };
}

/** The definition line of an NDJSON body; 400 saying what it must be otherwise. */
function parseHeadLine(text: string, registry: Registry): z.infer<typeof NdjsonHeadSchema> {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new HttpError(400, `line 1 is not JSON (${(err as Error).message}); an NDJSON body without ?workflow= starts with ${NDJSON_HEAD}`);
  }
  // A seed line where the definition line should be: the workflow was left out.
  if (!isRecord(raw) || !("definition" in raw)) workflowOf(registry, undefined);
  const parsed = NdjsonHeadSchema.safeParse(raw);
  if (!parsed.success) {
    throw new HttpError(400, `line 1: ${formatIssues(parsed.error)}; an NDJSON body without ?workflow= starts with ${NDJSON_HEAD}`);
  }
  return parsed.data;
}

/** What is left of a line iterator. */
async function* rest(it: AsyncIterator<string>): AsyncGenerator<string> {
  for (;;) {
    const n = await it.next();
    if (n.done) return;
    yield n.value;
  }
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
  const check = seedCheck(s.workflow, limits, false);
  const intake = await node.intake(new CheckedHead(s.head));
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
      if (err instanceof LineTooLongError) throw new HttpError(413, `seed line ${err.line - s.skipped} is longer than ${err.maxChars} characters`);
      throw err;
    }
    finishCheck(check);
    const r = await intake.commit();
    started = true;
    return r;
  } finally {
    if (!started) await intake.abort().catch(() => undefined);
  }
}
