import { ApiError, DEFAULT_SERVER } from "../src/api/client.ts";
import { jobsTable } from "../src/api/format.ts";
import { API_FLAGS, apiClient, parseCommand } from "./args.ts";

export const JOBS_HELP = `matrixd jobs: the cluster's jobs, as one node sees them

usage: matrixd jobs [--server URL] [--json] [--token T]

  --server URL   any node's HTTP API (default $MATRIXD_SERVER, else ${DEFAULT_SERVER})
  --json         print the API's answer as JSON (a list of job statuses)
  --token T      bearer token of the API (default $MATRIXD_TOKEN)

one row per job, newest first: id, workflow, state, rows done of total, ok, failed, running,
queued, rows/s, tokens, age.
exit codes: 0 ok, 1 server or network error, 2 usage or a request the server refused`;

/** `matrixd jobs`: returns the exit code. */
export async function jobsMain(argv: string[]): Promise<number> {
  const { values: f } = parseCommand("jobs", argv, { ...API_FLAGS, json: { type: "boolean" } });
  if (f.help) {
    console.log(JOBS_HELP);
    return 0;
  }
  const api = apiClient(f);
  try {
    const jobs = await api.jobs();
    if (f.json) console.log(JSON.stringify(jobs, null, 2));
    else console.log(jobs.length > 0 ? jobsTable(jobs) : `no jobs (${api.server})`);
    return 0;
  } catch (err) {
    if (!(err instanceof ApiError)) throw err;
    process.stderr.write(`matrixd jobs: ${err.message}\n`);
    return err.exitCode;
  }
}
