import type { Bus } from "../bus/bus.ts";
import { roleKey } from "../bus/bus.ts";
import type { NatsBusImpl } from "../bus/nats/index.ts";
import type { Engine } from "../engine/engine.ts";
import type { EnvService } from "../env/types.ts";
import { llmCapacity } from "../llm/capacity.ts";
import type { LlmClient } from "../llm/types.ts";
import type { AnyWorkflow } from "../plugin/api.ts";
import type { Registry } from "../plugin/registry.ts";
import type { RoleSelection } from "./config.ts";

/** The admission gate of the node's environments. */
const ENV_GATE = "env";

/** How often the slots of LLM-bound roles are set again to the LLM services' capacity. */
const FOLLOW_LLM_MS = 1000;

export interface RoleHostingOptions {
  engine: Engine;
  bus: NatsBusImpl;
  registry: Registry;
  /** which roles to host and their slots */
  select: RoleSelection;
  /** slots of `auto` roles that do not wait on an LLM, or when there is no LLM */
  fallback: number;
  llm?: LlmClient;
}

/**
 * Hosts the selected roles of every known workflow (the registry's at
 * start, each carried one when its first job is seen), with their slots: a
 * number where the selection gives one; for `auto` LLM-bound roles, one
 * group of slots shared by all of them that follows what the node's LLM
 * services can run; the fallback otherwise.
 */
export class RoleHosting {
  readonly #autoLlmRoles: string[] = [];
  #closed = false;
  #timer: ReturnType<typeof setInterval> | undefined;

  constructor(private readonly o: RoleHostingOptions) {}

  /** Host the roles, then follow the LLM services' capacity. */
  start(): void {
    for (const wf of this.o.registry.all()) this.#host(wf);
    this.#shareLlm();
    this.#timer = setInterval(() => this.#followLlmCapacity(), FOLLOW_LLM_MS);
  }

  /**
   * Host the roles of a workflow that was not known at start (one a job
   * carries), with the same slots as the registry's: its `auto` LLM-bound
   * roles join the shared group of LLM slots.
   */
  host(wf: AnyWorkflow): void {
    if (this.#closed) return;
    if (this.#host(wf)) this.#shareLlm();
  }

  /** Host a workflow's selected roles; whether any joins the LLM group. */
  #host(wf: AnyWorkflow): boolean {
    const { select, fallback, llm } = this.o;
    let llmBound = false;
    this.o.engine.hostWorkflow(wf, (role) => {
      const slots = select(wf.name, role);
      if (typeof slots === "number") return slots;
      if (wf.roles[role]?.kind === "llm" && llm) {
        this.#autoLlmRoles.push(roleKey(wf.name, role));
        llmBound = true;
        return this.#llmCapacity() ?? fallback;
      }
      return fallback;
    });
    return llmBound;
  }

  #shareLlm(): void {
    if (this.#autoLlmRoles.length > 0) this.o.bus.shareSlots("llm", this.#llmCapacity() ?? this.o.fallback, this.#autoLlmRoles);
  }

  stop(): void {
    this.#closed = true;
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** What this node's LLM services run at once plus a small queue (see `llmCapacity`); undefined with no LLM. */
  #llmCapacity(): number | undefined {
    const llm = this.o.llm;
    return llm && llm.endpoints().length > 0 ? llmCapacity(llm) : undefined;
  }

  /** The LLM-bound roles share one group of slots that follows the LLM services' capacity. */
  #followLlmCapacity(): void {
    const cap = this.#llmCapacity();
    if (cap === undefined || this.#autoLlmRoles.length === 0) return;
    for (const key of this.#autoLlmRoles) this.o.bus.resize(key, cap);
    this.o.bus.shareSlots("llm", cap, this.#autoLlmRoles);
  }
}

/** The engine hosts whole workflows; this lets only the selected roles through to the NATS bus. */
export function selectiveBus(bus: NatsBusImpl, select: RoleSelection): Bus {
  return {
    host: (key, slots, handler) => {
      const dot = key.indexOf(".");
      if (select(key.slice(0, dot), key.slice(dot + 1)) !== undefined) bus.host(key, slots, handler);
    },
    send: (state) => bus.send(state),
    load: () => bus.load(),
    close: () => bus.close(),
  };
}

/** The environment pool among a node's services, if it has one. */
export function envPool(services: Record<string, unknown> | undefined): EnvService | undefined {
  const env = services?.env as EnvService | undefined;
  return env !== undefined && typeof env.inUse === "function" ? env : undefined;
}

/**
 * Gate the admission of tasks whose first step takes an environment: only
 * while one is free here. Returns the gate's name and a function that
 * unhooks it; undefined when the pool cannot say its capacity.
 */
export function gateEnv(bus: NatsBusImpl, env: EnvService | undefined): { gate: string; unhook: () => void } | undefined {
  if (env === undefined || typeof env.capacity !== "number") return undefined;
  bus.defineGate(ENV_GATE, () => env.capacity - env.inUse());
  const unhook = env.onRelease?.(() => bus.wakeGate(ENV_GATE));
  return { gate: ENV_GATE, unhook: () => unhook?.() };
}
