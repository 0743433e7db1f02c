import { ConfigError, describe } from "../errors.ts";
import type { Logger } from "../log.ts";
import type { AnyWorkflow, Metric } from "../plugin/api.ts";
import type { Registry } from "../plugin/registry.ts";
import { isRecord } from "../util/record.ts";
import { carriedName, fileMetrics, type LoadedWorkflow, loadDefinition } from "../workflow/index.ts";

/** What of a job record says which workflow it runs. */
export interface WorkflowRef {
  workflow: string;
  definition?: Record<string, unknown>;
  definitionHash?: string;
}

/** A job's workflow as this node runs it; `hash` for one the job carries. */
export interface JobWorkflow {
  workflow: AnyWorkflow;
  hash?: string;
}

/** A carried definition this node cannot run (a `ts` role naming a workflow it lacks, a hash that does not agree). */
export class CarriedWorkflowError extends ConfigError {
  override name = "CarriedWorkflowError";
}

/** The registry's workflow of that name, or undefined (what a `ts` role of a definition may name). */
export function registryLookup(registry: Registry): (name: string) => AnyWorkflow | undefined {
  return (name) => registry.find(name);
}

/**
 * The workflows a node runs: those of its registry (built in, `--plugin`),
 * and those jobs carry as definitions, each compiled here once per hash the
 * first time a job of it is seen, with no restart. A definition that does
 * not compile here is logged once and remembered, so its jobs' tasks are
 * left to the nodes that can run them. `onHost` is told of each carried
 * workflow the first time one of its jobs is to run here, before any of its
 * tasks is admitted or taken.
 */
export class NodeWorkflows {
  /** compiled carried workflows by their carried name */
  readonly #carried = new Map<string, LoadedWorkflow>();
  /** why a definition (by hash) cannot run here */
  readonly #failed = new Map<string, string>();
  readonly #hosted = new Set<string>();
  readonly #lookup: (name: string) => AnyWorkflow | undefined;
  #onHost: ((wf: AnyWorkflow) => void) | undefined;

  constructor(
    readonly registry: Registry,
    private readonly log: Logger,
  ) {
    this.#lookup = registryLookup(registry);
  }

  /** Be told of each carried workflow to host (the node's role hosting). */
  onHost(f: (wf: AnyWorkflow) => void): void {
    this.#onHost = f;
  }

  /** A workflow by the name jobs, tasks and rows use: the registry's, or a carried one compiled here. */
  find(name: string): AnyWorkflow | undefined {
    return this.#lookup(name) ?? this.#carried.get(name)?.workflow;
  }

  /** The workflows a `ts` role of a definition may name: the registry's. */
  get lookup(): (name: string) => AnyWorkflow | undefined {
    return this.#lookup;
  }

  /** Carried workflows compiled here. */
  get carried(): AnyWorkflow[] {
    return [...this.#carried.values()].map((l) => l.workflow);
  }

  /**
   * Keep a definition checked on this node (a job submitted here), so the
   * job's record needs no second compile. Throws ConfigError when another
   * definition has its carried name (the same name and hash prefix).
   */
  learn(loaded: LoadedWorkflow): void {
    const name = loaded.workflow.name;
    const known = this.#carried.get(name);
    if (known && known.hash !== loaded.hash) throw new ConfigError(`workflow "${name}": another definition has this name and hash prefix (${known.hash})`);
    this.#carried.set(name, loaded);
  }

  /** The workflow of a job, compiled when it is carried; throws ConfigError saying why this node cannot run it. */
  compiled(rec: WorkflowRef): JobWorkflow {
    if (rec.definition === undefined) return { workflow: this.registry.get(rec.workflow) };
    const hash = rec.definitionHash;
    if (hash === undefined) throw new CarriedWorkflowError(`job of workflow "${rec.workflow}" carries a definition without its hash`);
    const known = this.#carried.get(rec.workflow);
    if (known) {
      if (known.hash !== hash) throw new CarriedWorkflowError(`workflow "${rec.workflow}": the job's definition has hash ${hash}, the one compiled here ${known.hash}`);
      return { workflow: known.workflow, hash };
    }
    const failed = this.#failed.get(hash);
    if (failed !== undefined) throw new CarriedWorkflowError(failed);
    let loaded: LoadedWorkflow;
    try {
      loaded = loadDefinition(rec.definition, { workflows: this.#lookup });
      if (loaded.hash !== hash) throw new Error(`its hash is ${loaded.hash}, the job says ${hash}`);
      if (loaded.workflow.name !== rec.workflow || carriedName(loaded.file.name, hash) !== rec.workflow) {
        throw new Error(`it compiles to "${loaded.workflow.name}", the job says "${rec.workflow}"`);
      }
    } catch (err) {
      const why = `this node cannot run workflow "${rec.workflow}" carried by its jobs: ${describe(err)}`;
      this.#failed.set(hash, why);
      this.log.warn({ workflow: rec.workflow, hash, err: describe(err) }, "this node cannot run a workflow a job carries; its tasks are left to other nodes");
      throw new CarriedWorkflowError(why);
    }
    this.#carried.set(rec.workflow, loaded);
    return { workflow: loaded.workflow, hash };
  }

  /** The workflow of a job, its roles hosted here first when it is carried; throws like `compiled`. */
  hosted(rec: WorkflowRef): JobWorkflow {
    const jw = this.compiled(rec);
    if (jw.hash !== undefined && !this.#hosted.has(jw.workflow.name)) {
      this.#hosted.add(jw.workflow.name);
      this.#onHost?.(jw.workflow);
      this.log.info({ workflow: jw.workflow.name, hash: jw.hash, roles: Object.keys(jw.workflow.roles) }, "hosting the roles of a workflow a job carries");
    }
    return jw;
  }

  /** The workflow of a job if this node can compile it, else undefined. */
  tryCompiled(rec: WorkflowRef): AnyWorkflow | undefined {
    try {
      return this.compiled(rec).workflow;
    } catch {
      return undefined;
    }
  }

  /**
   * The quality metrics of a job's workflow, for its status and final
   * tally. A node that cannot compile a carried definition still reads
   * them: a workflow file's metrics are the rows' `metrics` fields of its
   * `metrics:` names, numbers or booleans (as 1 and 0), of ok rows.
   */
  metricsOf(rec: WorkflowRef): readonly Metric[] {
    const wf = this.tryCompiled(rec);
    if (wf) return wf.metrics ?? [];
    const named = rec.definition?.metrics;
    if (!isRecord(named)) return [];
    return fileMetrics(Object.keys(named));
  }
}
