import type { Msg, Subscription } from "@nats-io/transport-node";
import { CodecError, describe, TaskError } from "../../errors.ts";
import { retry } from "../../util/retry.ts";
import { sleep } from "../../util/wait.ts";
import { handOff } from "./handoff.ts";
import type { Logger } from "../../log.ts";
import { decodeWith } from "../../protocol/codec.ts";
import type { TaskState } from "../../protocol/task.ts";
import { type Bus, type RoleLoad, roleKey, type StepLatency, type TaskHandler } from "../bus.ts";
import type { NatsLink } from "../../store/connection.ts";
import { PartMissingError, type PartStore } from "../../store/parts.ts";
import { Hold, type HoldSend, Keeper, parseAckSubject } from "./holds.ts";
import { hopMsgId, roleConsumer, seedConsumer, Streams, Subjects } from "../../store/names.ts";
import { Puller } from "./puller.ts";
import { type ClusterTimings, ensureConsumer, ensureStreams, roleConsumerConfig } from "../../store/setup.ts";
import { ShareGate, GatedSlots, pausable, RoleSlots, SlotGroup, type Waiting } from "./slots.ts";
import { type NatsBusStats, newBusStats } from "./stats.ts";
import { type SeedMessage, SeedMessageSchema } from "../../store/records.ts";
import { DoneNoticeSchema, type TaskEnvelope, TaskEnvelopeSchema } from "./wire.ts";

export interface NatsBusOptions {
  link: NatsLink;
  node: string;
  log: Logger;
  timings: ClusterTimings;
  /** copies of a stream created again when it is gone (nats.replicas; default 1) */
  replicas?: number;
  /** run a hop on this node when it has a free slot (default true; false sends every hop through NATS) */
  localFirst?: boolean;
  /** whether a task already has its row (asked for tasks delivered again) */
  rowExists(job: string, id: string): Promise<boolean>;
  /** a task delivered again (its node died, or gave it back) goes on here */
  onTakeover?: () => void;
  /** the roles' step latency, for their load */
  stepLatency?: StepLatency;
  /** where the large texts of task states are kept (none: every state travels whole) */
  parts?: PartStore;
  /**
   * while true, no seed is taken (the tasks already here go on, and other
   * nodes take the seeds): e.g. while this node's LLM requests wait for an
   * endpoint to come back. Looked at before each pull request, and every
   * second while it holds.
   */
  admissionPaused?: () => boolean;
}

/** Called with each seed taken for a job; `again` when the server delivered it before. */
export type SeedHandler = (seed: SeedMessage, hold: Hold, again: boolean) => void;

interface Run extends Waiting {
  role: RoleSlots;
  /** whether the step still holds a slot of its role's group (a hop within the group passes it on) */
  groupSlot: boolean;
}


/**
 * The bus over NATS JetStream. A hop runs on this node when the next role
 * has a free slot here (the task keeps the hold it came with, nothing is
 * serialized); otherwise the state is stored in the role's work-queue
 * stream, and only then is the old hold let go. Every node pulls a role's
 * messages only for slots it has free.
 */
export class NatsBusImpl implements Bus {
  readonly stats: NatsBusStats = newBusStats();
  readonly keeper: Keeper;
  readonly #o: NatsBusOptions;
  readonly #log: Logger;
  readonly #roles = new Map<string, RoleSlots>();
  readonly #groups = new Map<string, SlotGroup>();
  readonly #gates = new Map<string, ShareGate>();
  readonly #runs = new Map<number, Run>();
  readonly #stranded: Waiting[] = [];
  readonly #localFirst: boolean;
  #runSeq = 0;
  #draining = false;
  #closed = false;
  #doneSub: Subscription | undefined;
  #garbageLogged = 0;
  /** What every hold of this bus hands its task on with. */
  readonly #hop: HoldSend = (state, hold) => this.#send(state, hold);

  constructor(opts: NatsBusOptions) {
    this.#o = opts;
    this.#log = opts.log;
    this.#localFirst = opts.localFirst ?? true;
    this.keeper = new Keeper(opts.link, opts.node, opts.log, opts.timings.ackWaitMs, opts.rowExists);
    this.keeper.start();
    this.#doneSub = opts.link.nc.subscribe(Subjects.done(opts.node), { callback: (_e, m) => this.#onDone(m) });
  }

