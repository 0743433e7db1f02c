import type { EnvService } from "../src/env/types.ts";
import type { LlmSection } from "../src/llm/config.ts";
import type { Logger } from "../src/log.ts";
import type { SuperviseSpec } from "../src/services/supervisor.ts";
import { openEnvs } from "./envs.ts";
import { type OpenLlm, openLlm, superviseFlags } from "./llm.ts";

/** What a node offers its agents: the LLM client (with its supervised servers) and environments. */
export interface NodeServices {
  llm: OpenLlm | undefined;
  envs: EnvService | undefined;
  /** the agents' `ctx.services` */
  services: Record<string, unknown>;
  close(): Promise<void>;
}

/**
 * Open a node's services from its flags over its config (`run` and `join`
 * alike); if one cannot open, those already open are closed again.
 */
export async function openNodeServices(
  flags: { llm?: string[]; supervise?: string[]; env?: string },
  cfg: { llm?: LlmSection; sim?: Record<string, unknown>; supervise: SuperviseSpec[]; env?: Record<string, unknown> },
  log: Logger,
): Promise<NodeServices> {
  const supervise = [...cfg.supervise, ...superviseFlags(flags.supervise)];
  const llm = await openLlm({ flags: flags.llm, llm: cfg.llm, sim: cfg.sim, supervise, log });
  let envs: EnvService | undefined;
  try {
    envs = await openEnvs(flags.env, cfg.env, log);
  } catch (err) {
    await llm?.close();
    throw err;
  }
  return {
    llm,
    envs,
    services: envs ? { env: envs } : {},
    async close() {
      await llm?.close();
      await envs?.close();
    },
  };
}
