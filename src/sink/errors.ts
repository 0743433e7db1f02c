import { UsageError } from "../errors.ts";

/** Another live process writes the dataset: exit code 2, nothing was touched. */
export class OutputLockedError extends UsageError {
  override name = "OutputLockedError";
}

/**
 * The dataset (or its lock) cannot be written: a full disk, a read-only or
 * unwritable file system. Exit code 1; the rows already in the file are whole,
 * and a run with the same output resumes after them.
 */
export class OutputWriteError extends Error {
  override name = "OutputWriteError";
  constructor(
    message: string,
    /** the errno code, e.g. ENOSPC */
    readonly code: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

const WORDS: Record<string, string> = {
  ENOSPC: "no space left on device",
  EDQUOT: "disk quota exceeded",
  EFBIG: "file too large",
  EROFS: "read-only file system",
  EACCES: "permission denied",
  EPERM: "operation not permitted",
  EIO: "input/output error",
  ENOENT: "no such file or directory",
  ENOTDIR: "a part of the path is not a folder",
  EISDIR: "is a folder",
};

/** An I/O error's code and its words (`ENOSPC`, `no space left on device`). */
export function ioReason(err: unknown): { code: string; words: string } {
  const code = typeof err === "object" && err !== null && "code" in err && typeof err.code === "string" ? err.code : "EIO";
  const message = err instanceof Error ? err.message : String(err);
  // node's messages read "ENOSPC: no space left on device, write": keep the words
  const words = WORDS[code] ?? (/^[A-Z]+: (.*?)(, \w+.*)?$/.exec(message)?.[1] || message);
  return { code, words };
}

/** What the user can do about a write error before running again. */
export function ioRemedy(code: string): string {
  if (code === "ENOSPC" || code === "EDQUOT" || code === "EFBIG") return "free space";
  if (code === "EROFS" || code === "EACCES" || code === "EPERM") return "make it writable";
  return "fix it";
}
