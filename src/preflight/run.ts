import { ConfigError } from "../errors.ts";
import type { Check, CheckResult } from "./types.ts";

const warned = new Set<string>();

/** Run checks in parallel; their results in the order of the checks. */
export async function runChecks(checks: readonly Check[]): Promise<CheckResult[]> {
  const all = await Promise.all(checks.map(async (c) => c()));
  return all.flat();
}

/**
 * A command's checks before it admits a task: each warning is a line on
 * stderr, and the first failure stops it (exit 2) with its one line.
 *
 * @throws ConfigError with the first failure's message
 */
export async function preflight(command: string, checks: readonly Check[], warn: (line: string) => void = (l) => process.stderr.write(`${l}\n`)): Promise<CheckResult[]> {
  const results = await runChecks(checks);
  const failed = results.filter((r) => r.status === "fail");
  for (const r of results) {
    // checked again once supervised servers started, an endpoint is warned of once
    if (r.status !== "warn" || warned.has(r.message)) continue;
    warned.add(r.message);
    warn(`matrixd ${command}: warning: ${r.message}`);
  }
  const [first] = failed;
  if (first) {
    const more = failed.length - 1;
    throw new ConfigError(more > 0 ? `${first.message} (and ${more} more: see matrixd check)` : first.message);
  }
  return results;
}

const WORDS = { ok: "ok", warn: "warning", fail: "failed" } as const;

/** One line per result, as `matrixd check` prints them. */
export function formatResult(r: CheckResult): string {
  return `${WORDS[r.status].padEnd(8)}${r.check.padEnd(14)}${r.message}`;
}
