import { constants } from "node:fs";
import { chown, lstat, mkdir, open } from "node:fs/promises";
import { join } from "node:path";
import { EnvError } from "./types.ts";

/**
 * Files of a work folder that lives on this host (the bwrap driver), read and
 * written by the node. Sandboxed commands can leave symbolic links there, so
 * no part of a path may be one: otherwise a `get("x")` with `x -> /etc/shadow`
 * would read the host's file. No sandbox process runs while these run (the
 * pool runs one operation at a time and bwrap processes end with their exec),
 * so nothing can swap a folder for a link between the check and the open.
 */

const NOFOLLOW = constants.O_NOFOLLOW;

/** Ownership given to what the node creates, so the sandbox user can use it. */
export interface Owner {
  uid: number;
  gid: number;
}

async function walk(root: string, parts: string[], create: Owner | undefined): Promise<string> {
  let dir = root;
  for (const part of parts.slice(0, -1)) {
    dir = join(dir, part);
    const st = await lstat(dir).catch((err: NodeJS.ErrnoException) => {
      if (err.code === "ENOENT") return undefined;
      throw err;
    });
    if (st === undefined) {
      if (!create) throw new EnvError(`No such file: ${parts.join("/")}`, "not_found");
      await mkdir(dir);
      await chown(dir, create.uid, create.gid);
      continue;
    }
    if (st.isSymbolicLink()) throw new EnvError(`Bad environment path ${parts.join("/")}: ${part} is a symbolic link`, "bad_path");
    if (!st.isDirectory()) throw new EnvError(`Bad environment path ${parts.join("/")}: ${part} is not a folder`, "bad_path");
  }
  return join(dir, parts[parts.length - 1] as string);
}

function mapOpenError(err: unknown, parts: string[]): unknown {
  const code = (err as NodeJS.ErrnoException).code;
  const path = parts.join("/");
  if (code === "ELOOP") return new EnvError(`Bad environment path ${path}: it is a symbolic link`, "bad_path");
  if (code === "ENOENT") return new EnvError(`No such file: ${path}`, "not_found");
  if (code === "EISDIR") return new EnvError(`Bad environment path ${path}: it is a folder`, "bad_path");
  return new EnvError(`Cannot access ${path}: ${(err as Error).message}`, "failed", { cause: err });
}

export async function writeWorkFile(root: string, parts: string[], data: Uint8Array, owner: Owner | undefined): Promise<void> {
  const file = await walk(root, parts, owner ?? { uid: -1, gid: -1 });
  let handle;
  try {
    handle = await open(file, constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | NOFOLLOW | constants.O_NONBLOCK, 0o644);
  } catch (err) {
    throw mapOpenError(err, parts);
  }
  try {
    const st = await handle.stat();
    if (!st.isFile()) throw new EnvError(`Bad environment path ${parts.join("/")}: not a regular file`, "bad_path");
    await handle.writeFile(data);
    if (owner) await handle.chown(owner.uid, owner.gid);
  } finally {
    await handle.close();
  }
}

export async function readWorkFile(root: string, parts: string[], maxBytes: number): Promise<Uint8Array> {
  const file = await walk(root, parts, undefined);
  let handle;
  try {
    handle = await open(file, constants.O_RDONLY | NOFOLLOW | constants.O_NONBLOCK);
  } catch (err) {
    throw mapOpenError(err, parts);
  }
  try {
    const st = await handle.stat();
    if (!st.isFile()) throw new EnvError(`Bad environment path ${parts.join("/")}: not a regular file`, "bad_path");
    if (st.size > maxBytes) throw new EnvError(`Cannot get ${parts.join("/")}: ${st.size} bytes exceed ${maxBytes}`, "failed");
    return new Uint8Array(await handle.readFile());
  } finally {
    await handle.close();
  }
}
