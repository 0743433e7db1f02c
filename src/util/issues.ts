import type { z } from "zod";

/**
 * One line naming the first `max` problems of a zod error, each at its
 * dotted path (`"history.3.role": expected string; unknown key "llm.urll"`),
 * with how many more there are.
 */
export function formatIssues(error: z.ZodError, max = 3): string {
  const parts: string[] = [];
  for (const issue of error.issues.slice(0, max)) {
    const path = issue.path.map(String).join(".");
    if (issue.code === "unrecognized_keys") {
      const keys = issue.keys.map((k) => `"${path ? `${path}.` : ""}${k}"`);
      parts.push(`unknown key${keys.length > 1 ? "s" : ""} ${keys.join(", ")}`);
    } else {
      parts.push(`${path ? `"${path}"` : "value"}: ${issue.message}`);
    }
  }
  if (error.issues.length > max) parts.push(`and ${error.issues.length - max} more`);
  return parts.join("; ");
}
