import { createHash } from "node:crypto";
import { z } from "zod";
import { CodecError } from "../errors.ts";

/**
 * Claim checks: the large texts of a message kept elsewhere (the NATS
 * object store), the message carrying for each where it was in the value,
 * the object's name, its size and its SHA-256. In the message the text's
 * place holds an empty string, so the value keeps its schema and is
 * validated as usual; the texts are put back after it is.
 */
export const ClaimSchema = z.object({
  /** keys and indexes from the value's root to the text */
  path: z.array(z.union([z.string(), z.number().int().nonnegative()])).min(1),
  /** the object's name in its bucket */
  name: z.string().min(1),
  /** UTF-8 bytes of the text */
  size: z.number().int().nonnegative(),
  /** SHA-256 of those bytes, base64url */
  sha256: z.string().length(43),
});
export type Claim = z.infer<typeof ClaimSchema>;

/** A text taken out of a value, with its claim. */
export interface Taken {
  claim: Claim;
  text: string;
}

/** What a claim says of a text: its SHA-256 (base64url) and UTF-8 size. */
export type Digest = (text: string) => { sha256: string; size: number };

type Path = (string | number)[];

const utf8 = new TextEncoder();

/** SHA-256 of bytes, base64url (43 characters). */
export function digestOf(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("base64url");
}

/** A text's digest, computed. */
export const digestText: Digest = (text) => {
  const bytes = utf8.encode(text);
  return { sha256: digestOf(bytes), size: bytes.length };
};

/** UTF-8 bytes of a string, computed only when its length leaves it in doubt. */
function atLeast(s: string, bytes: number): boolean {
  // a UTF-16 unit is 1 to 3 UTF-8 bytes (a surrogate pair 4 for 2)
  if (s.length >= bytes) return true;
  if (s.length * 3 < bytes) return false;
  return Buffer.byteLength(s, "utf8") >= bytes;
}

/** Every string of at least `minBytes` in a value, with its path (plain objects and arrays only). */
function largeStrings(v: unknown, minBytes: number, path: Path, out: { path: Path; text: string }[]): void {
  if (typeof v === "string") {
    if (path.length > 0 && atLeast(v, minBytes)) out.push({ path: [...path], text: v });
  } else if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) {
      path.push(i);
      largeStrings(v[i], minBytes, path, out);
      path.pop();
    }
  } else if (v !== null && typeof v === "object" && !(v instanceof Uint8Array)) {
    for (const k of Object.keys(v)) {
      path.push(k);
      largeStrings((v as Record<string, unknown>)[k], minBytes, path, out);
      path.pop();
    }
  }
}

/** A copy of `v` with the strings at `paths` emptied; only the objects on those paths are copied, `v` is left as it is. */
function emptied<T>(v: T, paths: readonly Path[]): T {
  const root: { v: unknown } = { v };
  const copied = new Set<unknown>();
  for (const path of paths) {
    let parent: Record<string | number, unknown> = root as Record<string, unknown>;
    let key: string | number = "v";
    for (const step of path) {
      let child = parent[key];
      if (!copied.has(child)) {
        child = Array.isArray(child) ? [...child] : { ...(child as object) };
        copied.add(child);
        parent[key] = child;
      }
      parent = child as Record<string | number, unknown>;
      key = step;
    }
    parent[key] = "";
  }
  return root.v as T;
}

/**
 * Take the large texts out of a value: every string of at least `minBytes`
 * UTF-8 bytes, anywhere in it. `name` gives each text's object name from
 * its digest (`digest` may remember those of texts seen before). Returns
 * the value with those strings emptied (a copy along their paths; the
 * value given is not changed) and what was taken.
 */
export function takeLarge<T>(value: T, minBytes: number, name: (sha256: string) => string, digest: Digest = digestText): { value: T; taken: Taken[] } {
  const found: { path: Path; text: string }[] = [];
  largeStrings(value, Math.max(1, minBytes), [], found);
  if (found.length === 0) return { value, taken: [] };
  const taken = found.map(({ path, text }) => {
    const { sha256, size } = digest(text);
    return { claim: { path, name: name(sha256), size, sha256 }, text };
  });
  return { value: emptied(value, found.map((f) => f.path)), taken };
}

/** Check fetched bytes against their claim: a clear error naming the object when they are not what was stored. */
export function checkClaim(claim: Claim, bytes: Uint8Array, where: string): void {
  if (bytes.length !== claim.size) {
    throw new CodecError(`object "${claim.name}" in ${where} has ${bytes.length} bytes, its reference says ${claim.size}`);
  }
  const got = digestOf(bytes);
  if (got !== claim.sha256) throw new CodecError(`object "${claim.name}" in ${where} does not match its reference: sha256 ${got}, expected ${claim.sha256}`);
}

/** Fetched bytes as the text of their claim: checked against it, then decoded. */
export function textOf(claim: Claim, bytes: Uint8Array, where: string): string {
  checkClaim(claim, bytes, where);
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch (err) {
    throw new CodecError(`object "${claim.name}" in ${where} is not UTF-8 text`, { cause: err });
  }
}

/**
 * Put texts back into a value decoded with claims (it is changed in place):
 * each claim's path must lead to an emptied string. The texts are the
 * claims' own (see {@link textOf}).
 */
export function putBack(value: unknown, parts: readonly Taken[], where: string): void {
  for (const { claim, text } of parts) {
    let parent: unknown = value;
    for (let i = 0; i < claim.path.length - 1; i++) parent = step(parent, claim.path[i] as string | number);
    const last = claim.path[claim.path.length - 1] as string | number;
    if (step(parent, last) !== "") throw new CodecError(`the reference to object "${claim.name}" in ${where} points at ${claim.path.join(".")}, which holds no emptied text`);
    (parent as Record<string | number, unknown>)[last] = text;
  }
}

function step(v: unknown, key: string | number): unknown {
  if (Array.isArray(v) && typeof key === "number") return v[key];
  if (v !== null && typeof v === "object" && !Array.isArray(v) && typeof key === "string" && Object.hasOwn(v, key)) return (v as Record<string, unknown>)[key];
  return undefined;
}
