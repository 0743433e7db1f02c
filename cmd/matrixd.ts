#!/usr/bin/env bun
import "./env.ts";
import { describe, exitCodeOf } from "../src/errors.ts";
import { VERSION } from "../src/version.ts";
import { runMain } from "./run.ts";
import { benchMain } from "./bench.ts";
import { simLlmMain } from "./sim-llm.ts";
import { statusMain } from "./status.ts";
import { submitMain } from "./submit.ts";
import { guardMain } from "../src/services/guard.ts";
import { joinMain } from "./join.ts";
import { checkMain } from "./check.ts";
import { jobsMain } from "./jobs.ts";
import { resultsMain } from "./results.ts";
import { cancelMain } from "./cancel.ts";

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

const commands: Record<string, (argv: string[]) => Promise<number>> = {
  __guard: guardMain,
  run: runMain,
  check: checkMain,
  join: joinMain,
  "sim-llm": simLlmMain,
  bench: benchMain,
  submit: submitMain,
  status: statusMain,
  jobs: jobsMain,
  results: resultsMain,
  cancel: cancelMain,
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
