/**
 * What every baseline shares with matrixd: the workflow's own roles, the same
 * LLM client, the same seeds, and the engine's step semantics (src/engine/step.ts).
 * Only the scheduling differs from one baseline to the next.
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
import { Engine } from "../../src/engine/engine.ts";
import { type JobRuntime, makeJobRuntime } from "../../src/engine/job.ts";
import { buildRow, seedErrorRow } from "../../src/engine/row.ts";
import { afterStepError, applyStep, nextAfterStep, stepRandom } from "../../src/engine/step.ts";
import { describe } from "../../src/errors.ts";
import { createEnvService, parseEnvConfig } from "../../src/env/index.ts";
import type { EnvService } from "../../src/env/types.ts";
import { createLlmClient, type LlmClient } from "../../src/llm/index.ts";
import { silentLogger } from "../../src/log.ts";
import type { AgentContext, StepResult, TaskLlm } from "../../src/plugin/api.ts";
import { Registry } from "../../src/plugin/registry.ts";
import type { TaskState } from "../../src/protocol/task.ts";
import { parseSeedLine } from "../../src/seeds/seeds.ts";
import { JsonlSink } from "../../src/sink/jsonl.ts";
import { fileLines } from "../../src/util/lines.ts";

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

/** One baseline run: the job, the LLM client, the environments, the output, and the way to run a task's step. */
export class BaselineRun {
  readonly job: JobRuntime;
  readonly llm: LlmClient | undefined;
  /** the environment service, when the spec asks for one */
  envs: EnvService | undefined;
  readonly sink: JsonlSink;
  readonly node: string;
  #services: Record<string, unknown> = {};
  #closed = false;
  rows = 0;
  ok = 0;
  failed = 0;
  steps = 0;
  /** seed lines that were not tasks (their failed rows are written) */
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
      run.#services = { env: run.envs };
    }
    return run;
  }

  /**
   * The seeds as new task states, streamed. Bad seed lines get their failed
   * row at once, as `matrixd run` does.
   */
  async *tasks(): AsyncGenerator<TaskState> {
    const wf = this.job.workflow;
    const trials = this.spec.trials;
    let lineNo = 0;
    for await (const text of fileLines(this.spec.seeds)) {
      lineNo++;
      const parsed = parseSeedLine(text, lineNo, wf.seedSchema);
      if (!parsed) continue;
      for (let trial = 0; trial < trials; trial++) {
        const id = trials > 1 ? `${parsed.id}#${trial}` : parsed.id;
        if (!parsed.ok) {
          this.seedErrors++;
          this.#write(seedErrorRow(id, parsed.seed, parsed.error, { id: this.job.id, workflow: wf.name, configHash: this.job.configHash }, trial));
          continue;
        }
        yield Engine.newTask(this.job, id, trial, trials > 1 ? structuredClone(parsed.seed) : parsed.seed);
      }
    }
  }

  /** A fresh state for a task about to start (its admission time is now). */
  admit(state: TaskState): TaskState {
    const now = Date.now();
    state.timings.admitted = now;
    state.timings.updated = now;
    return state;
  }

  /**
   * Run the task's next step with the engine's semantics. Returns true when
   * the task goes on (state.next is its next role), false when it ended and
   * its row is written.
   */
  async step(state: TaskState): Promise<boolean> {
    const job = this.job;
    const roleName = state.next as string;
    const role = job.workflow.roles[roleName];
    if (!role) return this.#end(state, `workflow "${job.workflow.name}" has no role "${roleName}"`);
    const at = Date.now();
    let result: StepResult;
    try {
      result = await role.run(state, this.#context(state));
    } catch (err) {
      const outcome = afterStepError(state, job, roleName, err);
      return "retry" in outcome ? true : this.#end(state, outcome.fail);
    }
    this.steps++;
    applyStep(state, roleName, result, at, this.node);
    const after = nextAfterStep(state, job, roleName, result);
    if (after.fail !== undefined) return this.#end(state, after.fail);
    state.next = after.next;
    if (after.next === null) return this.#end(state, undefined);
    return true;
  }

  /** End a task as failed (its row is written), whatever step it was at. */
  async fail(state: TaskState, reason: string): Promise<void> {
    await this.#end(state, reason);
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

  #context(state: TaskState): AgentContext {
    const llm = this.llm;
    const taskLlm: TaskLlm = {
      chat: (req) => (llm ? llm.chat(req, { affinity: state.id }) : Promise.reject(new Error("no LLM endpoint"))),
    };
    return {
      llm: taskLlm,
      log: silentLogger,
      signal: new AbortController().signal,
      config: this.job.config,
      random: stepRandom(this.job, state),
      node: this.node,
      services: this.#services,
    };
  }

  async #end(state: TaskState, error: string | undefined): Promise<false> {
    if (error !== undefined) state.error = error;
    state.next = null;
    const wf = this.job.workflow;
    if (wf.cleanup) {
      try {
        await wf.cleanup(state, this.#context(state));
      } catch (err) {
        console.error(`task ${state.id}: cleanup failed: ${describe(err)}`);
      }
    }
    this.#write(buildRow(state, this.job));
    return false;
  }

  #write(row: ReturnType<typeof buildRow>): void {
    this.sink.write(row);
    this.rows++;
    if (row.status === "ok") this.ok++;
    else this.failed++;
  }
}

/** A counting semaphore, FIFO. */
export class Limit {
  #free: number;
  #waiters: (() => void)[] = [];
  #head = 0;
  constructor(n: number) {
    this.#free = n;
  }
  async take(): Promise<void> {
    if (this.#free > 0) {
      this.#free--;
      return;
    }
    await new Promise<void>((resolve) => this.#waiters.push(resolve));
  }
  give(): void {
    if (this.#head < this.#waiters.length) {
      const w = this.#waiters[this.#head++] as () => void;
      if (this.#head > 1024) {
        this.#waiters = this.#waiters.slice(this.#head);
        this.#head = 0;
      }
      w();
    } else this.#free++;
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
