/** Checks before any task is admitted: LLM endpoints and their models, environments, the output path, the server. */
export { checkEndpoints, type EndpointTarget } from "./endpoints.ts";
export { checkEnvDriver, type EnvSetting } from "./env-driver.ts";
export { checkLlmGiven } from "./llm-given.ts";
export { type AskedModel, type WorkflowNeeds, workflowNeeds } from "./needs.ts";
export { checkOutPath } from "./out-path.ts";
export { formatResult, preflight, runChecks } from "./run.ts";
export { checkServer } from "./server.ts";
export { checkNodeEndpoints, checkSupervised, clientTargets, configTargets, type LlmSetting, type OpenClient } from "./targets.ts";
export { type Check, type CheckResult, CheckStatus, PROBE_TIMEOUT_MS } from "./types.ts";
