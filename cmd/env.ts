import { dlopen, FFIType, ptr } from "bun:ffi";

/**
 * Bun's fetch runs at most 256 requests at once per process unless
 * BUN_CONFIG_MAX_HTTP_REQUESTS is set when the process starts, and a node
 * keeps thousands of LLM calls in flight. When it is not set, matrixd
 * re-executes itself in place (execve: same pid, same stdio, signals and
 * kill -9 behave as before) with it set.
 */
const WANT = "65535";

function cString(s: string): Buffer {
  return Buffer.from(`${s}\0`, "utf8");
}

function reexec(): void {
  const script = process.argv[1];
  const compiled = !script || script.startsWith("/$bunfs/");
  // Bun's own flags (--cpu-prof, --smol, --inspect...) come back too, else a profiled run would lose them.
  const argv = compiled ? [process.execPath, ...process.argv.slice(2)] : [process.execPath, ...process.execArgv, ...process.argv.slice(1)];
  const env = { ...process.env, BUN_CONFIG_MAX_HTTP_REQUESTS: WANT };
  const keep: Buffer[] = [];
  const table = (items: string[]) => {
    const ptrs = new BigUint64Array(items.length + 1);
    items.forEach((s, i) => {
      const b = cString(s);
      keep.push(b);
      ptrs[i] = BigInt(ptr(b));
    });
    return ptrs;
  };
  const argvTable = table(argv);
  const envTable = table(Object.entries(env).map(([k, v]) => `${k}=${v ?? ""}`));
  const path = cString(process.execPath);
  try {
    const libc = dlopen("libc.so.6", { execve: { args: [FFIType.ptr, FFIType.ptr, FFIType.ptr], returns: FFIType.i32 } });
    libc.symbols.execve(ptr(path), ptr(argvTable), ptr(envTable));
  } catch {
    // No libc to call: carry on with Bun's default limit.
  }
}

if (process.env.BUN_CONFIG_MAX_HTTP_REQUESTS === undefined && process.env.MATRIXD_NO_REEXEC === undefined) reexec();
