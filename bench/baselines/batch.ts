/**
 * Baseline "batch-level": the seeds in batches of `batch`; each stage runs
 * one step of every live task of the batch and waits for the slowest before
 * the batch moves on, with `inflight` batches at once (Ray Data's
 * `map_batches` pattern). For coral a stage is one dialogue step (teacher,
 * extractor, matcher, student, ...) of every task still talking.
 * Settings: `batch`, `inflight`.
 *
 * With environments (tool-use) every task of a batch holds one from its first
 * step to its end, and a batch moves on only when all its tasks have taken
 * their step, so `batch` x `inflight` must not exceed the environment
 * capacity: a batch short of environments would wait forever.
 */
import type { TaskSeed } from "../../src/engine/tasks.ts";
import type { TaskState } from "../../src/protocol/task.ts";
import { BaselineRun, runBaseline, setting } from "./common.ts";

runBaseline(async (spec) => {
  const run = await BaselineRun.open(spec, "batch");
  const size = setting(spec, "batch");
  const inflight = setting(spec, "inflight");
  if (run.envs && size * inflight > run.envs.capacity) {
    throw new Error(`batch ${size} x inflight ${inflight} is more than the ${run.envs.capacity} environments: batches would wait on each other forever`);
  }
  const source = run.tasks();

  /** The next batch of seeds, or an empty one at the end. */
  let reading: Promise<unknown> = Promise.resolve();
  const nextBatch = async (): Promise<TaskSeed[]> => {
    // One reader at a time: batches take seeds in order.
    const prev = reading;
    let release!: () => void;
    reading = new Promise<void>((r) => {
      release = r;
    });
    await prev;
    try {
      const batch: TaskSeed[] = [];
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
      let live = stillRunning(batch.map((s) => run.start(s)));
      while (live.length > 0) live = stillRunning(await Promise.all(live.map((s) => run.step(s))));
    }
  };
  await Promise.all(Array.from({ length: inflight }, lane));
  await run.finish();
});

/** The tasks that go on (the others ended with their row). */
function stillRunning(states: (TaskState | undefined)[]): TaskState[] {
  return states.filter((s): s is TaskState => s !== undefined);
}
