// The pure-JS build: the native string extractor mis-decodes long non-ASCII strings under Bun.
import { Encoder } from "cbor-x/encode";
import type { z } from "zod";
import { CodecError } from "../errors.ts";
import { TaskStateSchema, type TaskState } from "./task.ts";

const cbor = new Encoder({ useRecords: false, tagUint8Array: false });

/** Encode any wire value as CBOR. */
export function encode(value: unknown): Uint8Array {
  return cbor.encode(value);
}

/**
 * Decode CBOR bytes and validate them against a schema: the one place where
 * wire bytes become typed values. Throws CodecError naming what is wrong.
 */
export function decodeWith<T>(schema: z.ZodType<T>, bytes: Uint8Array, what: string): T {
  let raw: unknown;
  try {
    raw = cbor.decode(bytes);
  } catch (err) {
    throw new CodecError(`cannot decode ${what}: not valid CBOR (${bytes.length} bytes: ${(err as Error).message})`, {
      cause: err,
    });
  }
  const parsed = schema.safeParse(raw);
  if (!parsed.success) throw new CodecError(`invalid ${what}: ${formatIssues(parsed.error)}`);
  return parsed.data;
}

export function encodeTask(state: TaskState): Uint8Array {
  return encode(state);
}

export function decodeTask(bytes: Uint8Array): TaskState {
  return decodeWith(TaskStateSchema, bytes, "task message");
}

/** `"history.3.role" must be a string; ...` from a zod error. */
export function formatIssues(error: z.ZodError, max = 3): string {
  const parts = error.issues.slice(0, max).map((i) => {
    const path = i.path.length ? `"${i.path.map(String).join(".")}"` : "value";
    return `${path}: ${i.message}`;
  });
  if (error.issues.length > max) parts.push(`and ${error.issues.length - max} more`);
  return parts.join("; ");
}
