import { validate } from "../src/config/load.ts";
import { UsageError } from "../src/errors.ts";
import { createEnvService, EnvConfigSchema } from "../src/env/index.ts";
import type { EnvService } from "../src/env/types.ts";
import type { Logger } from "../src/log.ts";

/**
 * The node's environment service from `--env docker|bwrap` over the config's
 * `env` section; none when neither asks for one. Agents find it as
 * `ctx.services.env`.
 */
export async function openEnvs(flag: string | undefined, config: Record<string, unknown> | undefined, log: Logger): Promise<EnvService | undefined> {
  if (flag === undefined && config === undefined) return undefined;
  if (flag !== undefined && flag !== "docker" && flag !== "bwrap") {
    throw new UsageError(`--env must be "docker" or "bwrap", got "${flag}"`);
  }
  const merged = { ...(config ?? {}), ...(flag ? { driver: flag } : {}) };
  return createEnvService(validate(EnvConfigSchema, merged, "env"), log);
}
