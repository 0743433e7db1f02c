#!/usr/bin/env bun
import "./env.ts";
import { describe, exitCodeOf } from "../src/errors.ts";
import { VERSION } from "../src/version.ts";

const HELP = `matrixd ${VERSION}: peer-to-peer multi-agent synthetic data generation

usage: matrixd COMMAND [options]   (matrixd COMMAND --help for each)

  run       run a job on this machine, in-process (no external service)
  check     check a workflow file (its problems, or its graph), or a node's set-up (--config ...)
  join      join a cluster over NATS: host roles, supervise LLM servers, serve the HTTP API
  sim-llm   a simulated GPU LLM server (OpenAI API, vLLM metrics)
  bench     matrixd against its baselines on a simulated fleet (needs the source tree)
  submit    send a seed file to a cluster node as a job; progress, dataset
  status    the cluster's members and jobs, as one node sees them
  jobs      the cluster's jobs, one line each
  results   a job's dataset (NDJSON), to stdout or a file
  cancel    cancel a job (--purge: drop it and its dataset)
  version   print the version

exit codes: 0 ok, 1 job or runtime failure, 2 usage or config error`;

// Each command's modules load when it runs: a guard or a sim server does not load the NATS client, YAML, CEL...
const commands: Record<string, (argv: string[]) => Promise<number>> = {
  __guard: async (a) => (await import("../src/services/guard.ts")).guardMain(a),
  run: async (a) => (await import("./run.ts")).runMain(a),
  check: async (a) => (await import("./check.ts")).checkMain(a),
  join: async (a) => (await import("./join.ts")).joinMain(a),
  "sim-llm": async (a) => (await import("./sim-llm.ts")).simLlmMain(a),
  bench: async (a) => (await import("./bench.ts")).benchMain(a),
  submit: async (a) => (await import("./submit.ts")).submitMain(a),
  status: async (a) => (await import("./status.ts")).statusMain(a),
  jobs: async (a) => (await import("./jobs.ts")).jobsMain(a),
  results: async (a) => (await import("./results.ts")).resultsMain(a),
  cancel: async (a) => (await import("./cancel.ts")).cancelMain(a),
  version: async () => {
    console.log(`matrixd ${VERSION}`);
    return 0;
  },
};

/** Run one command line; returns the exit code. */
export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (!cmd || cmd === "help" || cmd === "--help" || cmd === "-h") {
    console.log(HELP);
    return cmd ? 0 : 2;
  }
  if (cmd === "--version") return commands.version?.([]) ?? 0;
  const run = commands[cmd];
  if (!run) {
    const names = Object.keys(commands).filter((c) => !c.startsWith("_"));
    console.error(`matrixd: unknown command "${cmd}" (commands: ${names.join(", ")})`);
    return 2;
  }
  try {
    return await run(rest);
  } catch (err) {
    console.error(`matrixd ${cmd}: ${describe(err)}`);
    return exitCodeOf(err);
  }
}

if (import.meta.main) {
  const code = await main(process.argv.slice(2));
  // Let buffered log lines reach their stream before exiting.
  setTimeout(() => process.exit(code), 10);
}
