import type { RoleLoad } from "../protocol/member.ts";
import type { TaskState } from "../protocol/task.ts";

/**
 * A task's place on the bus while this node works on it. The bus gives one
 * to the step handler with the task; it goes along with the task from step
 * to step on this node, and is how the task leaves: handed on to its next
 * role, or let go once its row is stored. In the cluster it holds the
 * un-acknowledged messages that brought the task (kept alive on a timer
 * while it is held); in-process it holds nothing.
 */
export interface Lease {
  /**
   * Hand the task to the role named in `state.next`: this node when it has
   * a free slot, else a peer. What the lease holds is let go once the task
   * is safely handed on.
   */
  send(state: TaskState): Promise<void>;
  /** The task is finished and its row is stored: let go of what the lease holds. */
  done(): Promise<void>;
  /** Set when the task arrived damaged (a part of its state could not be fetched): its step fails the task with this reason. */
  readonly broken?: string | undefined;
  /**
   * The task's last step is over and its row is being stored: the slot of
   * that step may go to other work meanwhile (storing a row is not the
   * role's work). What the lease holds stays held until `done`.
   */
  finishing?(): void;
}

/** Runs one step of a task that arrived for a hosted role. */
export type TaskHandler = (state: TaskState, lease: Lease) => Promise<void>;

/** Slots of one role on this node (the shape members publish). */
export type { RoleLoad };

/** The recent step latency of hosted roles, as the engine measures it (it goes into their load). */
export interface StepLatency {
  /** p50 and p99 (ms) of a role's (its `roleKey`) steps of the last minute or two; undefined when it ran none */
  latency(key: string): { p50Ms: number; p99Ms: number } | undefined;
}

/**
 * Carries task states between roles. The engine only speaks to this and to
 * the leases it hands out; the in-process bus and the NATS bus both
 * implement it.
 */
export interface Bus {
  /** Take tasks for a role (its `roleKey`) on this node, running at most `slots` handlers at once. */
  host(key: string, slots: number, handler: TaskHandler): void;
  /** Start a task that holds nothing on the bus yet: hand it to the role named in `state.next`, as {@link Lease.send} does. */
  send(state: TaskState): Promise<void>;
  /** Load of every role hosted here. */
  load(): Record<string, RoleLoad>;
  /** Stop taking tasks; resolves when nothing more will be delivered. */
  close(): Promise<void>;
}

/** The address of a role on the bus: `workflow.role`. */
export function roleKey(workflow: string, role: string): string {
  return `${workflow}.${role}`;
}
