import { resolve } from "node:path";
import { z } from "zod";
import { ConfigError } from "../errors.ts";
import { isRecord } from "../util/record.ts";
import { type AnyWorkflow, defineWorkflow, llmRole, type PluginApi } from "./api.ts";
import { loadErrorText } from "./load-errors.ts";

export type { PluginApi };

const api: PluginApi = { z, defineWorkflow, llmRole };

let zodProvided = false;

/**
 * A plugin file's `import { z } from "zod"` gets matrixd's own zod, wherever
 * the file lives: the binary carries no node_modules, and a file outside a
 * package tree has none to resolve from.
 */
function provideZod(): void {
  if (zodProvided) return;
  zodProvided = true;
  const exports = { ...z, z, default: z };
  Bun.plugin({
    name: "matrixd-zod",
    setup(build) {
      for (const id of ["zod", "zod/v4"]) build.module(id, () => ({ exports, loader: "object" }));
    },
  });
}

function isWorkflow(v: unknown): v is AnyWorkflow {
  if (!isRecord(v)) return false;
  const w = v;
  return (
    typeof w.name === "string" &&
    typeof w.roles === "object" &&
    w.roles !== null &&
    typeof w.start === "function" &&
    typeof w.next === "function" &&
    typeof w.output === "function" &&
    typeof w.seedSchema === "object" &&
    typeof w.configSchema === "object"
  );
}

/**
 * Load a user's workflow file. Its default export (or `workflow`, or
 * `workflows` for several) is a workflow, or a function `(api) => workflow`
 * that gets zod and helpers (PluginApi).
 * A file that does not build throws a ConfigError listing each error with
 * its file:line:column.
 */
export async function loadPlugin(path: string): Promise<AnyWorkflow[]> {
  const abs = resolve(path);
  provideZod();
  let mod: unknown;
  try {
    mod = await import(abs);
  } catch (err) {
    throw new ConfigError(`cannot load plugin ${path}: ${loadErrorText(err, abs)}`);
  }
  if (!isRecord(mod)) throw new ConfigError(`plugin ${path} is not a module`);
  const out: AnyWorkflow[] = [];
  for (const key of ["default", "workflow", "workflows"]) {
    let v = mod[key];
    if (typeof v === "function") v = (v as (a: PluginApi) => unknown)(api);
    for (const w of Array.isArray(v) ? v : [v]) if (isWorkflow(w)) out.push(w);
  }
  if (out.length === 0) {
    throw new ConfigError(
      `plugin ${path} exports no workflow (export default a workflow, or a function (api) => workflow)`,
    );
  }
  return out;
}

/** The workflows known to this process, by name. */
export class Registry {
  #byName = new Map<string, AnyWorkflow>();

  constructor(workflows: readonly AnyWorkflow[]) {
    for (const w of workflows) this.add(w);
  }

  add(w: AnyWorkflow): void {
    if (!/^[a-z0-9][a-z0-9-]*$/.test(w.name)) {
      throw new ConfigError(`workflow name "${w.name}" must be lowercase letters, digits and dashes`);
    }
    if (Object.keys(w.roles).length === 0) throw new ConfigError(`workflow "${w.name}" has no roles`);
    for (const r of Object.keys(w.roles)) {
      if (!/^[a-z0-9][a-z0-9_-]*$/.test(r)) throw new ConfigError(`workflow "${w.name}": role name "${r}" is not allowed`);
    }
    this.#byName.set(w.name, w);
  }

  get(name: string): AnyWorkflow {
    const w = this.#byName.get(name);
    if (!w) throw new ConfigError(`unknown workflow "${name}" (known: ${this.names().join(", ")})`);
    return w;
  }

  /** The workflow of that name, or undefined. */
  find(name: string): AnyWorkflow | undefined {
    return this.#byName.get(name);
  }

  names(): string[] {
    return [...this.#byName.keys()].sort();
  }

  all(): AnyWorkflow[] {
    return [...this.#byName.values()];
  }
}
