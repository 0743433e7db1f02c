import { randomUUID } from "node:crypto";
import type { JobRecord, SeedMessage } from "../store/index.ts";
import { validate } from "../config/load.ts";
import { type JobRuntime, makeJobRuntime } from "../engine/job.ts";
import { seedTrials } from "../engine/tasks.ts";
import { AdmissionOrder } from "../engine/admission.ts";
import type { Logger } from "../log.ts";
import { startOf } from "../engine/step.ts";
import { ConfigError, SeedError } from "../errors.ts";
import type { AnyWorkflow } from "../plugin/api.ts";
import type { Registry } from "../plugin/registry.ts";
import { encode } from "../protocol/codec.ts";
import { type LoadedWorkflow, loadDefinition } from "../workflow/index.ts";
import { SubmitSettingsSchema } from "../protocol/job.ts";
import { type CheckedSeed, MAX_REPORTED_LINES, SeedCheck, seedText } from "../seeds/check.ts";
import type { JobSubmission } from "./types.ts";
import { registryLookup } from "./workflows.ts";

/** Defaults of a job's settings: the same as `matrixd run`, so both give the same dataset. */
export const JOB_DEFAULTS = { concurrency: 1024, trials: 1, seed: 0, stepRetries: 1 } as const;

/** Bad seeds of a submission, each named (the first MAX_REPORTED_LINES); nothing of the job was stored. */
export class SeedBatchError extends SeedError {
  override name = "SeedBatchError";
  constructor(
    readonly errors: SeedError[],
    /** bad lines in all, named or not */
    readonly total = errors.length,
  ) {
    const shown = errors.slice(0, MAX_REPORTED_LINES).map((e) => e.message);
    if (total > shown.length) shown.push(`and ${total - shown.length} more`);
    super(`${total} bad seed line${total > 1 ? "s" : ""}: ${shown.join("; ")}`, errors[0]?.line ?? 0);
  }
}

/** A submission checked and turned into what is stored: the job record and its task messages. */
export interface PreparedJob {
  head: JobHead;
  record: JobRecord;
  /** one message per task (seed × trial), made on demand */
  tasks: () => Iterable<SeedMessage>;
}

/** A job's workflow, id and complete settings, checked (its options by the workflow's schema). */
export interface JobHead {
  workflow: AnyWorkflow;
  id: string;
  settings: JobRecord["settings"];
  runtime: JobRuntime;
  /** the definition the job carries, checked, when its workflow is not one of the nodes' own */
  carried?: LoadedWorkflow;
}

/** How the errors of a job head check name what they are about. */
export interface HeadLabels {
  /** the settings (`job config`) */
  settings: string;
  /** the workflow's options (default `options of workflow "NAME"`) */
  options?: string;
}

/**
 * Check a job's settings and its workflow's options, and fill in the
 * defaults; throws ConfigError naming what is wrong.
 */
export function checkJobHead(
  workflow: AnyWorkflow,
  config: unknown,
  labels: HeadLabels = { settings: "job config" },
  carried?: LoadedWorkflow,
): JobHead {
  const s = validate(SubmitSettingsSchema, config ?? {}, labels.settings);
  if (s.workflow !== undefined && !namesWorkflow(s.workflow, workflow, carried)) {
    throw new ConfigError(`${labels.settings}: "workflow" is "${s.workflow}" but the job is for "${workflow.name}"`);
  }
  const id = s.job ?? `job-${randomUUID().replaceAll("-", "").slice(0, 12)}`;
  const settings = {
    concurrency: s.concurrency ?? JOB_DEFAULTS.concurrency,
    trials: s.trials ?? JOB_DEFAULTS.trials,
    seed: s.seed ?? JOB_DEFAULTS.seed,
    stepRetries: s.stepRetries ?? JOB_DEFAULTS.stepRetries,
    options: s.options ?? {},
    ...(s.maxSteps !== undefined ? { maxSteps: s.maxSteps } : {}),
    ...(s.budget !== undefined ? { budget: s.budget } : {}),
    ...(s.purgeRows !== undefined ? { purgeRows: s.purgeRows } : {}),
    ...(s.admission !== undefined ? { admission: s.admission } : {}),
  };
  const runtime = makeJobRuntime({
    id,
    workflow,
    options: settings.options,
    seed: settings.seed,
    maxSteps: settings.maxSteps,
    stepRetries: settings.stepRetries,
    where: labels.options,
    workflowHash: carried?.hash,
  });
  return { workflow, id, settings, runtime, ...(carried ? { carried } : {}) };
}

