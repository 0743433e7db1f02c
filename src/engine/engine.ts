import { type Bus, type Lease, roleKey } from "../bus/bus.ts";
import { describe } from "../errors.ts";
import type { AnyWorkflow } from "../plugin/api.ts";
import type { TaskState } from "../protocol/task.ts";
import type { JobRuntime } from "./job.ts";
import type { Logger } from "../log.ts";
import { newTaskState, TaskRunner, type TaskRunnerOptions, type TaskStats } from "./tasks.ts";

export { MAX_RESTARTS, RESTART_KEY } from "./tasks.ts";

/** Counters a node keeps about the steps it ran. */
export type EngineStats = TaskStats;

export interface EngineOptions extends TaskRunnerOptions {
  bus: Bus;
}

/**
 * Runs steps of tasks that arrive on the bus for the roles this node hosts,
 * and hands each task on to its next role or, when done, to `finish`.
 */
export class Engine {
  readonly #bus: Bus;
  readonly #runner: TaskRunner;

  readonly #log: Logger;

  constructor(opts: EngineOptions) {
    this.#bus = opts.bus;
    this.#log = opts.log;
    this.#runner = new TaskRunner(opts);
  }

  get stats(): EngineStats {
    return this.#runner.stats;
  }

  /** Host every role of a workflow with the given slots per role. */
  hostWorkflow(workflow: AnyWorkflow, slots: (role: string) => number): void {
    for (const role of Object.keys(workflow.roles)) {
      this.#bus.host(roleKey(workflow.name, role), slots(role), (state, lease) => this.#step(state, lease));
    }
  }

  /** A new task's state, before its first step. */
  static newTask(job: JobRuntime, id: string, trial: number, seed: Record<string, unknown>): TaskState {
    return newTaskState(job, id, trial, seed);
  }

  /** Start a task: send it to its first role. A task that cannot start ends as a failed row. */
  begin(state: TaskState, lease?: Lease): Promise<void> {
    return this.#send(state, lease, true);
  }

  /** Abort the steps running now (shutdown). Their tasks get no row; they stay with the bus. */
  abort(): void {
    this.#runner.abort();
  }

  get aborted(): boolean {
    return this.#runner.aborted;
  }

  async #step(state: TaskState, lease: Lease): Promise<void> {
    let out: Awaited<ReturnType<TaskRunner["step"]>>;
    try {
      out = await this.#runner.step(state, lease);
    } catch (err) {
      // whatever throws, the task reaches a row (or stays with its lease, to come back)
      const why = `role "${String(state.next)}": ${describe(err)}`;
      await this.#runner.fail(state, lease, why).catch((e: unknown) => this.#log.error({ task: state.id, err: describe(e), why }, "cannot fail a task"));
      return;
    }
    if (out.to !== "end") await this.#send(out.state, lease, out.to === "next");
  }

  /** Hand a task on; one the bus cannot take ends as a failed row. */
  async #send(state: TaskState, lease: Lease | undefined, hop: boolean): Promise<void> {
    try {
      if (hop) this.#runner.stats.hops++;
      await (lease ?? this.#bus).send(state);
    } catch (err) {
      await this.#runner.fail(state, lease, describe(err)).catch((e: unknown) => this.#log.error({ task: state.id, err: describe(e) }, "cannot fail a task"));
    }
  }
}
