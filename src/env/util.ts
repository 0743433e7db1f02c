import { EnvError, TRUNCATED_MARKER } from "./types.ts";

/**
 * Check a path given to `put` or `get` and return its parts: relative to the
 * work folder, no `..`, no empty or `.` parts, no NUL.
 *
 * @throws EnvError "bad_path", e.g. `Bad environment path "/etc/passwd": must be relative to the work folder`
 */
export function splitWorkPath(path: string): string[] {
  const bad = (why: string) => new EnvError(`Bad environment path ${JSON.stringify(path)}: ${why}`, "bad_path");
  if (path.length === 0) throw bad("empty");
  if (path.length > 4096) throw bad("longer than 4096 characters");
  if (path.includes("\0")) throw bad("contains a NUL character");
  if (path.startsWith("/")) throw bad("must be relative to the work folder");
  const parts = path.split("/").filter((p) => p !== "" && p !== ".");
  if (parts.includes("..")) throw bad('must not contain ".."');
  if (parts.length === 0) throw bad("names the work folder itself");
  return parts;
}

/** Collects a stream's bytes up to a cap; past it, counts and drops. */
export class CappedOutput {
  private readonly chunks: Uint8Array[] = [];
  private kept = 0;
  private dropped = 0;

  constructor(private readonly cap: number) {}

  push(chunk: Uint8Array): void {
    const room = this.cap - this.kept;
    if (room <= 0) {
      this.dropped += chunk.byteLength;
      return;
    }
    const part = chunk.byteLength <= room ? chunk : chunk.subarray(0, room);
    this.chunks.push(part);
    this.kept += part.byteLength;
    this.dropped += chunk.byteLength - part.byteLength;
  }

  get truncated(): boolean {
    return this.dropped > 0;
  }

  bytes(): Uint8Array {
    return concatBytes(this.chunks, this.kept);
  }

  /** UTF-8 text, with {@link TRUNCATED_MARKER} when bytes were dropped. */
  text(): string {
    const text = new TextDecoder().decode(this.bytes());
    return this.truncated ? text + TRUNCATED_MARKER : text;
  }
}

export function concatBytes(chunks: readonly Uint8Array[], total?: number): Uint8Array {
  const size = total ?? chunks.reduce((n, c) => n + c.byteLength, 0);
  const out = new Uint8Array(size);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.byteLength;
  }
  return out;
}

export function toBytes(data: string | Uint8Array): Uint8Array {
  return typeof data === "string" ? new TextEncoder().encode(data) : data;
}

/** A short random id: 12 hex digits. */
export function newEnvId(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(6));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Runs async jobs one at a time, in the order they were queued. */
export class Serial {
  private tail: Promise<unknown> = Promise.resolve();

  run<T>(job: () => Promise<T>): Promise<T> {
    const next = this.tail.then(job, job);
    this.tail = next.catch(() => undefined);
    return next;
  }
}

/** Variables every exec starts from; the caller's `env` is laid over them. */
export function baseEnv(path: string): Record<string, string> {
  return { PATH: path, HOME: "/work", PWD: "/work", LANG: "C.UTF-8" };
}

/** Exit code reported for a command killed for a limit that itself exited 0. */
export const KILLED_EXIT_CODE = 137;

/** Exit code reported for a command stopped at its time limit (as timeout(1) does). */
export const TIMEOUT_EXIT_CODE = 124;
