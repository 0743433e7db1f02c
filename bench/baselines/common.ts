/**
 * What every baseline shares with matrixd: the workflow's own roles, the same
 * LLM client, the same seeds, and the engine's task lifecycle
 * (src/engine/tasks.ts: seeds to tasks, steps, rows). Only the scheduling
 * differs from one baseline to the next, and from matrixd.
 *
 * A baseline is a process started by the benchmark with `--spec FILE`; it
 * writes one row per task to the spec's output and, at the end, one JSON line
 * (a BaselineReport) on stdout. When the spec has an `env` section the
 * process opens its own environment service with it (the settings matrixd
 * gets, capacity included) and hands it to the agents as `ctx.services.env`,
 * as `matrixd run --env` does.
 */
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { z } from "zod";
import { builtinWorkflows } from "../../plugins/index.ts";
import { type JobRuntime, makeJobRuntime } from "../../src/engine/job.ts";
import { SeedFile, startTask, type TaskSeed, TaskRunner } from "../../src/engine/tasks.ts";
import { describe } from "../../src/errors.ts";
import { createEnvService, parseEnvConfig } from "../../src/env/index.ts";
import type { EnvService } from "../../src/env/types.ts";
import { createLlmClient, type LlmClient } from "../../src/llm/index.ts";
import { createLogger, silentLogger } from "../../src/log.ts";
import { Registry } from "../../src/plugin/registry.ts";
import type { OutputRow, TaskState } from "../../src/protocol/task.ts";
import { JsonlSink } from "../../src/sink/jsonl.ts";

/** What the benchmark hands a baseline process. */
export const BaselineSpecSchema = z.strictObject({
  workflow: z.string().min(1),
  seeds: z.string().min(1),
  out: z.string().min(1),
  /** the workflow's options */
  options: z.record(z.string(), z.unknown()).default({}),
  /** the job's random seed */
  seed: z.number().int().default(0),
  endpoints: z
    .array(z.strictObject({ url: z.string().min(1), maxConcurrency: z.number().int().positive(), models: z.array(z.string().min(1)).min(1).optional() }))
    .default([]),
  /** tasks per seed, ids suffixed #0, #1... when more than one (as `matrixd run --trials`) */
  trials: z.number().int().positive().default(1),
  /** the environment service's config (driver, capacity, node...); absent: no environments */
  env: z.record(z.string(), z.unknown()).optional(),
  /** the baseline's own knobs (batch size, concurrency, ...) */
  setting: z.record(z.string(), z.number()).default({}),
  /** baseline-specific extras (the Redis URL of the job queue) */
  extra: z.record(z.string(), z.string()).default({}),
});
export type BaselineSpec = z.infer<typeof BaselineSpecSchema>;

/** The JSON line a baseline prints when done. */
export interface BaselineReport {
  rows: number;
  ok: number;
  failed: number;
  steps: number;
  seconds: number;
}

/** Read `--spec FILE`. */
export function readSpec(argv: string[]): BaselineSpec {
  const { values } = parseArgs({ args: argv, options: { spec: { type: "string" } }, strict: true });
  if (!values.spec) throw new Error("--spec FILE is required");
  return BaselineSpecSchema.parse(JSON.parse(readFileSync(values.spec, "utf8")));
}

/** A number from the spec's setting, or a clear error. */
export function setting(spec: BaselineSpec, name: string): number {
  const v = spec.setting[name];
  if (v === undefined || !Number.isInteger(v) || v < 1) throw new Error(`setting "${name}" must be a whole number >= 1`);
  return v;
}

/** Runs opened in this process, closed by `runBaseline` when the main fails. */
const openRuns = new Set<BaselineRun>();

/**
 * One baseline run: the job, the LLM client, the environments, the output,
 * and the engine's own task lifecycle (src/engine/tasks.ts): the seed file
 * read as `matrixd run` reads it, each step run by the engine's TaskRunner,
 * each row built and counted as the engine does. A baseline only decides
 * when each task's next step runs.
 */
