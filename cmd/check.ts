import { builtinWorkflows } from "../plugins/index.ts";
import { loadJoinConfig } from "../src/cluster/config.ts";
import { readConfigFile } from "../src/config/load.ts";
import { loadJobConfig } from "../src/config/run.ts";
import { makeJobRuntime } from "../src/engine/job.ts";
import { ConfigError, UsageError } from "../src/errors.ts";
import type { LlmSection } from "../src/llm/config.ts";
import { loadPlugin, Registry } from "../src/plugin/registry.ts";
import {
  type CheckResult,
  checkEnvDriver,
  checkLlmGiven,
  checkNodeEndpoints,
  formatResult,
  runChecks,
  type WorkflowNeeds,
  workflowNeeds,
} from "../src/preflight/index.ts";
import type { SuperviseSpec } from "../src/services/supervisor.ts";
import { graphDot, graphText, loadWorkflowFile, resolveWorkflow, WorkflowError } from "../src/workflow/index.ts";
import { parseCommand } from "./args.ts";
import { superviseFlags } from "./llm.ts";

export const CHECK_HELP = `matrixd check: check a workflow file, or a node's set-up, before it runs

usage: matrixd check FILE.yaml|FILE.json [--dot] [--plugin PATH ...]
       matrixd check --config FILE [--workflow NAME|FILE] [--llm sim|URL ...] [--supervise CMD ...]
                     [--env docker|bwrap] [--plugin PATH ...]

  With a workflow file alone, lists every problem at once, each with the file, line
  and path: schema errors, templates and expressions that do not compile, roles that
  do not exist or cannot be reached, roles from which the end cannot be reached, loops
  with no way out, variables read before anything sets them, options the file does not
  have. With no problem, prints the workflow's graph.

  With --config, --workflow, --llm or --env, runs the checks matrixd run and matrixd join
  make before any task is admitted, and prints each with ok, warning or failed: the
  workflow and its options; that an LLM workflow is given an endpoint; that every LLM
  endpoint answers GET /v1/models (with its API key) and serves the models the roles ask
  for; that a workflow running tools is given --env and that its driver is there (a
  Docker engine that answers, a bwrap that runs). A dead endpoint among live ones is a
  warning. Supervised servers are not started here: run and join check them once started.

  --dot               print the graph in Graphviz's language instead of text
  --plugin PATH       load workflows (and those a 'ts' role names) from a file; repeatable
  --config FILE       a run or join config (YAML or JSON): workflow, options, llm, supervise, env, sim
  --workflow NAME|FILE  the workflow to check against (default: the config's, or FILE)
  --llm sim|URL       LLM endpoints, as for matrixd run (they replace the config's); repeatable
  --supervise CMD     a supervised server, as for matrixd run (not started: listed as a warning)
  --env docker|bwrap  the environment driver, as for matrixd run

exit codes: 0 no problem (warnings allowed), 2 a check failed or problems (listed) or usage error`;

/** What the set-up checks read of a run or a join config. */
interface SetupConfig {
  workflow?: string;
  options: Record<string, unknown>;
  seed: number;
  stepRetries: number;
  llm?: LlmSection;
  supervise: SuperviseSpec[];
  env?: Record<string, unknown>;
  sim?: Record<string, unknown>;
  plugins: string[];
}

/** A run config, or a join config (one with a `nats` section). */
function loadSetupConfig(path: string | undefined): SetupConfig {
  const raw = path === undefined ? {} : readConfigFile(path);
  if (typeof raw === "object" && raw !== null && "nats" in raw) return { ...loadJoinConfig(path), options: {}, seed: 0, stepRetries: 0 };
  return loadJobConfig(path);
}

/** The workflow and what it needs, or the failure that says why it cannot run. */
function workflowCheck(name: string, cfg: SetupConfig, registry: Registry): { needs?: WorkflowNeeds; result: CheckResult } {
  try {
    const { workflow } = resolveWorkflow(name, registry);
    const job = makeJobRuntime({ workflow, options: cfg.options, seed: cfg.seed, stepRetries: cfg.stepRetries });
    const needs = workflowNeeds(workflow, job.config);
    const asks = needs.models.map((m) => `${m.role} asks for "${m.model}"`);
    return { needs, result: { check: "workflow", target: name, status: "ok", message: `workflow ${workflow.name}: known, options valid${asks.length ? `: ${asks.join(", ")}` : ""}` } };
  } catch (err) {
    if (!(err instanceof ConfigError || err instanceof UsageError)) throw err;
    return { result: { check: "workflow", target: name, status: "fail", message: err.message } };
  }
}

/** `matrixd check --config ...`: the checks before any task is admitted, each printed. */
async function checkSetup(f: { config?: string; workflow?: string; llm?: string[]; supervise?: string[]; env?: string; plugin?: string[] }, file: string | undefined): Promise<number> {
  const cfg = loadSetupConfig(f.config);
  const registry = new Registry(builtinWorkflows);
  for (const p of [...cfg.plugins, ...(f.plugin ?? [])]) for (const w of await loadPlugin(p)) registry.add(w);
  const name = f.workflow ?? file ?? cfg.workflow;
  const wf = name === undefined ? undefined : workflowCheck(name, cfg, registry);
  const llm = { flags: f.llm, section: cfg.llm, supervise: [...cfg.supervise, ...superviseFlags(f.supervise)], sim: cfg.sim };
  const needs = wf?.needs;
  const results = [
    ...(wf ? [wf.result] : []),
    ...(await runChecks([
      () => checkEnvDriver({ flag: f.env, config: cfg.env }, needs),
      () => (needs ? checkLlmGiven(needs, llm) : []),
      () => checkNodeEndpoints(llm, needs?.models, "warn"),
    ])),
  ];
  if (results.length === 0) console.log("nothing to check: no workflow, no LLM endpoint, no environment (see matrixd check --help)");
  for (const r of results) console.log(formatResult(r));
  return results.some((r) => r.status === "fail") ? 2 : 0;
}

/** `matrixd check`: returns the exit code. */
export async function checkMain(argv: string[]): Promise<number> {
  const { values: f, positionals } = parseCommand(
    "check",
    argv,
    {
      dot: { type: "boolean" },
      plugin: { type: "string", multiple: true },
      config: { type: "string" },
      workflow: { type: "string" },
      llm: { type: "string", multiple: true },
      supervise: { type: "string", multiple: true },
      env: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
    true,
  );
  if (f.help) {
    console.log(CHECK_HELP);
    return 0;
  }
  if (positionals.length > 1) throw new UsageError("give one workflow file (see matrixd check --help)");
  if (f.config !== undefined || f.workflow !== undefined || f.llm !== undefined || f.env !== undefined || f.supervise !== undefined) {
    return checkSetup(f, positionals[0]);
  }
  if (positionals.length !== 1) throw new UsageError("give one workflow file, or --config FILE (see matrixd check --help)");
  const registry = new Registry(builtinWorkflows);
  for (const p of f.plugin ?? []) for (const w of await loadPlugin(p)) registry.add(w);
  try {
    const loaded = loadWorkflowFile(positionals[0] as string, { workflows: (n) => registry.find(n) });
    console.log(f.dot ? graphDot(loaded.file) : `${graphText(loaded.file)}\nhash ${loaded.hash}`);
    return 0;
  } catch (err) {
    if (!(err instanceof WorkflowError)) throw err;
    process.stderr.write(`${err.message}\n`);
    return 2;
  }
}
