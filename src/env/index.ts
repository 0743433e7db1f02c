/** Per-task environments (docker or bubblewrap): acquire, exec, put, get, release, pooled. */
import { ConfigError } from "../errors.ts";
import type { Logger } from "../log.ts";
import { createBwrapDriver } from "./bwrap.ts";
import { EnvPoolImpl, type Driver } from "./pool.ts";
import { EnvConfigSchema, type EnvConfig, type EnvService } from "./types.ts";

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
export { EnvPoolImpl, type Driver, type DriverEnv, type DriverExec, type ResolvedSpec } from "./pool.ts";

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
 * driver can run here, removes environments the node's runs that are over
 * left (a run of the same node name still alive on this host keeps its own).
 *
 * @throws EnvError "unavailable" when the driver cannot run on this machine
 *   (no Docker engine at the socket, image missing, bwrap failing), with the reason
 *
 * @example
 * ```ts
 * const envs = await createEnvService(parseEnvConfig({ driver: "bwrap", capacity: 4 }), log);
 * const env = await envs.acquire(task.id, { files: { "db.json": "{}" } });
 * try {
 *   const r = await env.exec(["cat", "db.json"]); // r.stdout === "{}"
 * } finally {
 *   await env.release();
 * }
 * ```
 */
export async function createEnvService(config: EnvConfig, log: Logger): Promise<EnvService> {
  const envLog = log.child({ service: "env", driver: config.driver });
  // dockerode is loaded only for the docker driver: a node without it does not pay for its modules at start
  const driver: Driver = config.driver === "docker" ? await (await import("./docker.ts")).createDockerDriver(config, envLog) : await createBwrapDriver(config, envLog);
  const left = await driver.cleanupLeftovers();
  if (left > 0) envLog.info({ count: left }, "removed environments left by earlier runs that are over");
  envLog.info({ capacity: config.capacity }, "environment service ready");
  return new EnvPoolImpl(driver, config.capacity, { ...config.limits, image: config.image }, envLog);
}
