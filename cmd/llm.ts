import type { Logger } from "../src/log.ts";
import { UsageError } from "../src/errors.ts";
import { DEFAULT_ENDPOINT, LlmConfigSchema, type LlmEndpointInput, type LlmSection, LlmSectionSchema } from "../src/llm/config.ts";
import { createLlmClient } from "../src/llm/index.ts";
import type { ManagedLlmClient } from "../src/llm/types.ts";
import { feedSupervisor } from "../src/services/feed.ts";
import { startSim, SimOptionsSchema } from "../src/sim/index.ts";
import { PRIORITY_KINDS } from "../src/sim/options.ts";
import { validate } from "../src/config/load.ts";
import { type SuperviseSpec, SuperviseSchema, Supervisor } from "../src/services/supervisor.ts";

/** The LLM client of a command, and what to stop with it (an in-process sim). */
export interface OpenLlm {
  /** its endpoints can change at run time (`setEndpoints`, `reportLoad`, `setHealth`) */
  client: ManagedLlmClient;
  supervisors: Supervisor[];
  close(): Promise<void>;
}

/**
 * Build the LLM client from `--llm` flags (`sim` or URLs) over the config's
 * `llm` section. No flag and no config: no client (workflows without LLM roles).
 */
export async function openLlm(args: {
  flags: string[] | undefined;
  /** the config's `llm` section; its endpoints, when listed, join the supervised ones */
  llm: LlmSection | undefined;
  sim: Record<string, unknown> | undefined;
  /** `--supervise` commands and the config's `supervise` entries */
  supervise?: SuperviseSpec[];
  log: Logger;
}): Promise<OpenLlm | undefined> {
  const flags = args.flags ?? [];
  const supervise = args.supervise ?? [];
  if (flags.length === 0 && !args.llm && supervise.length === 0) return undefined;
  // no `llm:` section lists no endpoint: the default URL is only for a client given nothing at all
  const base: LlmSection = args.llm ?? LlmSectionSchema.parse({});
  const stops: (() => Promise<void>)[] = [];
  const supervisors: Supervisor[] = [];
  let endpoints: LlmEndpointInput[] = base.endpoints ?? [DEFAULT_ENDPOINT];
  if (flags.length > 0 || supervise.length > 0) {
    // the config's endpoints when it lists some, never the default URL
    endpoints = flags.length === 0 ? [...(base.endpoints ?? [])] : [];
    for (const spec of supervise) {
      const sup = new Supervisor(spec, args.log);
      await sup.start();
      supervisors.push(sup);
      stops.push(() => sup.stop());
      endpoints.push(sup.endpoint());
    }
    for (const f of flags) {
      if (f === "sim") {
        const sim = await startSim(validate(SimOptionsSchema, simDefaults(args.sim ?? {}), "config sim"));
        stops.push(() => sim.stop());
        // a sim that schedules by priority is sent each request's
        const priority = sim.options.schedulingPolicy === "priority";
        endpoints.push({ url: `${sim.url}/v1`, kind: sim.options.kind, metrics: true, priority });
        args.log.info({ url: sim.url, ceiling: sim.ceilingTps }, "started the in-process simulated LLM");
      } else if (/^https?:\/\//.test(f)) {
        // its kind, slots and load are found out; the limit follows them
        endpoints.push({ url: f });
      } else {
        throw new UsageError(`--llm must be "sim" or an http(s) URL, got "${f}"`);
      }
    }
  }
  const client = createLlmClient(validate(LlmConfigSchema, { ...base, endpoints }, "llm"), { log: args.log });
  // a supervised server is out while it starts or restarts; requests wait for it
  for (const sup of supervisors) {
    const unfeed = feedSupervisor(client, sup);
    stops.unshift(async () => unfeed());
  }
  try {
    await Promise.all(supervisors.map((s) => s.ready()));
    // the servers' slots and load are known before anyone sizes role slots on them
    await client.refreshLoad();
  } catch (err) {
    for (const s of stops) await s();
    throw err;
  }
  return {
    client,
    supervisors,
    async close() {
      await client.close();
      for (const s of stops) await s();
    },
  };
}

/**
 * The in-process sim's settings: as given, scheduling by priority (vLLM's
 * --scheduling-policy priority) when it imitates a server that can and the
 * config does not say otherwise.
 */
function simDefaults(sim: Record<string, unknown>): Record<string, unknown> {
  const kind = typeof sim.kind === "string" ? sim.kind : "vllm";
  if (sim.schedulingPolicy !== undefined || !(PRIORITY_KINDS as readonly string[]).includes(kind)) return sim;
  return { ...sim, schedulingPolicy: "priority" };
}

/** `--supervise` flags as specs (the model name after `=`: `--supervise 'cmd {port}'` or `model=cmd {port}`). */
export function superviseFlags(flags: string[] | undefined): SuperviseSpec[] {
  return (flags ?? []).map((f, i) => {
    const m = /^([A-Za-z0-9._:/-]+)=(.*)$/s.exec(f);
    const raw = m ? { model: m[1], command: m[2] } : { command: f };
    return validate(SuperviseSchema, raw, `--supervise #${i + 1}`);
  });
}
