import { builtinWorkflows } from "../plugins/index.ts";
import { type ApiClient, ApiError, DEFAULT_SERVER } from "../src/api/client.ts";
import { formatJob, formatJobProgress } from "../src/api/format.ts";
import { readConfigFile, validate } from "../src/config/load.ts";
import { JobConfigSchema } from "../src/config/run.ts";
import { failureSummary } from "../src/engine/failures.ts";
import { UsageError } from "../src/errors.ts";
import { LiveLine } from "../src/log.ts";
import { loadPlugin, Registry } from "../src/plugin/registry.ts";
import { checkOutPath, checkServer, preflight } from "../src/preflight/index.ts";
import { type JobStatus, SUBMIT_SETTING_KEYS } from "../src/protocol/job.ts";
import { isWorkflowFile, type LoadedWorkflow, loadWorkflowFile, WorkflowError } from "../src/workflow/index.ts";
import { API_FLAGS, apiClient, checkSeedFile, intFlag, parseCommand } from "./args.ts";
import { downloadTo } from "./results.ts";
import { followTo } from "./follow.ts";
import { handleSignals } from "./signals.ts";
import { sleep } from "../src/util/wait.ts";

export const SUBMIT_HELP = `matrixd submit: send a seed file to a cluster node as a job

usage: matrixd submit --server URL --workflow NAME FILE.jsonl [--wait] [--out FILE] [--config FILE]
                      [--token T] [--plugin PATH ...] [--purge-followed]
       matrixd submit --server URL --retry-failed JOB_ID [--wait] [--out FILE] [--token T]

  --server URL         any node's HTTP API (default $MATRIXD_SERVER, else ${DEFAULT_SERVER})
  --workflow NAME      workflow to run (default: "workflow" of --config): one the nodes have, by
                       name, or a workflow file (FILE.yaml, .yml, .json), checked here first (as
                       matrixd check does) and sent with the job: the nodes need no restart
                       and no plugin to run it
  --plugin PATH        workflows a 'ts' role of the workflow file names, for the check here
                       (the nodes must have them too); repeatable
  FILE.jsonl           seed rows, one JSON object per line; sent as it is read
  --wait               show progress until the job ends (a live line on a terminal), then the
                       most common failure reasons; when the node stops answering, the wait
                       (and the download) go on through another member of the cluster
  --out FILE           wait, then write the dataset (JSONL, one row per task) to FILE
  --config FILE        YAML or JSON job settings, as for matrixd run; the job's own keys
                       (options, trials, seed, maxSteps, concurrency, stepRetries, job) are sent
  --purge-followed     the job's rows leave NATS once a follower (matrixd results ID --follow
                       --out FILE, or --out here) has written them: a large job does not keep
                       its dataset on the NATS servers (job setting purgeRows: "followed")
  --retry-failed ID    run again the tasks of the ended job ID whose rows are failed: their seeds
                       go back through admission and each new row replaces the failed one (one
                       row per task still); the job runs again and ends again. Refused (exit 2)
                       for a job still running, cancelled or stopped at its budget, or unknown
                       (purged); a job with no failed row is said so (exit 0)
  --token T            bearer token of the API (default $MATRIXD_TOKEN)
  --progress-every S   seconds between progress lines when not on a terminal (default 10)

Before a seed is sent, the server must answer and a workflow given by name must be hosted by some
member of the cluster (GET /v1/cluster); else exit 2 with one line naming the server or workflow.

prints the job id on stdout; progress and the summary go to stderr.
exit codes: 0 done, 1 job cancelled or every task failed or a server/network error,
            2 usage, config or a request the server refused (bad seeds: each bad line is named;
            a workflow file with problems: each is listed, and nothing is sent)`;

/** The job settings of a config file, as the server takes them, and the keys left out. */
function jobSettings(path: string): { workflow?: string; settings: Record<string, unknown>; dropped: string[] } {
  const raw = readConfigFile(path);
  // The same file works for `run` and `submit`: check it whole, send only the job's part.
  const config = validate(JobConfigSchema, raw, `config ${path}`);
  // Only the keys the file gives are sent (the server fills in the rest), as the file has them.
  const given: [string, unknown][] = typeof raw === "object" && raw !== null ? Object.entries(raw) : [];
  const settings: Record<string, unknown> = {};
  const dropped: string[] = [];
  for (const [k, v] of given) {
    if (SUBMIT_SETTING_KEYS.includes(k)) settings[k] = v;
    else dropped.push(k);
  }
  return { workflow: config.workflow, settings, dropped };
}

