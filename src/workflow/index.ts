import { ConfigError } from "../errors.ts";
import type { AnyWorkflow } from "../plugin/api.ts";
import type { Registry } from "../plugin/registry.ts";
import { isWorkflowFile, type LoadedWorkflow, loadWorkflowFile } from "./load.ts";

/**
 * Workflow files: the format (schema.ts), its compiler (compile.ts), the
 * checks of its graph (check.ts), and loading from a file or from the
 * definition a job carries (load.ts).
 */
export { graphDot, graphText } from "./check.ts";
export { carriedName, isWorkflowFile, loadDefinition, loadWorkflowFile, parseWorkflowText, WorkflowError, type LoadedWorkflow } from "./load.ts";
export { fileMetrics } from "./compile.ts";
export { MAX_WORKFLOW_BYTES, type WorkflowFile } from "./schema.ts";

/** What `--workflow` names: a workflow of the registry, or a file (with its definition and hash). */
export function resolveWorkflow(arg: string, registry: Registry): { workflow: AnyWorkflow; file?: LoadedWorkflow } {
  if (isWorkflowFile(arg)) {
    const file = loadWorkflowFile(arg, { workflows: (n) => registry.find(n) });
    return { workflow: file.workflow, file };
  }
  if (arg.includes("/")) throw new ConfigError(`--workflow ${arg}: a workflow file ends in .yaml, .yml or .json`);
  return { workflow: registry.get(arg) };
}
