import { describe, TaskError } from "../../errors.ts";
import { retry } from "../../util/retry.ts";
import type { Logger } from "../../log.ts";
import { encode } from "../../protocol/codec.ts";
import type { TaskState } from "../../protocol/task.ts";
import type { NatsLink } from "../../store/connection.ts";
import type { PartStore } from "../../store/parts.ts";
import { isPayloadTooLarge } from "../../store/errors.ts";
import { hopMsgId, Subjects } from "../../store/names.ts";
import { ensureStreams, PUBLISH_TIMEOUT_MS } from "../../store/setup.ts";
import type { TaskEnvelope, SeedRef } from "./wire.ts";


/** How a hand-off ended. */
export type HandOff = "stored" | "duplicate" | "abandoned";

/**
 * Store a task state in its next role's stream. Its message id (job, task,
 * steps, retries) makes a second store of the same state a duplicate the
 * server drops, so a task run twice hands on once. Tried again while NATS is
 * away, until `stop()` says to give up ("abandoned": the caller's hold stays
 * and its message comes back). With `parts`, the large texts of a large
 * state are kept in the object store first and the message refers to them
 * (see PartStore). A state too large for one message even so is a
 * TaskError: the task fails with that reason.
 */
export async function handOff(
  link: NatsLink,
  state: TaskState,
  seed: SeedRef | undefined,
  opts: { log: Logger; stop: () => boolean; onRetry?: () => void; once?: boolean; replicas?: number; parts?: PartStore },
): Promise<HandOff> {
  const limit = link.maxPayload() - 1024;
  const envelope = (s: TaskState, parts: TaskEnvelope["parts"]): Uint8Array => {
    const env: TaskEnvelope = { v: 1, state: s, sent: Date.now() };
    if (seed) env.seed = seed;
    if (parts && parts.length > 0) env.parts = parts;
    return encode(env);
  };
  let data = envelope(state, undefined);
  const parts = opts.parts;
  // A small state goes as it is: no object store on its way.
  if (parts?.enabled && (data.length >= parts.offloadBytes || data.length > limit)) {
    try {
      data = (
        await retry(() => parts.encodeFitting("hop", state.job, state.id, state, envelope, limit), {
          baseMs: 100,
          maxMs: 2000,
          giveUp: () => opts.once === true || opts.stop(),
          onRetry: (err, attempt) => {
            opts.onRetry?.();
            if (attempt % 10 === 1) opts.log.warn({ task: state.id, attempt, err: describe(err) }, "cannot store a task state's large texts, trying again");
          },
        })
      ).data;
    } catch {
      return "abandoned";
    }
  }
  if (data.length > limit) throw new TaskError(`task state of ${data.length} bytes is over the ${limit} bytes NATS takes in one message`);
  const msgID = hopMsgId(state.job, state.id, state.steps, state.attempts);
  const subject = Subjects.task(state.workflow, state.next as string);
  try {
    const ack = await retry(() => link.unlessDisconnected(link.publish(subject, data, { msgID, timeoutMs: PUBLISH_TIMEOUT_MS })), {
      baseMs: 100,
      maxMs: 2000,
      retryable: (err) => !isPayloadTooLarge(err),
      giveUp: () => opts.once === true || opts.stop(),
      onRetry: async (err, attempt) => {
        opts.onRetry?.();
        if (attempt % 10 === 1) opts.log.warn({ subject, attempt, err: describe(err) }, "cannot hand a task on, trying again");
        // a stream lost with its server is made again
        if (attempt === 4) await ensureStreams(link, opts.replicas).catch(() => undefined);
      },
    });
    return ack.duplicate ? "duplicate" : "stored";
  } catch (err) {
    if (isPayloadTooLarge(err)) throw new TaskError(`task state of ${data.length} bytes is too large for NATS`);
    // given up: asked to stop, or a single try
    if (opts.once) opts.log.warn({ task: state.id, err: describe(err) }, "cannot store a task's progress");
    return "abandoned";
  }
}
