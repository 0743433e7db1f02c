import { DEFAULT_ENDPOINT, type LlmSection, normalizeBaseUrl } from "../llm/config.ts";
import type { EndpointInfo } from "../llm/types.ts";
import type { SuperviseSpec } from "../services/supervisor.ts";
import { resolveSimOptions, SimOptionsSchema } from "../sim/index.ts";
import { checkEndpoints, type EndpointTarget } from "./endpoints.ts";
import type { AskedModel } from "./needs.ts";
import type { CheckResult } from "./types.ts";

/** A supervised server as the node runs it. */
interface Supervised {
  url: string;
  spec: SuperviseSpec;
}

function configured(section: LlmSection | undefined, url: string): { models?: string[]; apiKeyEnv?: string } {
  const ep = section?.endpoints?.find((e) => e.url === url);
  const apiKeyEnv = ep?.apiKeyEnv ?? section?.apiKeyEnv;
  return { ...(ep?.models ? { models: ep.models } : {}), ...(apiKeyEnv ? { apiKeyEnv } : {}) };
}

/** The endpoints a node's LLM client has once its services are open (supervised servers started). */
export function clientTargets(endpoints: readonly EndpointInfo[], section: LlmSection | undefined, supervised: readonly Supervised[]): EndpointTarget[] {
  return endpoints.map((ep) => {
    const sup = supervised.find((s) => s.url === ep.url);
    if (sup) return { url: ep.url, label: "supervised", ...(sup.spec.model ? { models: [sup.spec.model] } : {}) };
    return { url: ep.url, ...configured(section, ep.url) };
  });
}

/**
 * The endpoints `--llm` flags and a config name, as a node would open them,
 * without starting anything: the in-process sim is known by its options, a
 * supervised server is not started (so not checked).
 */
export function configTargets(
  flags: readonly string[],
  section: LlmSection | undefined,
  supervise: readonly SuperviseSpec[],
  sim: Record<string, unknown> | undefined,
  /** "warn" where nothing will start them (matrixd check); "ok" where they are checked once started */
  supervised: "ok" | "warn" = "warn",
): EndpointTarget[] {
  const out: EndpointTarget[] = supervise.map((s) => ({ url: s.command, label: "supervised", assumed: supervised, ...(s.model ? { models: [s.model] } : {}) }));
  if (flags.length === 0) {
    const urls = section?.endpoints?.map((e) => e.url) ?? (section && supervise.length === 0 ? [normalizeBaseUrl(DEFAULT_ENDPOINT.url)] : []);
    return [...out, ...urls.map((url) => ({ url, ...configured(section, url) }))];
  }
  for (const f of flags) {
    if (f === "sim") {
      const opts = SimOptionsSchema.safeParse(sim ?? {});
      const model = opts.success ? resolveSimOptions(opts.data).model : "sim-llm";
      out.push({ url: "sim", label: "in-process simulated LLM", models: [model], assumed: "ok" });
    } else if (/^https?:\/\//.test(f)) {
      const url = normalizeBaseUrl(f);
      out.push({ url, ...configured(section, url) });
    }
    // anything else is refused, as a usage error, when the client is built
  }
  return out;
}

/** A node's open LLM client as the checks see it. */
export interface OpenClient {
  client: { endpoints(): EndpointInfo[] };
  supervisors: readonly Supervised[];
}

/** Where a node's LLM endpoints come from, before any is opened. */
export interface LlmSetting {
  flags?: readonly string[];
  section?: LlmSection;
  supervise: readonly SuperviseSpec[];
  sim?: Record<string, unknown>;
}

/**
 * The check of a node's LLM endpoints before they are opened: each URL
 * answers, the asked models are served (supervised servers taken as serving
 * their model, until they are started and checked with the rest).
 */
export function checkNodeEndpoints(llm: LlmSetting, asked: readonly AskedModel[] = [], supervised: "ok" | "warn" = "ok"): Promise<CheckResult[]> {
  return checkEndpoints(configTargets(llm.flags ?? [], llm.section, llm.supervise, llm.sim, supervised), asked);
}

/** The same once the node's supervised servers started (nothing to do without them). */
export function checkSupervised(llm: OpenClient | undefined, section: LlmSection | undefined, asked: readonly AskedModel[] = []): Promise<CheckResult[]> {
  if (!llm || llm.supervisors.length === 0) return Promise.resolve([]);
  return checkEndpoints(clientTargets(llm.client.endpoints(), section, llm.supervisors), asked);
}
