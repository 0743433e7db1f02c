import type { TaskState } from "../../protocol/task.ts";
import type { TaskHandler } from "../bus.ts";
import type { Hold } from "./holds.ts";
import type { Puller, SlotPool } from "./puller.ts";

/**
 * Slots several roles share: the LLM-bound roles of a node all wait on the
 * same LLM services, so together they hold at most what those services can
 * run (not that much per role).
 */
export class SlotGroup {
  busy = 0;
  reserved = 0;
  constructor(
    readonly name: string,
    public slots: number,
  ) {}

  free(): number {
    return this.slots - this.busy - this.reserved;
  }
}

/**
 * Something the first step of a role's tasks takes and holds for the rest of
 * the task (an environment): admission takes seeds for those roles only while
 * some is free. What is claimed but not yet taken counts against it: seeds
 * promised to pull requests, and the roles' steps running or waiting (a
 * step that already took its share is counted twice until it ends, so the
 * gate errs on the side of admitting less).
 */
export class ShareGate {
  /** roles whose steps take a share */
  readonly roles = new Set<RoleSlots>();
  /** shares promised to seed pull requests */
  reserved = 0;
  constructor(
    readonly name: string,
    /** shares free at the source (e.g. capacity minus environments alive) */
    public available: () => number,
  ) {}

  free(): number {
    let claimed = this.reserved;
    for (const r of this.roles) claimed += r.busy + r.overflow.length;
    return this.available() - claimed;
  }

  /** Shares were given back at the source: let the roles' pullers ask again. */
  wake(): void {
    for (const r of this.roles) r.wake();
  }
}

/** A seed puller's slots: its entry role's, and no more than its gate has free. */
export class GatedSlots implements SlotPool {
  constructor(
    readonly role: RoleSlots,
    readonly gate: ShareGate,
  ) {}

  free(): number {
    return Math.min(this.role.free(), this.gate.free());
  }

  reserve(n: number, light = false): void {
    this.role.reserve(n, light);
    this.gate.reserved += n;
  }

  release(n: number, light = false): void {
    this.role.release(n, light);
    this.gate.reserved -= n;
  }

  settled(): void {
    this.role.settled();
  }
}

/** A task waiting on this node for a slot of its role. */
export interface Waiting {
  state: TaskState;
  hold: Hold;
}

/**
 * The slots of one role on this node: its own count, and the group's it
 * belongs to, if any. A pull request reserves slots; a step running holds
 * one. A task hopping between two roles of one group keeps its group slot.
 */
export class RoleSlots implements SlotPool {
  busy = 0;
  reserved = 0;
  group: SlotGroup | undefined;
  pullers: Puller[] = [];
  /** tasks that came with no slot promised to them (late answers to pull requests) */
  readonly overflow: Waiting[] = [];
  readonly workflow: string;
  readonly role: string;

  constructor(
    readonly key: string,
    public slots: number,
    readonly handler: TaskHandler,
    private readonly closed: () => boolean,
    /** slots were taken back from a pull request: start what waits for them */
    private readonly onSettled: () => void = () => {},
  ) {
    const dot = key.indexOf(".");
    this.workflow = key.slice(0, dot);
    this.role = key.slice(dot + 1);
  }

  /** Slots neither running nor promised, counting the group's. */
  free(): number {
    if (this.closed()) return 0;
    const own = this.slots - this.busy - this.reserved - this.overflow.length;
    return this.group ? Math.min(own, this.group.free()) : own;
  }

  /**
   * Promise `n` slots to a pull request. A `light` promise (an idle
   * request's single slot) holds one of the role's own slots but none of
   * its group's: a node hosting more LLM-bound roles than its LLM runs
   * sequences would otherwise have every group slot promised to idle
   * requests, and no seed would ever be asked for. What a light request
   * brings starts when the group has room, else waits here for it.
   */
  reserve(n: number, light = false): void {
    this.reserved += n;
    if (this.group && !light) this.group.reserved += n;
  }

  release(n: number, light = false): void {
    this.reserved -= n;
    if (this.group && !light) this.group.reserved -= n;
  }

  settled(): void {
    this.onSettled();
  }

  /** Whether a step may start now; `keepsGroupSlot` when the task brings a slot of this role's group. */
  hasRoom(keepsGroupSlot = false): boolean {
    if (this.busy + this.reserved + this.overflow.length >= this.slots) return false;
    return !this.group || keepsGroupSlot || this.group.free() > 0;
  }

  /**
   * Whether the first of the tasks queued here may start now. The queue is
   * not counted against it, as it is for newcomers: with as many queued as
   * there are slots (the slots just shrank) nothing would ever start.
   */
  hasRoomForQueued(): boolean {
    if (this.busy + this.reserved >= this.slots) return false;
    return !this.group || this.group.free() > 0;
  }

  /** A step starts: it holds a slot (and a group slot unless it brought one). */
  take(keepsGroupSlot: boolean): void {
    this.busy++;
    if (this.group && !keepsGroupSlot) this.group.busy++;
  }

  /** A step ended; `groupSlot` when it still held its group slot (it did not pass it on). */
  give(groupSlot: boolean): void {
    this.busy--;
    if (this.group && groupSlot) this.group.busy--;
  }

  wake(): void {
    for (const p of this.pullers) p.wake();
  }
}

/** A pool that has nothing free while `paused` says so (what it reserved is kept as it was). */
export function pausable(pool: SlotPool, paused: (() => boolean) | undefined): SlotPool {
  if (!paused) return pool;
  return {
    free: () => (paused() ? 0 : pool.free()),
    reserve: (n, light) => pool.reserve(n, light),
    release: (n, light) => pool.release(n, light),
    settled: () => pool.settled?.(),
  };
}