/** `matrixd submit`: returns the exit code. */
export async function submitMain(argv: string[]): Promise<number> {
  const { values: f, positionals } = parseCommand(
    "submit",
    argv,
    {
      ...API_FLAGS,
      workflow: { type: "string" },
      wait: { type: "boolean" },
      out: { type: "string" },
      config: { type: "string" },
      plugin: { type: "string", multiple: true },
      "progress-every": { type: "string" },
      "purge-followed": { type: "boolean" },
      "retry-failed": { type: "string" },
    },
    true,
  );
  if (f.help) {
    console.log(SUBMIT_HELP);
    return 0;
  }
  const retryOf = f["retry-failed"];
  if (retryOf !== undefined) {
    if (positionals.length > 0 || f.workflow !== undefined || f.config !== undefined) {
      throw new UsageError("--retry-failed takes a job id and no seed file, --workflow or --config (see matrixd submit --help)");
    }
    return retryMain(apiClient(f), retryOf, f);
  }
  const [seedFile] = positionals;
  if (positionals.length !== 1 || seedFile === undefined) throw new UsageError("give exactly one seed file (see matrixd submit --help)");
  await checkSeedFile(seedFile);
  const every = intFlag("progress-every", f["progress-every"]) ?? 10;
  const cfg = f.config ? jobSettings(f.config) : { settings: {}, dropped: [] };
  if (cfg.dropped.length > 0) {
    process.stderr.write(`config ${f.config}: node settings not sent with the job: ${cfg.dropped.join(", ")}\n`);
  }
  const workflow = f.workflow ?? cfg.workflow;
  if (!workflow) throw new UsageError("--workflow is required");
  if (cfg.settings.workflow !== undefined && cfg.settings.workflow !== workflow) delete cfg.settings.workflow;
  if (f["purge-followed"]) cfg.settings.purgeRows = "followed";
  let file: LoadedWorkflow | undefined;
  if (isWorkflowFile(workflow)) {
    const registry = new Registry(builtinWorkflows);
    for (const p of f.plugin ?? []) for (const w of await loadPlugin(p)) registry.add(w);
    try {
      file = loadWorkflowFile(workflow, { workflows: (n) => registry.find(n) });
    } catch (err) {
      if (!(err instanceof WorkflowError)) throw err;
      process.stderr.write(`matrixd submit: ${err.message}\n`);
      return 2;
    }
    // The job is for the definition: a file path in the config means it.
    delete cfg.settings.workflow;
  } else if (workflow.includes("/")) throw new UsageError(`--workflow ${workflow}: a workflow file ends in .yaml, .yml or .json`);

  const api = apiClient(f);
  // a file workflow was checked above; a named one must be hosted somewhere
  const out = f.out;
  await preflight("submit", [() => checkServer(api, file ? undefined : workflow), ...(out !== undefined ? [() => checkOutPath(out)] : [])]);
  const tty = process.stderr.isTTY === true;
  const live = tty ? new LiveLine(process.stderr) : undefined;
  const say = (text: string) => (live ? live.write(text) : process.stderr.write(text));
  try {
    // Bun sends a file body as it reads it, with its length: the server can refuse an oversized one at once.
    const seeds = Bun.file(seedFile);
    const { id, total } = file ? await api.submitDefinition(file.definition, seeds, cfg.settings) : await api.submit(workflow, seeds, cfg.settings);
    console.log(id);
    if (!f.wait && !f.out) {
      process.stderr.write(`job ${id}: ${total.toLocaleString("en-US")} tasks submitted to ${api.server}\n`);
      return 0;
    }
    return await waitAndFetch(api, id, { every, out: f.out, live, say, followed: f["purge-followed"] === true });
  } catch (err) {
    if (!(err instanceof ApiError)) throw err;
    live?.clear();
    process.stderr.write(`matrixd submit: ${err.message}\n`);
    return err.exitCode;
  }
}

