import { ApiError, DEFAULT_SERVER } from "../src/api/client.ts";
import { failureSummary } from "../src/engine/failures.ts";
import { formatJob, jobsTable, membersTable } from "../src/api/format.ts";
import { API_FLAGS, apiClient, parseCommand } from "./args.ts";

export const STATUS_HELP = `matrixd status: the cluster's members and jobs, as one node sees them

usage: matrixd status [--server URL] [--job ID] [--json] [--token T]

  --server URL   any node's HTTP API (default $MATRIXD_SERVER, else ${DEFAULT_SERVER})
  --job ID       one job: state, counts, rate, tokens, metrics
  --json         print the API's answer as JSON ({node, members, jobs}, or the job)
  --token T      bearer token of the API (default $MATRIXD_TOKEN)

exit codes: 0 ok, 1 server or network error, 2 usage or a request the server refused (unknown job)`;

/** `matrixd status`: returns the exit code. */
export async function statusMain(argv: string[]): Promise<number> {
  const { values: f } = parseCommand("status", argv, {
    ...API_FLAGS,
    job: { type: "string" },
    json: { type: "boolean" },
  });
  if (f.help) {
    console.log(STATUS_HELP);
    return 0;
  }
  const api = apiClient(f);
  try {
    if (f.job !== undefined) {
      const job = await api.job(f.job);
      console.log(f.json ? JSON.stringify(job, null, 2) : [formatJob(job), ...failureSummary(job.failures, job.ok, job.failed, 10).reasons].join("\n"));
      return 0;
    }
    const [cluster, jobs] = await Promise.all([api.cluster(), api.jobs()]);
    if (f.json) {
      console.log(JSON.stringify({ node: cluster.node, members: cluster.members, jobs }, null, 2));
      return 0;
    }
    // The real limit of LLM work is each node's shared LLM slot group, not the sum of its roles' slots.
    let slots = 0;
    let busy = 0;
    for (const m of cluster.members) {
      const g = m.groups?.llm;
      if (g) {
        slots += g.slots;
        busy += g.busy;
      }
    }
    const live = jobs.filter((j) => j.state === "running");
    console.log(
      `cluster seen from ${cluster.node} (${api.server}): ${cluster.members.length} member${cluster.members.length === 1 ? "" : "s"}` +
        (slots > 0 ? `, LLM slots ${busy.toLocaleString("en-US")} busy of ${slots.toLocaleString("en-US")}` : "") +
        `; ${jobs.length} job${jobs.length === 1 ? "" : "s"}, ${live.length} running\n`,
    );
    // While jobs run, only their workflows' roles are listed (the others are counted); with none, every role.
    console.log(membersTable(cluster.members, Date.now(), live.length > 0 ? new Set(live.map((j) => j.workflow)) : undefined));
    if (jobs.length > 0) console.log(`\n${jobsTable(jobs)}`);
    return 0;
  } catch (err) {
    if (!(err instanceof ApiError)) throw err;
    process.stderr.write(`matrixd status: ${err.message}\n`);
    return err.exitCode;
  }
}
