import type { WorkflowNeeds } from "./needs.ts";
import type { LlmSetting } from "./targets.ts";
import { type CheckResult, result } from "./types.ts";

/** A workflow whose roles call an LLM has at least one endpoint to call. */
export function checkLlmGiven(needs: WorkflowNeeds, llm: LlmSetting): CheckResult[] {
  if (needs.llmRoles.length === 0) return [];
  // an `llm` section without endpoints means the local default URL, checked with the rest
  const given = (llm.flags?.length ?? 0) > 0 || llm.section !== undefined || llm.supervise.length > 0;
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