  get draining(): boolean {
    return this.#draining;
  }

  host(key: string, slots: number, handler: TaskHandler): void {
    if (slots < 1) throw new RangeError(`role "${key}" needs at least one slot`);
    const role = new RoleSlots(
      key,
      slots,
      handler,
      () => this.#draining,
      () => this.#pumpAll(role),
    );
    this.#roles.set(key, role);
    void this.#startRolePuller(role);
  }

  /**
   * Make roles share `slots` (created, or resized when it exists): the
   * LLM-bound roles of a node, sized to what its LLM services can run.
   */
  shareSlots(group: string, slots: number, keys: readonly string[]): void {
    let g = this.#groups.get(group);
    if (!g) {
      g = new SlotGroup(group, Math.max(1, slots));
      this.#groups.set(group, g);
    } else g.slots = Math.max(1, slots);
    for (const key of keys) {
      const role = this.#roles.get(key);
      if (role && !role.group && role.busy === 0 && role.reserved === 0) role.group = g;
    }
    for (const role of this.#roles.values()) if (role.group === g) this.#pump(role);
  }

  async #startRolePuller(role: RoleSlots): Promise<void> {
    const link = this.#o.link;
    const name = roleConsumer(role.workflow, role.role);
    const cfg = roleConsumerConfig(name, Subjects.task(role.workflow, role.role), this.#o.timings);
    if (this.#draining) return;
    try {
      await retry(() => ensureConsumer(link, Streams.tasks, cfg), {
        baseMs: 500,
        maxMs: 5000,
        giveUp: () => this.#draining,
        onRetry: (err) => this.#log.warn({ role: role.key, err: describe(err) }, "cannot set up the role's consumer, trying again"),
      });
    } catch {
      return; // draining: the role takes no tasks any more
    }
    if (this.#draining) return;
    const puller = new Puller({
      link,
      stream: Streams.tasks,
      consumer: name,
      pool: role,
      log: this.#log,
      onMessage: (msg, ack, reserved) => this.#onTask(role, msg, ack, reserved),
      onSilence: async () => {
        await ensureStreams(link, this.#o.replicas);
        await ensureConsumer(link, Streams.tasks, cfg);
      },
    });
    role.pullers.push(puller);
    puller.start();
  }

  /** Change a role's slots (the slots of LLM-bound roles follow the LLM services' capacity). */
  resize(key: string, slots: number): void {
    const role = this.#roles.get(key);
    if (!role || slots < 1 || role.slots === slots) return;
    role.slots = slots;
    this.#pump(role);
  }

  load(): Record<string, RoleLoad> {
    const out: Record<string, RoleLoad> = {};
    for (const [key, r] of this.#roles) {
      const slots = r.group ? Math.min(r.slots, r.group.slots) : r.slots;
      out[key] = { slots, busy: r.busy, queued: r.overflow.length, ...this.#o.stepLatency?.latency(key) };
    }
    return out;
  }

  /** Slot groups: their size and use. */
  groups(): Record<string, { slots: number; busy: number }> {
    const out: Record<string, { slots: number; busy: number }> = {};
    for (const [name, g] of this.#groups) out[name] = { slots: g.slots, busy: g.busy };
    return out;
  }

  /** How each puller's requests ended (for diagnosis). */
  pullStats(): Record<string, { requests: number; late: number; ends: Record<string, number> }> {
    const out: Record<string, { requests: number; late: number; ends: Record<string, number> }> = {};
    for (const r of this.#roles.values()) for (const p of r.pullers) out[p.consumer] = { requests: p.requests, late: p.late, ends: { ...p.ends } };
    return out;
  }

  /** Whether this node hosts a role. */
  hosts(key: string): boolean {
    return this.#roles.has(key);
  }

  /** Start a task that holds nothing yet (the engine's tasks already under way go on through their hold). */
  send(state: TaskState): Promise<void> {
    return this.#send(state, new Hold(this.keeper, this.#hop));
  }

  async #send(state: TaskState, hold: Hold): Promise<void> {
    if (state.next === null) throw new TaskError("a finished task has no next role");
    const key = roleKey(state.workflow, state.next);
    const role = this.#roles.get(key);
    const pinnedHere = role !== undefined && state.pin === this.#o.node;
    if (role && (pinnedHere || this.#localFirst) && !this.#draining) {
      // A hop between two roles of one group keeps the group slot the task holds.
      const prev = this.#runs.get(hold.run);
      const keeps = prev !== undefined && prev.groupSlot && prev.role.group !== undefined && prev.role.group === role.group;
      if (role.hasRoom(keeps)) {
        if (keeps) prev.groupSlot = false;
        this.stats.localHops++;
        this.#run(role, state, hold, keeps);
        return;
      }
      if (pinnedHere) {
        // The task holds something that lives here (an environment): it waits for a slot here rather than move.
        hold.run = 0;
        role.overflow.push({ state, hold });
        return;
      }
    }
    await this.#publish(state, hold);
  }

  /** Store the state in the next role's stream, then let go of the hold it came with. */
  async #publish(state: TaskState, hold: Hold): Promise<void> {
    const done = await handOff(this.#o.link, state, hold.seed, {
      log: this.#log,
      stop: () => this.#closed,
      onRetry: () => this.stats.publishRetries++,
      replicas: this.#o.replicas,
      parts: this.#o.parts,
    });
    if (done === "abandoned") return; // left held: given back, or delivered again after the ack wait
    if (done === "duplicate") this.stats.duplicateHops++;
    else this.stats.remoteHops++;
    this.#o.parts?.left(state.job, state.id);
    this.keeper.handedOn(hold);
  }

  #run(role: RoleSlots, state: TaskState, hold: Hold, keepsGroupSlot = false): void {
    role.take(keepsGroupSlot);
    const id = ++this.#runSeq;
    hold.run = id;
    const run: Run = { state, hold, role, groupSlot: true };
    this.#runs.set(id, run);
    // The slot goes back when the step ends, or earlier when its task is only storing its row.
    let slotHeld = true;
    const freeSlot = () => {
      if (!slotHeld) return;
      slotHeld = false;
      role.give(run.groupSlot);
      if (run.groupSlot) this.#pumpAll(role);
      else this.#pump(role);
    };
    hold.freeSlot = freeSlot;
    const after = (err?: unknown) => {
      if (hold.freeSlot === freeSlot) hold.freeSlot = undefined;
      const early = !slotHeld;
      if (slotHeld) {
        slotHeld = false;
        role.give(run.groupSlot);
      }
      this.#runs.delete(id);
      if (err !== undefined) this.#log.error({ role: role.key, task: state.id, err: describe(err) }, "step handler threw");
      if (hold.run === id && hold.open) {
        if (this.#draining) this.#stranded.push(run);
        else {
          this.#log.warn({ role: role.key, task: state.id }, "a step ended with its task neither handed on nor finished; giving it back");
          this.keeper.giveBack(hold);
        }
      }
      if (early) return;
      if (run.groupSlot) this.#pumpAll(role);
      else this.#pump(role);
    };
    role.handler(state, hold).then(() => after(), after);
  }

  /** A slot of `role` was freed, and with it one of its group, if any: the group's other roles may wait for it too. */
  #pumpAll(role: RoleSlots): void {
    this.#pump(role);
    if (role.group) for (const r of this.#roles.values()) if (r !== role && r.group === role.group) this.#pump(r);
  }

  /** A slot was freed: run what waits for one, and let the pullers ask for more. */
  #pump(role: RoleSlots): void {
    while (role.overflow.length > 0 && !this.#draining) {
      if (!role.hasRoomForQueued()) break;
      const next = role.overflow.shift() as Waiting;
      this.#run(role, next.state, next.hold);
    }
    role.wake();
  }

  #onTask(role: RoleSlots, msg: Msg, reply: string, reserved: boolean): void {
    if (this.#draining) {
      this.keeper.nak(reply);
      return;
    }
    this.stats.hopBytes += msg.data.length;
    let env: TaskEnvelope;
    try {
      env = decodeWith(TaskEnvelopeSchema, msg.data, `task message on ${msg.subject}`);
      if (roleKey(env.state.workflow, env.state.next ?? "") !== role.key) {
        throw new Error(`task message on ${msg.subject} is for role "${env.state.workflow}.${env.state.next}"`);
      }
    } catch (err) {
      this.stats.garbage.task++;
      this.#logGarbage(msg.subject, err);
      this.keeper.term(reply);
      if (reserved) this.#pump(role);
      return;
    }
    if (env.parts && this.#o.parts) {
      // Its large texts are fetched first; one that cannot be fails the task, saying which.
      const parts = env.parts;
      this.#o.parts.restore("hop", env.state.job, env.state.id, env.state, parts, `task ${env.state.id} of job ${env.state.job}`).then(
        () => this.#onEnvelope(role, env, reply, reserved),
        (err: unknown) => {
          if (err instanceof PartMissingError || err instanceof CodecError) this.#onEnvelope(role, env, reply, reserved, describe(err));
          else {
            // NATS did not answer: the message comes back later
            this.#log.warn({ task: env.state.id, err: describe(err) }, "cannot fetch a task's large texts; it is delivered again");
            this.keeper.nak(reply);
            if (reserved) this.#pump(role);
          }
        },
      );
      return;
    }
    this.#onEnvelope(role, env, reply, reserved);
  }

  #onEnvelope(role: RoleSlots, env: TaskEnvelope, reply: string, reserved: boolean, broken?: string): void {
    if (this.#draining) {
      this.keeper.nak(reply);
      return;
    }
    const state = env.state;
    this.stats.received++;
    this.stats.hopLatency.observe(Math.max(0, Date.now() - env.sent));
    const hold = new Hold(this.keeper, this.#hop, { ack: reply, mark: hopMsgId(state.job, state.id, state.steps, state.attempts) }, env.seed);
    if (broken !== undefined) hold.broken = broken;
    const delivery = parseAckSubject(reply);
    if (delivery && delivery.count > 1) {
      this.stats.redelivered++;
      // Hold the slot while looking for the row: a task whose row is stored needs no more steps.
      role.take(false);
      const check = (exists: boolean) => {
        role.give(true);
        if (!exists) {
          this.#o.onTakeover?.();
          return this.#start(role, state, hold);
        }
        this.stats.alreadyDone++;
        void hold.done();
        this.#pump(role);
      };
      this.#o.rowExists(state.job, state.id).then(check, () => check(false));
      return;
    }
    if (reserved) this.#run(role, state, hold);
    else this.#start(role, state, hold);
  }

  /** Run a task now if a slot is free, else keep it until one is. */
  #start(role: RoleSlots, state: TaskState, hold: Hold): void {
    if (role.hasRoom() && !this.#draining) this.#run(role, state, hold);
    else role.overflow.push({ state, hold });
  }

  /**
   * Define (or redefine) an admission gate: something of which the first
   * step of a gated job's tasks takes one share, held to the task's end
   * (an environment). `available` says how many are free at the source;
   * call {@link wakeGate} when shares are given back.
   */
  defineGate(name: string, available: () => number): void {
    const gate = this.#gates.get(name);
    if (gate) gate.available = available;
    else this.#gates.set(name, new ShareGate(name, available));
  }

  /** Shares of a gate were given back: the pullers of its jobs may ask for seeds again. */
  wakeGate(name: string): void {
    this.#gates.get(name)?.wake();
  }

  /** A gate's shares free now, as admission sees them (undefined when there is no such gate). */
  gateFree(name: string): number | undefined {
    return this.#gates.get(name)?.free();
  }

  /**
   * Take a job's seeds, for as many tasks as the role they start at has free
   * slots on this node, and, with `gate`, no more than the gate has free.
   * Returns a function that stops taking them.
   */
  admit(job: string, entryKey: string, onSeed: SeedHandler, opts: { gate?: string } = {}): (() => Promise<void>) | undefined {
    const role = this.#roles.get(entryKey);
    if (!role || this.#draining) return undefined;
    const gate = opts.gate === undefined ? undefined : this.#gates.get(opts.gate);
    gate?.roles.add(role);
    const puller = new Puller({
      link: this.#o.link,
      stream: Streams.seeds,
      consumer: seedConsumer(job),
      pool: pausable(gate ? new GatedSlots(role, gate) : role, this.#o.admissionPaused),
      log: this.#log,
      onMessage: (msg, ack) => this.#onSeed(job, msg, ack, onSeed),
    });
    role.pullers.push(puller);
    puller.start();
    return async () => {
      role.pullers = role.pullers.filter((p) => p !== puller);
      await puller.stop();
    };
  }

  #onSeed(job: string, msg: Msg, reply: string, onSeed: SeedHandler): void {
    if (this.#draining) {
      this.keeper.nak(reply);
      return;
    }
    const delivery = parseAckSubject(reply);
    let seed: SeedMessage;
    try {
      seed = decodeWith(SeedMessageSchema, msg.data, `seed message on ${msg.subject}`);
      if (seed.job !== job) throw new Error(`seed message on ${msg.subject} names job "${seed.job}"`);
      if (!delivery) throw new Error(`seed message on ${msg.subject} has no JetStream ack subject`);
    } catch (err) {
      this.stats.garbage.seed++;
      this.#logGarbage(msg.subject, err);
      this.keeper.term(reply);
      return;
    }
    this.stats.seedsTaken++;
    const ref = { node: this.#o.node, job, id: seed.id, seq: delivery.streamSeq, ack: reply };
    this.keeper.admit(ref);
    onSeed(seed, new Hold(this.keeper, this.#hop, undefined, ref), delivery.count > 1);
  }

  #onDone(msg: Msg): void {
    try {
      const notice = decodeWith(DoneNoticeSchema, msg.data, `done notice on ${msg.subject}`);
      this.keeper.noticeDone(notice.seq);
    } catch (err) {
      this.stats.garbage.done++;
      this.#logGarbage(msg.subject, err);
    }
  }

  #logGarbage(subject: string, err: unknown): void {
    // One line per message at first, then one per hundred, so a flood cannot drown the log.
    const n = ++this.#garbageLogged;
    if (n <= 20 || n % 100 === 0) this.#log.warn({ subject, dropped: n, err: describe(err) }, "dropped a message that is not what its subject carries");
  }

  /**
   * Stop taking work and give back what is held: tasks whose step was cut
   * short are stored again with their progress for any node to go on with
   * (a task with no progress since it came is nak'ed instead, delivered
   * again at once elsewhere); the seeds this node admitted whose tasks are
   * elsewhere get a long delay rather than expiring. Call after aborting
   * the engine's steps.
   */
  async drain(waitMs = 3000): Promise<void> {
    if (!this.#draining) {
      this.#draining = true;
      const pullers = [...this.#roles.values()].flatMap((r) => r.pullers);
      await Promise.all(pullers.map((p) => p.stop()));
    }
    const deadline = Date.now() + waitMs;
    while (this.#runs.size > 0 && Date.now() < deadline) await sleep(20);
    const back = [...this.#stranded.splice(0), ...this.#runs.values()];
    for (const r of this.#roles.values()) back.push(...r.overflow.splice(0));
    for (const run of back) await this.#giveBack(run);
    this.keeper.deferHanded(Math.max(60_000, 10 * this.#o.timings.ackWaitMs));
  }

  async #giveBack({ state, hold }: Waiting): Promise<void> {
    if (!hold.open) return;
    this.stats.handedBack++;
    const id = hopMsgId(state.job, state.id, state.steps, state.attempts);
    // Storing an unchanged state would be refused as a duplicate of the message it came with.
    const progressed = state.next !== null && (hold.task !== undefined ? hold.mark !== id : id !== hopMsgId(state.job, state.id, 0, {}));
    if (progressed) {
      const done = await handOff(this.#o.link, state, hold.seed, { log: this.#log, stop: () => true, once: true, replicas: this.#o.replicas, parts: this.#o.parts }).catch(
        () => "abandoned" as const,
      );
      if (done !== "abandoned") {
        this.keeper.handedOn(hold);
        return;
      }
    }
    this.keeper.giveBack(hold);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    await this.drain();
    this.#closed = true;
    this.keeper.stop();
    this.#doneSub?.unsubscribe();
  }
}
