import { existsSync, readFileSync } from "node:fs";
import { parse as parseYaml } from "yaml";
import type { z } from "zod";
import { ConfigError } from "../errors.ts";

/** One line naming the first problems of a zod error, keys spelled as dotted paths. */
export function configIssues(error: z.ZodError, max = 3): string {
  const parts: string[] = [];
  for (const issue of error.issues.slice(0, max)) {
    const path = issue.path.map(String).join(".");
    if (issue.code === "unrecognized_keys") {
      const keys = (issue as { keys: string[] }).keys.map((k) => `"${path ? `${path}.` : ""}${k}"`);
      parts.push(`unknown key${keys.length > 1 ? "s" : ""} ${keys.join(", ")}`);
    } else {
      parts.push(`${path ? `"${path}"` : "value"}: ${issue.message}`);
    }
  }
  if (error.issues.length > max) parts.push(`and ${error.issues.length - max} more`);
  return parts.join("; ");
}

/** Validate a value with a schema, or throw ConfigError prefixed by `where`. */
export function validate<T>(schema: z.ZodType<T>, value: unknown, where: string): T {
  const parsed = schema.safeParse(value);
  if (!parsed.success) throw new ConfigError(`${where}: ${configIssues(parsed.error)}`);
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
