import type { TaskState } from "../protocol/task.ts";

/**
 * A task's hold on the bus while a node works on it. In the cluster it is the
 * un-acknowledged message that brought the task; in-process it is nothing.
 */
export interface Lease {
  /** keep the hold alive while a long step runs */
  touch(): void;
  /** the task is finished and its row is stored: let go of the hold */
  done(): Promise<void>;
}

/** Runs one step of a task that arrived for a hosted role. */
export type TaskHandler = (state: TaskState, lease: Lease) => Promise<void>;

/** Slots of one role on this node. */
export interface RoleLoad {
  slots: number;
  busy: number;
  queued: number;
}

/**
 * Carries task states between roles. The engine only speaks to this; the
 * in-process bus and the NATS bus both implement it.
 */
export interface Bus {
  readonly kind: string;
  /** Take tasks for a role (its `roleKey`) on this node, running at most `slots` handlers at once. */
  host(key: string, slots: number, handler: TaskHandler): void;
  /**
   * Hand a task to the role named in `state.next`: this node when it has a
   * free slot, else a peer. `lease` is the hold the task came with (none for
   * a new task); the bus lets go of it once the task is safely handed on.
   */
  send(state: TaskState, lease?: Lease): Promise<void>;
  /** Load of every role hosted here. */
  load(): Record<string, RoleLoad>;
  /** Stop taking tasks; resolves when nothing more will be delivered. */
  close(): Promise<void>;
}

/** A lease that holds nothing. */
export const noLease: Lease = {
  touch() {},
  done: () => Promise.resolve(),
};

/** The address of a role on the bus: `workflow.role`. */
export function roleKey(workflow: string, role: string): string {
  return `${workflow}.${role}`;
}
