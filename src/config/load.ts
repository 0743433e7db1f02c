import { existsSync, readFileSync } from "node:fs";
import { parse as parseYaml } from "yaml";
import type { z } from "zod";
import { ConfigError } from "../errors.ts";
import { formatIssues } from "../util/issues.ts";

/** Validate a value with a schema, or throw ConfigError prefixed by `where`. */
export function validate<T>(schema: z.ZodType<T>, value: unknown, where: string): T {
  const parsed = schema.safeParse(value);
  if (!parsed.success) throw new ConfigError(`${where}: ${formatIssues(parsed.error)}`);
  return parsed.data;
}

/** Read a YAML or JSON file (by extension; YAML is a superset, so anything else reads as YAML). */
export function readConfigFile(path: string): unknown {
  if (!existsSync(path)) throw new ConfigError(`config file ${path} does not exist`);
  const text = readFileSync(path, "utf8");
  try {
    return path.endsWith(".json") ? JSON.parse(text) : (parseYaml(text) ?? {});
  } catch (err) {
    throw new ConfigError(`config file ${path} cannot be parsed: ${(err as Error).message.split("\n")[0]}`);
  }
}
