import { accessSync, constants, existsSync, mkdirSync, statSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { type CheckResult, result } from "./types.ts";

const CHECK = "output";

/** The nearest part of `dir` that exists (a file where a folder should be shows there). */
function nearestExisting(dir: string): string {
  let d = dir;
  while (!existsSync(d) && dirname(d) !== d) d = dirname(d);
  return d;
}

function code(err: unknown): string {
  return err instanceof Error && "code" in err && typeof err.code === "string" ? err.code : String(err);
}

/**
 * The dataset can be written at `path`: its folder exists (a missing one is
 * created) and is writable, and the path is not a folder itself.
 */
export function checkOutPath(path: string, flag = "--out"): CheckResult[] {
  const abs = resolve(path);
  const dir = dirname(abs);
  if (existsSync(abs) && statSync(abs).isDirectory()) return [result(CHECK, path, "fail", `${flag} ${path} is a folder, not a file`)];
  let created = false;
  if (!existsSync(dir)) {
    const near = nearestExisting(dir);
    if (!statSync(near).isDirectory()) return [result(CHECK, path, "fail", `${flag} ${path}: cannot create folder ${dir}: ${near} is a file`)];
    try {
      mkdirSync(dir, { recursive: true });
      created = true;
    } catch (err) {
      return [result(CHECK, path, "fail", `${flag} ${path}: cannot create folder ${dir} (${code(err)})`)];
    }
  } else if (!statSync(dir).isDirectory()) {
    return [result(CHECK, path, "fail", `${flag} ${path}: ${dir} is a file, not a folder`)];
  }
  const target = existsSync(abs) ? abs : dir;
  try {
    accessSync(target, constants.W_OK);
  } catch (err) {
    return [result(CHECK, path, "fail", `${flag} ${path}: ${target} is not writable (${code(err)})`)];
  }
  return [result(CHECK, path, "ok", created ? `${flag} ${path}: created folder ${dir}` : `${flag} ${path} is writable`)];
}