export class BaselineRun {
  readonly job: JobRuntime;
  readonly llm: LlmClient | undefined;
  /** the environment service, when the spec asks for one */
  envs: EnvService | undefined;
  readonly sink: JsonlSink;
  readonly node: string;
  #services: Record<string, unknown> = {};
  readonly #runner: TaskRunner;
  #closed = false;
  rows = 0;
  ok = 0;
  failed = 0;
  /** tasks that never started (bad seed lines, seeds the workflow cannot start); their failed rows are written */
  seedErrors = 0;
  readonly startedAt = performance.now();

  constructor(
    readonly spec: BaselineSpec,
    node: string,
  ) {
    const workflow = new Registry(builtinWorkflows).get(spec.workflow);
    this.job = makeJobRuntime({ workflow, options: spec.options, seed: spec.seed, stepRetries: 1, source: spec.seeds });
    this.llm = spec.endpoints.length > 0 ? createLlmClient({ endpoints: spec.endpoints }, { log: silentLogger }) : undefined;
    this.sink = new JsonlSink(spec.out);
    this.node = node;
    this.#runner = new TaskRunner({
      jobs: () => this.job,
      node,
      log: createLogger({ level: "warn", stream: "stderr", name: `baseline-${node}` }),
      llm: this.llm,
      services: this.#services,
      finish: async (row) => this.#write(row),
    });
    openRuns.add(this);
  }

  /** A run with its environment service open (when the spec has one). */
  static async open(spec: BaselineSpec, node: string): Promise<BaselineRun> {
    const run = new BaselineRun(spec, node);
    if (spec.env) {
      try {
        run.envs = await createEnvService(parseEnvConfig(spec.env), silentLogger);
      } catch (err) {
        await run.close();
        throw err;
      }
      run.#services.env = run.envs;
    }
    return run;
  }

  /** Steps run so far. */
  get steps(): number {
    return this.#runner.stats.steps;
  }

  /** The tasks of the seed file, streamed; lines that are no task get their failed row at once. */
  async *tasks(): AsyncGenerator<TaskSeed> {
    for await (const entry of new SeedFile(this.spec.seeds, this.job, this.spec.trials).entries()) {
      if (entry.ok) yield entry;
      else {
        this.seedErrors++;
        this.#write(entry.row);
      }
    }
  }

  /** Admit a task now: its first state, or undefined when it cannot start (its failed row is written). */
  start(task: TaskSeed): TaskState | undefined {
    const started = startTask(this.job, task);
    if (!started.row) return started.state;
    this.seedErrors++;
    this.#write(started.row);
    return undefined;
  }

  /**
   * Run the task's next step. Returns the state to run next (its `next` is
   * the role), or undefined when the task ended and its row is written.
   */
  async step(state: TaskState): Promise<TaskState | undefined> {
    const out = await this.#runner.step(state, undefined);
    return out.to === "end" ? undefined : out.state;
  }

  /** End a task as failed (its row is written), whatever step it was at. */
  fail(state: TaskState, reason: string): Promise<void> {
    return this.#runner.fail(state, undefined, reason);
  }

  /** Flush the output, close the LLM client and the environments, and print the report line. */
  async finish(): Promise<BaselineReport> {
    await this.close();
    const report: BaselineReport = {
      rows: this.rows,
      ok: this.ok,
      failed: this.failed,
      steps: this.steps,
      seconds: (performance.now() - this.startedAt) / 1000,
    };
    console.log(JSON.stringify(report));
    return report;
  }

  /** Flush the output, close the LLM client and release every environment. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    openRuns.delete(this);
    this.sink.close();
    try {
      await this.llm?.close();
    } finally {
      await this.envs?.close();
    }
  }

  #write(row: OutputRow): void {
    this.sink.write(row);
    this.rows++;
    if (row.status === "ok") this.ok++;
    else this.failed++;
  }
}

/** Run a baseline's main, exiting 1 with the reason on failure. */
export function runBaseline(main: (spec: BaselineSpec) => Promise<void>): void {
  let spec: BaselineSpec;
  try {
    spec = readSpec(process.argv.slice(2));
  } catch (err) {
    console.error(`baseline: ${describe(err)}`);
    process.exit(2);
  }
  main(spec).then(
    () => process.exit(0),
    async (err) => {
      console.error(`baseline: ${describe(err)}`);
      // Environments are released even when the run fails.
      await Promise.allSettled([...openRuns].map((r) => r.close()));
      process.exit(1);
    },
  );
}
