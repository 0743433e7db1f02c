import { ApiError, DEFAULT_SERVER } from "../src/api/client.ts";
import { UsageError } from "../src/errors.ts";
import { API_FLAGS, apiClient, parseCommand } from "./args.ts";

export const CANCEL_HELP = `matrixd cancel: cancel a job (no new tasks; its rows so far stay)

usage: matrixd cancel ID [--purge] [--server URL] [--token T]

  ID             the job
  --purge        also drop the job and its dataset for good
  --server URL   any node's HTTP API (default $MATRIXD_SERVER, else ${DEFAULT_SERVER})
  --token T      bearer token of the API (default $MATRIXD_TOKEN)

exit codes: 0 cancelled (or purged), 1 server or network error,
            2 usage or a request the server refused (unknown job)`;

/** `matrixd cancel`: returns the exit code. */
export async function cancelMain(argv: string[]): Promise<number> {
  const { values: f, positionals } = parseCommand("cancel", argv, { ...API_FLAGS, purge: { type: "boolean" } }, true);
  if (f.help) {
    console.log(CANCEL_HELP);
    return 0;
  }
  const [id] = positionals;
  if (positionals.length !== 1 || id === undefined) throw new UsageError("give exactly one job id (see matrixd cancel --help)");
  const api = apiClient(f);
  try {
    const state = await api.cancel(id, f.purge === true);
    process.stderr.write(`job ${id}: ${state}\n`);
    return 0;
  } catch (err) {
    if (!(err instanceof ApiError)) throw err;
    process.stderr.write(`matrixd cancel: ${err.message}\n`);
    return err.exitCode;
  }
}
