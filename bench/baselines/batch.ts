/**
 * Baseline "batch-level": the seeds in batches of `batch`; each stage runs
 * one step of every live task of the batch and waits for the slowest before
 * the batch moves on, with `inflight` batches at once (Ray Data's
 * `map_batches` pattern). For coral a stage is one dialogue step (teacher,
 * extractor, matcher, student, ...) of every task still talking.
 * Settings: `batch`, `inflight`.
 */
import type { TaskState } from "../../src/protocol/task.ts";
import { BaselineRun, runBaseline, setting } from "./common.ts";

runBaseline(async (spec) => {
  const run = new BaselineRun(spec, "batch");
  const size = setting(spec, "batch");
  const inflight = setting(spec, "inflight");
  const source = run.tasks();

  /** The next batch of seeds, or an empty one at the end. */
  let reading: Promise<unknown> = Promise.resolve();
  const nextBatch = async (): Promise<TaskState[]> => {
    // One reader at a time: batches take seeds in order.
    const prev = reading;
    let release!: () => void;
    reading = new Promise<void>((r) => {
      release = r;
    });
    await prev;
    try {
      const batch: TaskState[] = [];
      while (batch.length < size) {
        const n = await source.next();
        if (n.done) break;
        batch.push(n.value);
      }
      return batch;
    } finally {
      release();
    }
  };

  const lane = async (): Promise<void> => {
    for (;;) {
      const batch = await nextBatch();
      if (batch.length === 0) return;
      let live = batch.map((s) => run.admit(s));
      while (live.length > 0) {
        const goesOn = await Promise.all(live.map((s) => run.step(s)));
        live = live.filter((_, i) => goesOn[i]);
      }
    }
  };
  await Promise.all(Array.from({ length: inflight }, lane));
  await run.finish();
});
