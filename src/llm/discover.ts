import type { Logger } from "../log.ts";
import { probeKind } from "./dialect/index.ts";
import type { Endpoint } from "./endpoint.ts";
import { headersFor, loadModelList, type Transport } from "./exchange.ts";
import { describeNetworkError } from "./wire.ts";

/** Info routes and kind probes give up after this long (a loaded server may be slow to answer). */
const PROBE_TIMEOUT_MS = 5_000;
/** An endpoint that answered nothing is asked again after this long. */
const RETRY_MS = 10_000;

/**
 * Find out once what an endpoint is: its kind when `auto` (said in the log
 * with the evidence), its slots and context size from its kind's info
 * routes, and its models when the config lists none. An endpoint that
 * answers nothing at all (not started yet) is spoken to without a dialect
 * and asked again later.
 */
export async function discover(t: Transport, ep: Endpoint, closing: AbortSignal, log: Logger): Promise<void> {
  const signal = AbortSignal.any([closing, AbortSignal.timeout(PROBE_TIMEOUT_MS)]);
  const headers = headersFor(t, ep);
  let silent = false;
  try {
    if (!ep.kindKnown) {
      const found = await probeKind(ep.url, { fetch: t.fetch, headers, signal, timeoutMs: PROBE_TIMEOUT_MS });
      if (!found.answered) {
        silent = true;
        ep.discoverAfter = performance.now() + RETRY_MS;
        return;
      }
      ep.setKind(found.kind, found.why);
      ep.setInfo(found.info);
      if (!ep.modelsKnown && found.models && found.models.length > 0) ep.setModels(found.models);
    } else if (ep.dialect) {
      for (const probe of ep.dialect.infoProbes) {
        try {
          const res = await t.fetch(probe.url(ep.url), { headers, signal });
          const text = await res.text();
          if (res.ok) ep.setInfo(probe.read(JSON.parse(text)));
        } catch {
          // a server without the route, or too busy to answer: its info stays unknown
        }
      }
    }
    ep.discovered = true;
    log.info(
      { endpoint: ep.url, kind: ep.dialect?.kind, why: ep.kindWhy, slots: ep.serverSlots, contextTokens: ep.contextTokens, version: ep.version },
      "LLM endpoint",
    );
  } catch (err) {
    ep.discoverAfter = performance.now() + RETRY_MS;
    log.debug({ endpoint: ep.url, reason: describeNetworkError(err) }, "cannot find out what the LLM endpoint is");
  } finally {
    // a server that answered nothing is asked for its models with the rest, once it is up
    if (!ep.modelsKnown && !silent) await loadModelList(t, ep, closing, log);
  }
}
