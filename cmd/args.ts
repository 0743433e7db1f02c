import { parseArgs, type ParseArgsConfig } from "node:util";
import { UsageError } from "../src/errors.ts";

type Options = NonNullable<ParseArgsConfig["options"]>;

/** parseArgs with strict checking, its errors turned into one-line UsageErrors. */
export function parseCommand<O extends Options>(command: string, argv: string[], options: O, positionals = false) {
  try {
    return parseArgs({ args: argv, options, strict: true, allowPositionals: positionals });
  } catch (err) {
    const msg = (err as Error).message.split("\n")[0] ?? String(err);
    throw new UsageError(`${msg} (see matrixd ${command} --help)`);
  }
}

/** A whole positive number from a flag, or a UsageError naming the flag. */
export function intFlag(name: string, value: string | undefined, min = 1): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min) throw new UsageError(`--${name} must be a whole number >= ${min}, got "${value}"`);
  return n;
}

/** A finite number from a flag, or a UsageError naming the flag. */
export function numFlag(name: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isFinite(n)) throw new UsageError(`--${name} must be a number, got "${value}"`);
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
  help: { type: "boolean", short: "h" },
} as const;
