// The pure-JS build: the native string extractor mis-decodes long non-ASCII strings under Bun.
import { Encoder } from "cbor-x/encode";
import type { z } from "zod";
import { CodecError } from "../errors.ts";
import { TaskStateSchema, type TaskState } from "./task.ts";
import { formatIssues } from "../util/issues.ts";

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