/** Whether a name given with a job (its config's `workflow`) is its workflow's: a carried one goes by its carried name or its own. */
function namesWorkflow(name: string, workflow: AnyWorkflow, carried: LoadedWorkflow | undefined): boolean {
  return name === workflow.name || (carried !== undefined && name === carried.file.name);
}

/**
 * A job whose workflow and settings are checked: a node opens it as it is.
 * Only `checkJobHead` makes its head, so holding one is proof of the check.
 */
export class CheckedHead implements Omit<JobSubmission, "seeds"> {
  readonly workflow: string;
  readonly definition: Record<string, unknown> | undefined;
  readonly config: Record<string, unknown>;
  constructor(readonly head: JobHead) {
    this.workflow = head.workflow.name;
    this.definition = head.carried?.definition;
    this.config = head.settings;
  }
}

/** A submission checked whole, its seeds too: a node stores it as it is. */
export class CheckedJob extends CheckedHead implements JobSubmission {
  constructor(
    head: JobHead,
    readonly seeds: readonly CheckedSeed[],
  ) {
    super(head);
  }
}

/**
 * The head of a submission: as it was checked, or checked now: the
 * definition it carries (WorkflowError listing every problem; its `ts`
 * roles name workflows of `registry`), or the registry's workflow it
 * names; then its settings (ConfigError naming what is wrong).
 */
export function prepareHead(sub: Omit<JobSubmission, "seeds">, registry: Registry): JobHead {
  if (sub instanceof CheckedHead) return sub.head;
  if (sub.definition !== undefined) {
    const carried = loadDefinition(sub.definition, { workflows: registryLookup(registry) });
    if (sub.workflow !== undefined && !namesWorkflow(sub.workflow, carried.workflow, carried)) {
      throw new ConfigError(`the job names workflow "${sub.workflow}" but its definition is "${carried.workflow.name}"`);
    }
    return checkJobHead(carried.workflow, sub.config, undefined, carried);
  }
  if (sub.workflow === undefined) throw new ConfigError("a job needs a workflow: the name of one of the nodes' own, or a definition");
  return checkJobHead(registry.get(sub.workflow), sub.config);
}

/** The record of a job as it is first stored, its definition with it when it carries one. */
export function newJobRecord(head: JobHead, entry: string, node: string, extra: Partial<JobRecord> = {}): JobRecord {
  const now = Date.now();
  return {
    v: 1,
    id: head.id,
    workflow: head.workflow.name,
    state: "submitting",
    total: 0,
    entry,
    settings: head.settings,
    createdAt: now,
    updatedAt: now,
    acceptedBy: node,
    ...(head.carried ? { definition: head.carried.definition, definitionHash: head.carried.hash } : {}),
    ...extra,
  };
}

/**
 * A job record too large for one NATS message (a large definition, or
 * large options), or undefined. Checked before anything of the job is
 * stored; `entry` is the longest role name when the real one is not known
 * yet, so the record as stored is never larger.
 */
export function recordSizeProblem(head: JobHead, node: string, maxMessageBytes: number): string | undefined {
  const longest = Object.keys(head.workflow.roles).reduce((a, b) => (b.length > a.length ? b : a), "");
  const bytes = encode(newJobRecord(head, longest, node, { total: Number.MAX_SAFE_INTEGER })).length;
  if (bytes <= maxMessageBytes) return undefined;
  const def = head.carried ? ` (its workflow definition ${encode(head.carried.definition).length} bytes)` : "";
  return `the job's record is ${bytes} bytes${def}, more than the ${maxMessageBytes} one NATS message may have here (the server's max_payload)`;
}

