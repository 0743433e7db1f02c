import { TaskError } from "../errors.ts";
import type { TaskState } from "../protocol/task.ts";
import { type Bus, type Lease, type RoleLoad, roleKey, type StepLatency, type TaskHandler } from "./bus.ts";

interface Hosted {
  slots: number;
  busy: number;
  handler: TaskHandler;
  queue: TaskState[];
  head: number;
}

/**
 * The in-process bus: a FIFO queue per role and a slot count. States are
 * passed by reference (no serialization); the number of queued states is
 * bounded by admission, not here.
 */
export class LocalBus implements Bus {
  #roles = new Map<string, Hosted>();
  #closed = false;
  /** Every task's lease: it holds nothing, and hands the task on through this bus. */
  readonly #lease: Lease = {
    send: (state) => this.send(state),
    done: () => Promise.resolve(),
  };

  /** `steps`: the roles' step latency, for their load */
  constructor(private readonly steps?: StepLatency) {}

  host(key: string, slots: number, handler: TaskHandler): void {
    if (slots < 1) throw new RangeError(`role "${key}" needs at least one slot`);
    this.#roles.set(key, { slots, busy: 0, handler, queue: [], head: 0 });
  }

  send(state: TaskState): Promise<void> {
    const hosted = state.next === null ? undefined : this.#roles.get(roleKey(state.workflow, state.next));
    if (!hosted) return Promise.reject(new TaskError(`no node hosts role "${state.next}" of workflow "${state.workflow}"`));
    if (this.#closed) return Promise.reject(new TaskError("bus is closed"));
    hosted.queue.push(state);
    this.#pump(hosted);
    return Promise.resolve();
  }

  #pump(h: Hosted): void {
    while (h.busy < h.slots && h.head < h.queue.length) {
      const state = h.queue[h.head] as TaskState;
      h.queue[h.head++] = undefined as unknown as TaskState;
      if (h.head > 1024 && h.head * 2 > h.queue.length) {
        h.queue = h.queue.slice(h.head);
        h.head = 0;
      }
      h.busy++;
      h.handler(state, this.#lease).then(
        () => this.#release(h),
        () => this.#release(h),
      );
    }
  }

  #release(h: Hosted): void {
    h.busy--;
    this.#pump(h);
  }

  load(): Record<string, RoleLoad> {
    const out: Record<string, RoleLoad> = {};
    for (const [role, h] of this.#roles) {
      out[role] = { slots: h.slots, busy: h.busy, queued: h.queue.length - h.head, ...this.steps?.latency(role) };
    }
    return out;
  }

  async close(): Promise<void> {
    this.#closed = true;
  }
}
