import type { WorkflowNeeds } from "./needs.ts";
import { type CheckResult, result } from "./types.ts";

/** Where a node's LLM endpoints come from; any of them is enough. */
export interface LlmSources {
  /** `--llm` flags */
  flags?: readonly string[];
  /** the config has an `llm` section (without endpoints it means the local default URL) */
  section?: boolean;
  /** `--supervise` flags and the config's `supervise` entries */
  supervise?: number;
}

/** A workflow whose roles call an LLM has at least one endpoint to call. */
export function checkLlmGiven(needs: WorkflowNeeds, sources: LlmSources): CheckResult[] {
  if (needs.llmRoles.length === 0) return [];
  const given = (sources.flags?.length ?? 0) > 0 || sources.section === true || (sources.supervise ?? 0) > 0;
  if (given) return [];
  return [
    result(
      "llm",
      needs.workflow,
      "fail",
      `workflow ${needs.workflow} calls an LLM (${needs.llmRoles.length > 1 ? "roles" : "role"} ${needs.llmRoles.join(", ")}) and none is given: pass --llm URL (or --llm sim), --supervise CMD, or llm.endpoints in --config`,
    ),
  ];
}
