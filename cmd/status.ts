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
    let slots = 0;
    let busy = 0;
    for (const m of cluster.members) {
      for (const r of Object.values(m.roles)) {
        slots += r.slots;
        busy += r.busy;
      }
    }
    const running = jobs.filter((j) => j.state === "running").length;
    console.log(
      `cluster seen from ${cluster.node} (${api.server}): ${cluster.members.length} member${cluster.members.length === 1 ? "" : "s"}, ` +
        `${(slots - busy).toLocaleString("en-US")} of ${slots.toLocaleString("en-US")} slots free; ` +
        `${jobs.length} job${jobs.length === 1 ? "" : "s"}, ${running} running\n`,
    );
    console.log(membersTable(cluster.members));
    if (jobs.length > 0) console.log(`\n${jobsTable(jobs)}`);
    return 0;
  } catch (err) {
    if (!(err instanceof ApiError)) throw err;
    process.stderr.write(`matrixd status: ${err.message}\n`);
    return err.exitCode;
  }
}
