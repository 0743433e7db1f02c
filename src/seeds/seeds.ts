import type { z } from "zod";

import { formatIssues } from "../util/issues.ts";

import { canonicalJson, hashHex } from "../util/hash.ts";
import { isRecord } from "../util/record.ts";


/** One seed line, parsed: either a valid seed with its id, or the reason it is not one. */
export type SeedLine =
  | { ok: true; line: number; id: string; seed: Record<string, unknown> }
  | { ok: false; line: number; id: string; seed: unknown; error: string };

/** The stable id of a seed: its `id` field, else a hash of its content. */
export function seedId(seed: Record<string, unknown>): string {
  const id = seed.id;
  if (typeof id === "string" && id.length > 0) return id;
  if (typeof id === "number" && Number.isFinite(id)) return String(id);
  return `s-${hashHex(canonicalJson(seed))}`;
}

/**
 * Parse one line of a seed file against a workflow's seed schema. Blank lines
 * return null. Every other line gives a SeedLine; bad lines name the reason.
 */
export function parseSeedLine(text: string, line: number, schema: z.ZodType<unknown>): SeedLine | null {
  if (text.trim().length === 0) return null;
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    return { ok: false, line, id: `line-${line}`, seed: text.slice(0, 2000), error: `seed line ${line}: not JSON (${(err as Error).message})` };
  }
  if (!isRecord(raw)) {
    return { ok: false, line, id: `line-${line}`, seed: raw, error: `seed line ${line}: must be a JSON object` };
  }
  const obj = raw;
  const idField = obj.id;
  if (idField !== undefined && !((typeof idField === "string" && idField.length > 0) || typeof idField === "number")) {
    return { ok: false, line, id: `line-${line}`, seed: raw, error: `seed line ${line}: "id" must be a non-empty string or a number` };
  }
  const id = seedId(obj);
  const parsed = schema.safeParse(raw);
  if (!parsed.success) {
    return { ok: false, line, id, seed: raw, error: `seed line ${line}: ${formatIssues(parsed.error)}` };
  }
  return { ok: true, line, id, seed: parsed.data as Record<string, unknown> };
}
