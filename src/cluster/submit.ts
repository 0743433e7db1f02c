import { randomUUID } from "node:crypto";
import type { JobRecord, SeedMessage } from "../store/index.ts";
import { validate } from "../config/load.ts";
import { makeJobRuntime } from "../engine/job.ts";
import { ConfigError, SeedError } from "../errors.ts";
import type { AnyWorkflow } from "../plugin/api.ts";
import type { Registry } from "../plugin/registry.ts";
import { encode } from "../protocol/codec.ts";
import { SubmitSettingsSchema } from "../protocol/job.ts";
import { parseSeedLine } from "../seeds/seeds.ts";
import type { JobSubmission } from "./types.ts";

/** Defaults of a job's settings: the same as `matrixd run`, so both give the same dataset. */
export const JOB_DEFAULTS = { concurrency: 1024, trials: 1, seed: 0, stepRetries: 1 } as const;

/** Bad seeds of a submission, each named; nothing of the job was stored. */
export class SeedBatchError extends SeedError {
  override name = "SeedBatchError";
  constructor(readonly errors: SeedError[]) {
    const shown = errors.slice(0, 50).map((e) => e.message);
    if (errors.length > shown.length) shown.push(`and ${errors.length - shown.length} more`);
    super(`${errors.length} bad seed line${errors.length > 1 ? "s" : ""}: ${shown.join("; ")}`, errors[0]?.line ?? 0);
  }
}

/** A submission checked and turned into what is stored: the job record and its task messages. */
export interface PreparedJob {
  record: JobRecord;
  /** one message per task (seed × trial), made on demand */
  tasks: () => Iterable<SeedMessage>;
}

interface GoodSeed {
  id: string;
  line: number;
  seed: Record<string, unknown>;
}

/** A job's workflow, id and complete settings, checked (its options by the workflow's schema). */
export interface JobHead {
  workflow: AnyWorkflow;
  id: string;
  settings: JobRecord["settings"];
  runtime: ReturnType<typeof makeJobRuntime>;
}

/** Check a job's workflow and settings; throws ConfigError naming what is wrong. */
export function prepareHead(sub: Omit<JobSubmission, "seeds">, registry: Registry): JobHead {
  const workflow: AnyWorkflow = registry.get(sub.workflow);
  const s = validate(SubmitSettingsSchema, sub.config ?? {}, "job config");
  if (s.workflow !== undefined && s.workflow !== workflow.name) {
    throw new ConfigError(`job config: "workflow" is "${s.workflow}" but the job is for "${workflow.name}"`);
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
  };
  // Validates the workflow's options (ConfigError names the bad one).
  const runtime = makeJobRuntime({ id, workflow, options: settings.options, seed: settings.seed, maxSteps: settings.maxSteps, stepRetries: settings.stepRetries });
  return { workflow, id, settings, runtime };
}

/** The role a workflow's tasks start at, from one of its seeds (any role when that seed cannot start). */
export function entryRole(head: JobHead, seed: Record<string, unknown>): string {
  try {
    return head.workflow.start(seed, head.runtime.config).next;
  } catch {
    // A seed the workflow cannot start gets a failed row at admission; any role will do as the entry.
    return Object.keys(head.workflow.roles)[0] as string;
  }
}

/** A seed's messages, one per trial. */
export function* seedMessages(job: string, trials: number, g: { id: string; line: number; seed: Record<string, unknown> }): Generator<SeedMessage> {
  for (let trial = 0; trial < trials; trial++) {
    yield { v: 1, job, id: trials > 1 ? `${g.id}#${trial}` : g.id, trial, line: g.line, seed: g.seed };
  }
}

/** A seed too large for one NATS message, or undefined. */
export function seedSizeProblem(seed: Record<string, unknown>, line: number, maxMessageBytes: number): string | undefined {
  const bytes = encode(seed).length;
  return bytes > maxMessageBytes ? `seed line ${line}: ${bytes} bytes, more than the ${maxMessageBytes} a seed may have` : undefined;
}

/**
 * Check a submission once, whole: the workflow, the settings, the
 * workflow's options, every seed (JSON object, seed schema, unique id, size).
 * Throws ConfigError or SeedBatchError naming what is wrong.
 */
export function prepareJob(sub: JobSubmission, registry: Registry, node: string, maxMessageBytes: number): PreparedJob {
  const head = prepareHead(sub, registry);
  const { workflow, id, settings } = head;

  const good: GoodSeed[] = [];
  const errors: SeedError[] = [];
  const seen = new Map<string, number>();
  sub.seeds.forEach((raw, i) => {
    const line = i + 1;
    const text = typeof raw === "string" ? raw : (JSON.stringify(raw) ?? "null");
    const parsed = parseSeedLine(text, line, workflow.seedSchema);
    if (parsed === null) return;
    if (!parsed.ok) {
      errors.push(new SeedError(parsed.error, line));
      return;
    }
    const first = seen.get(parsed.id);
    if (first !== undefined) {
      errors.push(new SeedError(`seed line ${line}: duplicate seed id "${parsed.id}" (first on line ${first})`, line));
      return;
    }
    seen.set(parsed.id, line);
    const tooLarge = seedSizeProblem(parsed.seed, line, maxMessageBytes);
    if (tooLarge) {
      errors.push(new SeedError(tooLarge, line));
      return;
    }
    good.push({ id: parsed.id, line, seed: parsed.seed });
  });
  if (errors.length > 0) throw new SeedBatchError(errors);
  if (good.length === 0) throw new SeedBatchError([new SeedError("the job has no seeds", 0)]);

  const entry = entryRole(head, (good[0] as GoodSeed).seed);
  const now = Date.now();
  const record: JobRecord = {
    v: 1,
    id,
    workflow: workflow.name,
    state: "submitting",
    total: good.length * settings.trials,
    entry,
    settings,
    createdAt: now,
    updatedAt: now,
    acceptedBy: node,
  };
  const trials = settings.trials;
  return {
    record,
    *tasks() {
      for (const g of good) yield* seedMessages(id, trials, g);
    },
  };
}