/** Throw the SeedBatchError naming a check's bad lines, or the one for an empty job. */
export function throwSeedProblems(check: SeedCheck): void {
  if (check.bad > 0) throw new SeedBatchError(check.problems.map((p) => new SeedError(p.message, p.line)), check.bad);
  if (check.good === 0) throw new SeedBatchError([new SeedError("the job has no seeds", 0)]);
}

/**
 * Check a submission whole: the workflow, the settings, the workflow's
 * options, every seed (JSON object, seed schema, unique id, and what `fits`
 * says of it). Throws ConfigError or SeedBatchError naming what is wrong.
 */
export function checkJob(sub: JobSubmission, registry: Registry, fits?: (seed: CheckedSeed) => string | undefined): CheckedJob {
  if (sub instanceof CheckedJob) return sub;
  const head = prepareHead(sub, registry);
  const check = new SeedCheck(head.workflow);
  sub.seeds.forEach((raw, i) => {
    const seed = check.add(seedText(raw), i + 1);
    const problem = seed && fits?.(seed);
    if (seed && problem) check.refuse(seed, problem);
  });
  throwSeedProblems(check);
  return new CheckedJob(head, check.seeds);
}

/** The role a workflow's tasks start at, from one of its seeds (any role when that seed cannot start). */
export function entryRole(head: JobHead, seed: Record<string, unknown>): string {
  try {
    return startOf(head.workflow, seed, head.runtime.config).next;
  } catch {
    // A seed the workflow cannot start gets a failed row at admission; any role will do as the entry.
    return Object.keys(head.workflow.roles)[0] as string;
  }
}

/** A seed's messages, one per trial. */
export function* seedMessages(job: string, trials: number, g: CheckedSeed): Generator<SeedMessage> {
  for (const t of seedTrials(g, trials, false)) yield { v: 1, job, id: t.id, trial: t.trial, line: t.line, seed: t.seed };
}

/** The job's admission order over its task messages: the order they are stored in, so the order nodes take them. */
export function seedOrder(head: JobHead, log: Logger): AdmissionOrder<SeedMessage> {
  return new AdmissionOrder(head.settings.admission, (m) => m.seed, head.settings.seed, (err, m) =>
    log.warn({ job: head.id, line: m.line, err: err.message }, `seed line ${m.line}: ${err.message}; seeds whose admission key cannot be read are stored in file order`),
  );
}

/** A seed too large for one NATS message, or undefined. */
export function seedSizeProblem(seed: Record<string, unknown>, line: number, maxMessageBytes: number): string | undefined {
  const bytes = encode(seed).length;
  return bytes > maxMessageBytes ? `seed line ${line}: ${bytes} bytes, more than the ${maxMessageBytes} a seed may have` : undefined;
}

/**
 * Turn a submission into its record and task messages. A submission not
 * checked yet is checked whole here (`checkJob`); every seed must fit in one
 * NATS message. Throws ConfigError or SeedBatchError naming what is wrong.
 */
export function prepareJob(sub: JobSubmission, registry: Registry, node: string, maxMessageBytes: number): PreparedJob {
  const fits = (g: CheckedSeed) => seedSizeProblem(g.seed, g.line, maxMessageBytes);
  if (sub instanceof CheckedJob) {
    const tooLarge: SeedError[] = [];
    for (const g of sub.seeds) {
      const problem = fits(g);
      if (problem) tooLarge.push(new SeedError(problem, g.line));
    }
    if (tooLarge.length > 0) throw new SeedBatchError(tooLarge.slice(0, MAX_REPORTED_LINES), tooLarge.length);
    if (sub.seeds.length === 0) throw new SeedBatchError([new SeedError("the job has no seeds", 0)]);
  }
  const job = checkJob(sub, registry, fits);
  const { head, seeds: good } = job;
  const { id, settings } = head;

  const tooLarge = recordSizeProblem(head, node, maxMessageBytes);
  if (tooLarge) throw new ConfigError(tooLarge);
  const entry = entryRole(head, (good[0] as CheckedSeed).seed);
  const record = newJobRecord(head, entry, node, { total: good.length * settings.trials });
  const trials = settings.trials;
  return {
    head,
    record,
    *tasks() {
      for (const g of good) yield* seedMessages(id, trials, g);
    },
  };
}
