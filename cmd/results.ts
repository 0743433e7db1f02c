import { renameSync, rmSync } from "node:fs";
import { type ApiClient, ApiError } from "../src/api/client.ts";
import { WholeLines } from "../src/api/ndjson.ts";
import { describe, UsageError } from "../src/errors.ts";
import { apiClient, API_FLAGS, parseCommand } from "./args.ts";
import { followTo } from "./follow.ts";

export const RESULTS_HELP = `matrixd results: a job's dataset (NDJSON, one row per task), from any node

usage: matrixd results ID [--out FILE] [--server URL] [--token T]
       matrixd results ID --follow --out FILE [--server URL] [--token T]

  ID             the job (as matrixd submit printed it, or from matrixd jobs)
  --out FILE     write the dataset to FILE (through FILE.part, renamed once whole);
                 default: stdout
  --follow       write the rows to FILE as they are stored, made durable in batches, with
                 FILE.pos saying how far; run again with the same FILE (after a stop, a crash,
                 kill -9) it carries on from there, each row once. Ends when the job has ended
                 and every row is written. A job submitted with --purge-followed drops from
                 NATS the rows written this way
  --server URL   any node's HTTP API (default $MATRIXD_SERVER, else http://127.0.0.1:7420)
  --token T      bearer token of the API (default $MATRIXD_TOKEN)

A job still running is followed until it ends. When the node stops answering, the
download goes on through another member, from the row it had reached.
exit codes: 0 whole dataset, 1 server or network error (or the dataset is short of the job's
            rows), 2 usage or a request the server refused (unknown job)`;

/** `matrixd results`: returns the exit code. */
export async function resultsMain(argv: string[]): Promise<number> {
  const { values: f, positionals } = parseCommand("results", argv, { ...API_FLAGS, out: { type: "string" }, follow: { type: "boolean" } }, true);
  if (f.help) {
    console.log(RESULTS_HELP);
    return 0;
  }
  const [id] = positionals;
  if (positionals.length !== 1 || id === undefined) throw new UsageError("give exactly one job id (see matrixd results --help)");
  if (f.follow && !f.out) throw new UsageError("--follow needs --out FILE (the file it carries on from when run again)");
  const api = apiClient(f);
  try {
    await api.learnMembers();
    if (f.follow && f.out) {
      const rows = await followTo(api, id, f.out);
      process.stderr.write(`job ${id}: ${rows.toLocaleString("en-US")} rows in ${f.out}\n`);
      return 0;
    }
    const rows = f.out ? await downloadTo(api, id, f.out) : await download(api, id, stdoutSink());
    if (f.out) process.stderr.write(`job ${id}: ${rows.toLocaleString("en-US")} rows written to ${f.out}\n`);
    return 0;
  } catch (err) {
    if (!(err instanceof ApiError)) throw err;
    process.stderr.write(`matrixd results: ${err.message}\n`);
    return err.exitCode;
  }
}

/** Where downloaded rows go. */
interface RowSink {
  write(bytes: Uint8Array): void | Promise<void>;
  end(): void | Promise<void>;
}

function stdoutSink(): RowSink {
  const w = Bun.stdout.writer();
  return { write: (b) => void w.write(b), end: async () => void (await w.flush()) };
}

/** Download into `out` through `out.part`, renamed once whole (a cut download never looks whole); its rows. */
export async function downloadTo(api: ApiClient, id: string, out: string, say?: (text: string) => void): Promise<number> {
  const part = `${out}.part`;
  const w = Bun.file(part).writer();
  try {
    const rows = await download(api, id, { write: (b) => void w.write(b), end: async () => void (await w.end()) }, say);
    renameSync(part, out);
    return rows;
  } catch (err) {
    await Promise.resolve(w.end()).catch(() => {});
    rmSync(part, { force: true });
    throw err;
  }
}

const NL = 10;

/**
 * Stream a job's dataset into `sink`, whole rows only; returns the rows
 * written. When the stream breaks off (the node died) the download starts
 * again, through another member if the node is gone, and skips the rows
 * already written: every node reads a job's rows from the same stream in
 * its order (the rows stream's sequence), so the first N rows are the same
 * from any node. Once the job has ended, the rows must add up to its
 * counts, or the download is tried again.
 */
export async function download(api: ApiClient, id: string, sink: RowSink, say: (text: string) => void = (t) => process.stderr.write(t)): Promise<number> {
  let written = 0;
  let writeError: unknown;
  const onSwitch = (from: string, to: string) => say(`${from} stopped answering; carrying on through ${to}\n`);
  for (let attempt = 1; ; attempt++) {
    let skip = written;
    const lines = new WholeLines();
    try {
      const body = await api.failover(() => api.results(id), { onSwitch });
      try {
        for await (const chunk of body) {
          const data = lines.push(chunk);
          if (data === undefined) continue;
          let start = 0;
          while (skip > 0 && start < data.length) {
            start = data.indexOf(NL, start) + 1;
            skip--;
          }
          if (start >= data.length) continue;
          const whole = data.subarray(start);
          for (const b of whole) if (b === NL) written++;
          try {
            await sink.write(whole);
          } catch (err) {
            writeError = err;
            throw err;
          }
        }
      } catch (err) {
        // the sink failing (disk full, a closed pipe) is not the download breaking off: no try again
        if (writeError !== undefined) throw writeError;
        throw new ApiError(0, `dataset download from ${api.server} broke off after ${written} rows: ${describe(err)}`, undefined, { cause: err });
      }
      // every row the API sends ends with its newline: a row without one was cut short
      if (lines.pending > 0) throw new ApiError(0, `dataset download from ${api.server} ended inside a row after ${written} rows`);
      const st = await api.failover(() => api.job(id), { onSwitch });
      const expected = st.ok + st.failed;
      if (st.state !== "running" && written >= expected) {
        await sink.end();
        return written;
      }
      // a stream that ended before the job did, or short of its rows, was cut: read the rest
      if (attempt >= 5) throw new ApiError(0, `the dataset has ${written} rows but the job ${st.state === "running" ? "is still running" : `counts ${expected}`}`);
      if (st.state === "running") await new Promise((r) => setTimeout(r, 1000));
      else say(`the dataset from ${api.server} ended after ${written} of ${expected} rows; reading the rest again\n`);
    } catch (err) {
      if (!(err instanceof ApiError) || err.status !== 0 || attempt >= 5) throw err;
      say(`${err.message}; reading the rest again\n`);
    }
  }
}
