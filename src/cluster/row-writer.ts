import { describe } from "../errors.ts";
import type { Logger } from "../log.ts";
import type { OutputRow } from "../protocol/task.ts";
import type { ResultStore } from "../store/index.ts";
import { retry } from "../util/retry.ts";
import type { NodeCounters } from "./counters.ts";
import type { NodeWorkflows } from "./workflows.ts";

export interface RowWriterOptions {
  results: ResultStore;
  counters: NodeCounters;
  workflows: NodeWorkflows;
  log: Logger;
  /** whether the node is leaving: then a row that cannot be stored is not tried again */
  leaving: () => boolean;
  /** the job's retry round now (0 before its failed tasks ever ran again) */
  round: (job: string) => number;
}

/**
 * Stores the rows of the tasks this node finishes: once, trying again while
 * NATS is away, and counted when this node stored the row first (another
 * node may have stored it before, for a task delivered twice), or stored
 * it over the failed row its task had before it ran again.
 */
export class RowWriter {
  constructor(private readonly o: RowWriterOptions) {}

  /** Store a row; rejects only when the node is leaving and the store failed. */
  async store(row: OutputRow): Promise<void> {
    const round = this.o.round(row.job);
    const { outcome, row: stored } = await retry(() => this.o.results.store(row, round), {
      baseMs: 100,
      maxMs: 2000,
      giveUp: this.o.leaving,
      onRetry: (err, attempt) => {
        if (attempt % 10 === 1) this.o.log.warn({ task: row.id, attempt, err: describe(err) }, "cannot store a row, trying again");
      },
    });
    if (outcome !== "duplicate") {
      // This node ran the task, so a workflow the job carries is compiled here.
      this.o.counters.add(stored, this.o.workflows.find(row.workflow)?.metrics ?? [], round);
    }
  }
}
