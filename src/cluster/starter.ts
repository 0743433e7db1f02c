import { roleKey } from "../bus/bus.ts";
import type { Hold, SeedHandler } from "../bus/nats/index.ts";
import type { JobRecord, ResultStore, SeedMessage } from "../store/index.ts";
import { Engine } from "../engine/engine.ts";
import type { JobRuntime } from "../engine/job.ts";
import { startTask } from "../engine/tasks.ts";
import { describe } from "../errors.ts";
import type { Logger } from "../log.ts";
import type { OutputRow } from "../protocol/task.ts";
import { isLive, retryRound, type JobTable } from "./jobs.ts";

/** What the starter asks of the bus: a job's seeds, taken for the free slots of the role its tasks start at. */
export interface SeedSource {
  /**
   * Take the job's seeds, through the gate named `gate` if any; undefined
   * when this node cannot (it does not host the role, or is leaving).
   * Returns a function that stops taking them.
   */
  admit(job: string, entryKey: string, onSeed: SeedHandler, opts: { gate?: string }): (() => Promise<void>) | undefined;
}

export interface StarterOptions {
  bus: SeedSource;
  engine: Engine;
  table: JobTable;
  results: ResultStore;
  /** stores a row the way the engine's finish does */
  finish: (row: OutputRow) => Promise<void>;
  log: Logger;
  /**
   * The bus's gate of this node's environments, if it has any: a job whose
   * first role has kind "env" (its first step acquires an environment) is
   * admitted only while one is free. Only the first role: a later role of
   * the task already holds its environment.
   */
  envGate?: string;
  /** a seed delivered again (the node that admitted it died, or gave it back) starts its task here */
  onTakeover?: () => void;
}

/**
 * Starting tasks without a central process: for each live job whose first role
 * this node hosts, take the job's seeds from its durable consumer, only for
 * the slots that role has free here. The consumer's ack limit (the job's
 * concurrency) bounds the job's tasks in flight across the whole cluster; a
 * seed is acked only once its task's row is stored.
 */
export class JobStarter {
  readonly #active = new Map<string, () => Promise<void>>();
  #closed = false;

  constructor(private readonly o: StarterOptions) {}

  /** Start or stop taking a job's seeds as its record says. */
  sync(rec: JobRecord): void {
    if (this.#closed) return;
    const active = this.#active.get(rec.id);
    // A job whose budget is reached admits nothing more (its tasks in flight finish);
    // one whose seeds are still streaming in admits nothing yet (it may still be refused whole).
    if (isLive(rec) && rec.budgetReached === undefined && !(rec.streamed && rec.state === "submitting")) {
      if (active) return;
      const rt = this.o.table.runtime(rec);
      if (!rt) return;
      const gate = rt.workflow.roles[rec.entry]?.kind === "env" ? this.o.envGate : undefined;
      const stop = this.o.bus.admit(rec.id, roleKey(rec.workflow, rec.entry), (seed, hold, again) => this.#onSeed(seed, hold, again), { gate });
      if (stop) {
        this.#active.set(rec.id, stop);
        this.o.log.info({ job: rec.id, entry: rec.entry, gate }, "admitting the job's tasks");
      }
    } else if (active) {
      this.#active.delete(rec.id);
      void active();
    }
  }

  /** Jobs whose seeds this node takes. */
  get jobs(): string[] {
    return [...this.#active.keys()];
  }

  async close(): Promise<void> {
    this.#closed = true;
    const stops = [...this.#active.values()];
    this.#active.clear();
    await Promise.all(stops.map((s) => s()));
  }

  #onSeed(seed: SeedMessage, hold: Hold, again: boolean): void {
    const rec = this.o.table.get(seed.job);
    if (rec?.state === "cancelled") {
      void hold.done();
      return;
    }
    const rt = rec ? this.o.table.runtime(rec) : null;
    if (!rt) {
      hold.giveBack();
      return;
    }
    if (!again) {
      this.#begin(rt, seed, hold);
      return;
    }
    // Delivered before: its node died, maybe after the task got its row.
    const begin = () => {
      this.o.onTakeover?.();
      this.#begin(rt, seed, hold);
    };
    this.o.results.exists(seed.job, seed.id, retryRound(rec ?? undefined)).then((exists) => (exists ? void hold.done() : begin()), begin);
  }

  #begin(rt: JobRuntime, seed: SeedMessage, hold: Hold): void {
    const started = startTask(rt, seed);
    if (started.row) {
      this.o.finish(started.row).then(
        () => hold.done(),
        (e) => this.o.log.warn({ task: seed.id, err: describe(e) }, "cannot store the row of a seed that cannot start"),
      );
      return;
    }
    void this.o.engine.begin(started.state, hold);
  }
}
