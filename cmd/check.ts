import { builtinWorkflows } from "../plugins/index.ts";
import { UsageError } from "../src/errors.ts";
import { loadPlugin, Registry } from "../src/plugin/registry.ts";
import { graphDot, graphText, loadWorkflowFile, WorkflowError } from "../src/workflow/index.ts";
import { parseCommand } from "./args.ts";

export const CHECK_HELP = `matrixd check: check a workflow file before it runs

usage: matrixd check FILE.yaml|FILE.json [--dot] [--plugin PATH ...]

  Lists every problem at once, each with the file, line and path: schema errors,
  templates and expressions that do not compile, roles that do not exist or cannot
  be reached, roles from which the end cannot be reached, loops with no way out,
  variables read before anything sets them, options the file does not have.
  With no problem, prints the workflow's graph.

  --dot          print the graph in Graphviz's language instead of text
  --plugin PATH  load workflows a 'ts' role names from a file; repeatable

exit codes: 0 no problem, 2 problems (listed on stderr) or usage error`;

/** `matrixd check`: returns the exit code. */
export async function checkMain(argv: string[]): Promise<number> {
  const { values: f, positionals } = parseCommand("check", argv, { dot: { type: "boolean" }, plugin: { type: "string", multiple: true }, help: { type: "boolean", short: "h" } }, true);
  if (f.help) {
    console.log(CHECK_HELP);
    return 0;
  }
  if (positionals.length !== 1) throw new UsageError("give one workflow file (see matrixd check --help)");
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
