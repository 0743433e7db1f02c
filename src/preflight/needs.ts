import type { AnyRole, AnyWorkflow } from "../plugin/api.ts";

/** A model name a role of the workflow asks for. */
export interface AskedModel {
  role: string;
  model: string;
}

/** What a workflow needs of the node before its first task: an LLM and which models, environments. */
export interface WorkflowNeeds {
  workflow: string;
  /** roles that call an LLM */
  llmRoles: string[];
  /** the models those roles name under this config (a role that takes whatever is served names none) */
  models: AskedModel[];
  /** roles that run in a per-task environment */
  envRoles: string[];
}

/**
 * A role calls an LLM when it is of kind `llm` and says which model it asks
 * for (`model`, even one that answers "any"): a role of kind `llm` without it
 * only sizes its slots like one (coral-dummy's instant turns).
 */
function callsLlm(role: AnyRole): boolean {
  return role.kind === "llm" && Object.hasOwn(role, "model");
}

/** What `workflow`, under its validated `config`, asks of the node. */
export function workflowNeeds(workflow: AnyWorkflow, config: unknown): WorkflowNeeds {
  const llmRoles: string[] = [];
  const models: AskedModel[] = [];
  const envRoles: string[] = [];
  for (const [name, role] of Object.entries(workflow.roles)) {
    if (role.kind === "env") envRoles.push(name);
    if (!callsLlm(role)) continue;
    llmRoles.push(name);
    const model = role.model?.(config);
    if (model) models.push({ role: name, model });
  }
  return { workflow: workflow.name, llmRoles, models, envRoles };
}
