import { describe } from "../errors.ts";
import type { LlmEndpointInput } from "../llm/config.ts";
import type { LlmClient, ManagedLlmClient } from "../llm/types.ts";
import type { Logger } from "../log.ts";
import type { Member } from "./types.ts";

/** Whether a client can take endpoints at run time. */
export function isManaged(llm: LlmClient | undefined): llm is ManagedLlmClient {
  return llm !== undefined && typeof (llm as Partial<ManagedLlmClient>).setEndpoints === "function";
}

/** Whether a URL names this machine only (such an address means nothing on another node). */
export function isLoopbackUrl(url: string): boolean {
  try {
    const host = new URL(url).hostname.replace(/^\[|\]$/g, "").toLowerCase();
    return host === "localhost" || host === "::1" || /^127\./.test(host) || host === "0.0.0.0";
  } catch {
    return true;
  }
}

/**
 * Lets this node's agents use the LLM servers other members advertise: each
 * member's healthy endpoints go into the local client under the source
 * `member:<name>` (and out again when the member leaves), with the load its
 * servers last reported, so the client picks among every server of the
 * cluster by live load. Loopback addresses are left out: they name another
 * machine's own host.
 */
export class PeerEndpoints {
  #sources = new Set<string>();
  /** the endpoints this node was configured with: never taken over from a member */
  readonly #own: Set<string>;

  constructor(
    private readonly client: ManagedLlmClient,
    private readonly self: string,
    private readonly log: Logger,
  ) {
    this.#own = new Set(client.endpoints().map((e) => e.url));
  }

  update(members: readonly Member[]): void {
    const seen = new Set<string>();
    for (const m of members) {
      if (m.node === this.self || m.state !== "running") continue;
      const source = `member:${m.node}`;
      const eps = m.services.llm.filter((e) => e.healthy && !isLoopbackUrl(e.url) && !this.#own.has(e.url));
      if (eps.length === 0 && !this.#sources.has(source)) continue;
      seen.add(source);
      const inputs: LlmEndpointInput[] = eps.map((e) => {
        // its load comes with the member's heartbeat: polling it from every node would crowd a
        // server with a few HTTP threads (llama.cpp); its kind and slots come along too
        const input: LlmEndpointInput = { url: e.url, maxConcurrency: Math.max(1, e.maxConcurrency ?? e.limit), metrics: false };
        if (e.models.length > 0) input.models = e.models;
        if (e.kind) input.kind = e.kind;
        if (e.serverSlots !== undefined) input.slots = e.serverSlots;
        return input;
      });
      try {
        this.client.setEndpoints(inputs, source);
        for (const e of eps) {
          if (e.serverRunning !== undefined) {
            this.client.reportLoad(e.url, { running: e.serverRunning, waiting: e.serverWaiting ?? 0, slots: e.serverSlots });
          }
        }
      } catch (err) {
        this.log.warn({ member: m.node, err: describe(err) }, "cannot use a member's LLM endpoints");
      }
    }
    for (const source of this.#sources) {
      if (seen.has(source)) continue;
      try {
        this.client.setEndpoints([], source);
      } catch (err) {
        this.log.debug({ source, err: describe(err) }, "cannot drop a member's LLM endpoints");
      }
    }
    this.#sources = seen;
  }
}