/** `matrixd submit --retry-failed ID`: the failed tasks of an ended job run again. */
async function retryMain(api: ApiClient, id: string, f: { wait?: boolean; out?: string; "progress-every"?: string }): Promise<number> {
  const every = intFlag("progress-every", f["progress-every"]) ?? 10;
  const out = f.out;
  if (out !== undefined) await preflight("submit", [() => checkOutPath(out)]);
  const live = process.stderr.isTTY === true ? new LiveLine(process.stderr) : undefined;
  const say = (text: string) => (live ? live.write(text) : process.stderr.write(text));
  try {
    const r = await api.retryFailed(id);
    console.log(id);
    if (r.tasks === 0) {
      process.stderr.write(`job ${id} has no failed row: nothing runs again\n`);
      return 0;
    }
    process.stderr.write(`job ${id}: its ${r.tasks.toLocaleString("en-US")} failed tasks run again (round ${r.round}) on ${api.server}\n`);
    if (!f.wait && out === undefined) return 0;
    return await waitAndFetch(api, id, { every, out, live, say });
  } catch (err) {
    if (!(err instanceof ApiError)) throw err;
    live?.clear();
    process.stderr.write(`matrixd submit: ${err.message}\n`);
    return err.exitCode;
  }
}

/** Follow a job until it ends, say how it went, and write its dataset to `out` if given; the exit code. */
async function waitAndFetch(
  api: ApiClient,
  id: string,
  o: { every: number; out: string | undefined; live: LiveLine | undefined; say: (text: string) => void; followed?: boolean },
): Promise<number> {
  // the other members, while this node answers: the job goes on without it, and so does this wait
  await api.learnMembers();
  const final = await follow(api, id, o.every, o.live, o.say);
  const { allFailed, reasons } = failureSummary(final.failures, final.ok, final.failed);
  process.stderr.write(`${[...(allFailed ? [allFailed] : []), formatJob(final), ...reasons].join("\n")}\n`);
  let code = final.state === "cancelled" || (final.ok === 0 && final.failed > 0) ? 1 : 0;
  if (o.out) {
    // A job that hands its rows over is read as a follower does (FILE.pos beside FILE), the rows leaving NATS.
    const rows = o.followed ? await followTo(api, id, o.out, o.say) : await downloadTo(api, id, o.out, o.say);
    const expected = final.ok + final.failed;
    process.stderr.write(`  dataset: ${o.out} (${rows.toLocaleString("en-US")} rows)\n`);
    if (rows !== expected) {
      process.stderr.write(`  the dataset has ${rows} rows but the job counts ${expected}\n`);
      code = 1;
    }
  }
  return code;
}

/** No figure of a job moved for this long: the progress line says so instead of an ETA that no longer means anything. */
const STALL_MS = 5000;
/** How often the other members are asked for again while a job is followed. */
const MEMBERS_EVERY_MS = 10_000;

/**
 * Poll the job until it ends, showing progress: a live line on a terminal,
 * a line every `every` s otherwise. When the node stops answering, the
 * polls go on through another member.
 */
async function follow(api: ApiClient, id: string, every: number, live: LiveLine | undefined, say: (text: string) => void): Promise<JobStatus> {
  const offSignals = handleSignals({
    graceful: () => {
      live?.clear();
      process.stderr.write(`job ${id} goes on in the cluster; see matrixd status --job ${id}\n`);
      process.exit(130);
    },
  });
  let lastLine = 0;
  let figures = "";
  let changedAt = Date.now();
  let membersAt = Date.now();
  const onSwitch = (from: string, to: string) => say(`${from} stopped answering; following job ${id} through ${to}\n`);
  try {
    for (;;) {
      const st = await api.failover(() => api.job(id), { onSwitch });
      if (st.state !== "running") {
        live?.clear();
        return st;
      }
      const now = Date.now();
      const key = [st.ok, st.failed, st.running, st.queued, st.promptTokens + st.completionTokens].join(",");
      if (key !== figures) {
        figures = key;
        changedAt = now;
      }
      const line = formatJobProgress(st, now, now - changedAt >= STALL_MS ? now - changedAt : 0);
      if (live) live.show(line);
      else if (now - lastLine >= every * 1000) {
        process.stderr.write(`${new Date().toISOString()} ${line}\n`);
        lastLine = now;
      }
      if (now - membersAt >= MEMBERS_EVERY_MS) {
        membersAt = now;
        await api.learnMembers();
      }
      await sleep(live ? 500 : Math.min(1000, every * 1000));
    }
  } finally {
    offSignals();
  }
}
