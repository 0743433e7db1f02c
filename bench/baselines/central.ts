/**
 * Baseline "central": one process drives every task as a coroutine, under
 * one global limit on tasks in flight (the way the official Coral and tau2
 * runners work). Setting: `concurrency`.
 */
import type { TaskState } from "../../src/protocol/task.ts";
import { Semaphore } from "../../src/util/wait.ts";
import { BaselineRun, runBaseline, setting } from "./common.ts";

runBaseline(async (spec) => {
  const run = await BaselineRun.open(spec, "central");
  const limit = new Semaphore(setting(spec, "concurrency"));
  const running = new Set<Promise<void>>();
  for await (const seed of run.tasks()) {
    await limit.acquire();
    const first = run.start(seed);
    if (!first) {
      limit.release();
      continue;
    }
    const task = (async () => {
      let state: TaskState | undefined = first;
      while (state) state = await run.step(state);
    })().finally(() => {
      running.delete(task);
      limit.release();
    });
    running.add(task);
  }
  await Promise.all(running);
  await run.finish();
});
