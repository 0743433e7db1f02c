/** True for a plain object (not null, not an array): what a JSON object parses to. */
export function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}
