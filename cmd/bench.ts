import { BENCH_HELP, runBench } from "../bench/main.ts";
import { UsageError } from "../src/errors.ts";

export { BENCH_HELP };

/** `matrixd bench [SCENARIO] [--quick] [...]`: returns the exit code. */
export async function benchMain(argv: string[]): Promise<number> {
  try {
    return await runBench(argv);
  } catch (err) {
    // parseArgs' errors are usage errors: exit 2 with one line.
    if (err instanceof TypeError && "code" in err && String(err.code).startsWith("ERR_PARSE_ARGS")) {
      throw new UsageError(`${err.message.split("\n")[0]} (see matrixd bench --help)`);
    }
    throw err;
  }
}
