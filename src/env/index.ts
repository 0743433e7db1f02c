/** Per-task environments (docker or bubblewrap): acquire, exec, put, get, release, pooled. */
import { ConfigError } from "../errors.ts";
import type { Logger } from "../log.ts";
import { EnvConfigSchema, EnvError, type EnvConfig, type EnvService } from "./types.ts";

export {
  DEFAULT_OUTPUT_CAP,
  ENV_WORK_DIR,
  EnvConfigSchema,
  EnvError,
  KillReason,
  TRUNCATED_MARKER,
  type Env,
  type EnvConfig,
  type EnvConfigInput,
  type EnvLimits,
  type EnvService,
  type EnvSpec,
  type ExecOptions,
  type ExecResult,
} from "./types.ts";

/**
 * Validate and complete an environment config.
 *
 * @throws ConfigError naming the first bad field, e.g. `Invalid env config: capacity: Too small`
 */
export function parseEnvConfig(input: unknown): EnvConfig {
  const parsed = EnvConfigSchema.safeParse(input ?? {});
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = issue && issue.path.length > 0 ? `${issue.path.join(".")}: ` : "";
    throw new ConfigError(`Invalid env config: ${where}${issue?.message ?? "invalid"}`);
  }
  return parsed.data;
}

/**
 * Start the node's environment service with the configured driver: checks the
 * driver can run here, removes environments an earlier run of this node left.
 *
 * @example
 * ```ts
 * const envs = await createEnvService(parseEnvConfig({ driver: "bwrap", capacity: 4 }), log);
 * const env = await envs.acquire(task.id, { files: { "db.json": "{}" } });
 * try { const r = await env.exec(["cat", "db.json"]); } finally { await env.release(); }
 * ```
 */
export async function createEnvService(config: EnvConfig, log: Logger): Promise<EnvService> {
  void config;
  void log;
  throw new EnvError("environment drivers are not built yet", "unavailable");
}
