/**
 * Bun's fetch runs at most 256 requests at once per process unless
 * BUN_CONFIG_MAX_HTTP_REQUESTS is set when the process starts, and a node
 * keeps thousands of LLM calls in flight. When it is not set, matrixd
 * re-executes itself in place (execve: same pid, same stdio, signals and
 * kill -9 behave as before) with it set.
 */
const WANT = "65535";

function reexec(): void {
  const script = process.argv[1];
  const compiled = !script || script.startsWith("/$bunfs/");
  // Bun's own flags (--cpu-prof, --smol, --inspect...) come back too, else a profiled run would lose them.
  const args = compiled ? process.argv.slice(2) : [...process.execArgv, ...process.argv.slice(1)];
  const env = { ...process.env, BUN_CONFIG_MAX_HTTP_REQUESTS: WANT };
  try {
    process.execve?.(process.execPath, [process.execPath, ...args], env);
  } catch {
    // execve refused: carry on with Bun's default limit.
  }
}

if (process.env.BUN_CONFIG_MAX_HTTP_REQUESTS === undefined && process.env.MATRIXD_NO_REEXEC === undefined) reexec();
