import { type Stats, statSync } from "node:fs";
import { parseArgs, type ParseArgsConfig } from "node:util";
import { ApiClient, DEFAULT_SERVER } from "../src/api/client.ts";
import { UsageError } from "../src/errors.ts";

type Options = NonNullable<ParseArgsConfig["options"]>;

/**
 * parseArgs with strict checking, its errors turned into one-line UsageErrors.
 * A negative number after a flag that takes a value is that value
 * (`--concurrency -3` is `--concurrency=-3`, for the flag's own check to
 * name), where parseArgs alone calls it "ambiguous".
 */
export function parseCommand<O extends Options>(command: string, argv: string[], options: O, positionals = false) {
  try {
    return parseArgs({ args: joinNegatives(argv, options), options, strict: true, allowPositionals: positionals });
  } catch (err) {
    const msg = (err as Error).message.split("\n")[0] ?? String(err);
    throw new UsageError(`${msg} (see matrixd ${command} --help)`);
  }
}

function joinNegatives(argv: string[], options: Options): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string;
    if (a === "--") return [...out, ...argv.slice(i)];
    const next = argv[i + 1];
    const name = a.startsWith("--") ? a.slice(2) : undefined;
    if (name && options[name]?.type === "string" && next !== undefined && /^-\d/.test(next)) {
      out.push(`${a}=${next}`);
      i++;
    } else out.push(a);
  }
  return out;
}

/** A whole number from a flag (positive by default), or a UsageError naming the flag. */
export function intFlag(name: string, value: string | undefined, min = 1): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min || value.trim() === "") {
    const want = min === 1 ? "a positive integer" : min === 0 ? "a whole number >= 0" : "a whole number";
    throw new UsageError(`--${name} must be ${want}, not ${value}`);
  }
  return n;
}

/** A finite number from a flag, or a UsageError naming the flag. */
export function numFlag(name: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isFinite(n) || value.trim() === "") throw new UsageError(`--${name} must be a number, not ${value}`);
  return n;
}

/** The flags every node-starting command takes (`run`, `join`): services, config, plugins, logging. */
export const NODE_FLAGS = {
  llm: { type: "string", multiple: true },
  supervise: { type: "string", multiple: true },
  env: { type: "string" },
  config: { type: "string" },
  plugin: { type: "string", multiple: true },
  "log-level": { type: "string" },
  "log-file": { type: "string" },
  help: { type: "boolean", short: "h" },
} as const;

/** A seed file given on the command line: there, a file, and with at least one non-blank line; else a UsageError naming it. */
export async function checkSeedFile(path: string): Promise<void> {
  let st: Stats;
  try {
    st = statSync(path);
  } catch {
    throw new UsageError(`seed file ${path} does not exist`);
  }
  if (!st.isFile()) throw new UsageError(`seed file ${path} is not a file`);
  try {
    for await (const chunk of Bun.file(path).stream()) {
      // anything but whitespace is a line to read: the file is not empty
      for (const b of chunk) if (b !== 32 && b !== 9 && b !== 10 && b !== 13) return;
    }
  } catch (err) {
    const code = err instanceof Error && "code" in err ? ` (${String(err.code)})` : "";
    throw new UsageError(`seed file ${path} cannot be read${code}`);
  }
  throw new UsageError(`seed file ${path} is empty`);
}

/** The flags of every command that talks to a node's HTTP API. */
export const API_FLAGS = {
  server: { type: "string" },
  token: { type: "string" },
  help: { type: "boolean", short: "h" },
} as const;

/** The API client of `--server` (else $MATRIXD_SERVER, else the default) and `--token` (else $MATRIXD_TOKEN). */
export function apiClient(f: { server?: string | undefined; token?: string | undefined }): ApiClient {
  return new ApiClient({ server: f.server ?? process.env.MATRIXD_SERVER ?? DEFAULT_SERVER, token: f.token ?? process.env.MATRIXD_TOKEN });
}
