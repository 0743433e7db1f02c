import { BENCH_HELP, runBench } from "../bench/main.ts";
import { stopAll } from "../bench/proc.ts";
import { UsageError } from "../src/errors.ts";
import { handleSignals } from "./signals.ts";

export { BENCH_HELP };

/** `matrixd bench [SCENARIO] [--quick] [...]`: returns the exit code. */
export async function benchMain(argv: string[]): Promise<number> {
  // An interrupted benchmark leaves no sim, redis or mode process behind.
  const offSignals = handleSignals({
    graceful: () => {
      stopAll();
      process.exit(130);
    },
  });
  try {
    return await runBench(argv);
  } catch (err) {
    // parseArgs' errors are usage errors: exit 2 with one line.
    if (err instanceof TypeError && "code" in err && String(err.code).startsWith("ERR_PARSE_ARGS")) {
      throw new UsageError(`${err.message.split("\n")[0]} (see matrixd bench --help)`);
    }
    throw err;
  } finally {
    offSignals();
  }
}
