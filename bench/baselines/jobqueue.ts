/**
 * Baseline "job queue": each hop is a job on BullMQ over a real Redis server,
 * what a TypeScript team would build instead of matrixd. Every seed is
 * enqueued up front as its task's first job; a worker runs one step per job
 * and enqueues the task's next hop (the whole state as the job's data) or
 * writes its row. Setting: `concurrency` (the worker's concurrent jobs).
 * The Redis URL comes in `extra.redis`.
 *
 * With environments (tool-use) a task holds one from its first hop to its
 * row, so seeds go into the queue only while an environment is free (the way
 * matrixd's cluster admits such jobs): enqueued all at once, their first hops
 * would take every worker, each waiting for an environment, while the next
 * hops of the tasks holding them wait in the queue behind.
 */
import { type Job, Queue, Worker } from "bullmq";
import { TaskStateSchema } from "../../src/protocol/task.ts";
import { Semaphore } from "../../src/util/wait.ts";
import { BaselineRun, runBaseline, setting } from "./common.ts";

const QUEUE = "hops";
const ADD_CHUNK = 1000;

runBaseline(async (spec) => {
  const run = await BaselineRun.open(spec, "jobqueue");
  const url = new URL(spec.extra.redis ?? "redis://127.0.0.1:6379");
  const connection = { host: url.hostname, port: Number(url.port), maxRetriesPerRequest: null };
  const queue = new Queue(QUEUE, { connection, defaultJobOptions: { removeOnComplete: true, removeOnFail: true } });
  await queue.obliterate({ force: true });

  let total = 0;
  let finished: () => void = () => {};
  const allDone = new Promise<void>((resolve) => {
    finished = resolve;
  });
  let enqueued = false;
  const gate = run.envs ? new Semaphore(run.envs.capacity) : undefined;
  const checkDone = () => {
    if (enqueued && run.rows >= total) finished();
  };

  const worker = new Worker(
    QUEUE,
    async (job: Job) => {
      // The state crossed Redis as JSON: validate it where it enters, as a node would.
      const state = TaskStateSchema.parse(job.data);
      const next = await run.step(state);
      let goesOn = next !== undefined;
      if (next) {
        try {
          await queue.add(next.next as string, next);
        } catch (err) {
          // A hop that cannot be enqueued still ends its task with a row.
          goesOn = false;
          await run.fail(next, `enqueue: ${err instanceof Error ? err.message : String(err)}`);
        }
      }
      if (!goesOn) {
        gate?.release();
        checkDone();
      }
    },
    { connection, concurrency: setting(spec, "concurrency") },
  );
  worker.on("failed", (job, err) => console.error(`job ${job?.id}: ${err.message}`));

  let chunk: { name: string; data: unknown }[] = [];
  const flush = async () => {
    if (chunk.length === 0) return;
    await queue.addBulk(chunk);
    chunk = [];
  };
  for await (const seed of run.tasks()) {
    if (gate) {
      await gate.acquire();
      const state = run.start(seed);
      if (!state) {
        gate.release();
        continue;
      }
      await queue.add(state.next as string, state);
      total++;
      continue;
    }
    const state = run.start(seed);
    if (!state) continue;
    chunk.push({ name: state.next as string, data: state });
    total++;
    if (chunk.length >= ADD_CHUNK) await flush();
  }
  await flush();
  // Tasks that never started wrote their rows already; count them in.
  total += run.seedErrors;
  enqueued = true;
  checkDone();
  await allDone;
  await worker.close();
  await queue.close();
  await run.finish();
});
