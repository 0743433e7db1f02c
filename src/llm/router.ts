import { LlmError } from "../errors.ts";
import { fnv1a, mix2 } from "../util/hash.ts";
import type { Endpoint } from "./endpoint.ts";

/** Affinity keys remembered (task id -> endpoint); the oldest are forgotten first. */
const STICKY_KEYS = 65_536;

/** Chooses the endpoint for each request: by model, health, load and affinity. */
export class Router {
  /** key -> endpoint last chosen for it; a Map iterates oldest first, which makes it an LRU */
  private readonly sticky = new Map<string, Endpoint>();
  private turn = 0;
  private eps: readonly Endpoint[];

  constructor(
    eps: readonly Endpoint[],
    /** leave a key's endpoint when its load exceeds the least loaded one's by this factor */
    private readonly stickyOverload: number,
  ) {
    this.eps = eps;
  }

  /** The endpoints to choose from, after one was added or removed. */
  setEndpoints(eps: readonly Endpoint[]): void {
    this.eps = eps;
  }

  /**
   * The endpoint for a request: among the live endpoints serving the model,
   * the least loaded (a penalized one counts as fuller); with an affinity
   * key, the key's endpoint while it has room or is not overloaded against
   * the least loaded. When every endpoint is down after failures, the one
   * back soonest. `undefined` when every endpoint serving the model is out
   * (reported down, or none listed at all): the request waits for one.
   *
   * @throws LlmError when endpoints are listed but none serves the model
   */
  pick(model: string | undefined, key: string | undefined, now: number): Endpoint | undefined {
    const eps = this.eps;
    const n = eps.length;
    if (n === 0) return undefined;
    // rotate the starting point so ties do not all land on the first endpoint
    const start = this.turn++ % n;
    let best: Endpoint | undefined;
    let bestLoad = Infinity;
    let soonest: Endpoint | undefined;
    let out = false;
    for (let i = 0; i < n; i++) {
      const ep = eps[(start + i) % n];
      if (ep === undefined || !ep.serves(model)) continue;
      if (ep.isOut(now)) {
        out = true;
        continue;
      }
      if (ep.isDown(now)) {
        if (soonest === undefined || ep.downUntil < soonest.downUntil) soonest = ep;
        continue;
      }
      const load = loadOf(ep, now);
      if (load < bestLoad) {
        best = ep;
        bestLoad = load;
      }
    }
    if (best === undefined) {
      if (soonest !== undefined) return soonest;
      if (out) return undefined;
      throw this.noEndpoint(model);
    }
    if (key === undefined) return best;

    let sticky = this.sticky.get(key);
    if (sticky === undefined || sticky.removed || !sticky.serves(model) || sticky.isDown(now) || sticky.isOut(now)) {
      sticky = this.rendezvous(key, model, now) ?? best;
    }
    // staying while it has room keeps the prefix cache even when another endpoint is idle
    const roomy = sticky.hasRoom(now) && now >= sticky.penaltyUntil;
    const chosen = roomy || loadOf(sticky, now) <= this.stickyOverload * bestLoad ? sticky : best;
    this.sticky.delete(key);
    this.sticky.set(key, chosen);
    if (this.sticky.size > STICKY_KEYS) {
      const oldest = this.sticky.keys().next();
      if (!oldest.done) this.sticky.delete(oldest.value);
    }
    return chosen;
  }

  /** The live endpoint a key hashes to (the same on every node with the same endpoints). */
  private rendezvous(key: string, model: string | undefined, now: number): Endpoint | undefined {
    const h = fnv1a(key);
    let best: Endpoint | undefined;
    let bestScore = -1;
    for (const ep of this.eps) {
      if (!ep.serves(model) || ep.isDown(now) || ep.isOut(now)) continue;
      const score = mix2(h, ep.salt);
      if (score > bestScore) {
        best = ep;
        bestScore = score;
      }
    }
    return best;
  }

  private noEndpoint(model: string | undefined): LlmError {
    const known = new Set<string>();
    for (const ep of this.eps) if (ep.models) for (const m of ep.models) known.add(m);
    return new LlmError(
      `No LLM endpoint serves model "${model}" (served: ${[...known].join(", ") || "none"})`,
      undefined,
      undefined,
      false,
    );
  }
}

/** An endpoint's load for choosing, a penalized one counted as fuller than it is. */
function loadOf(ep: Endpoint, now: number): number {
  const load = ep.load(now);
  return now < ep.penaltyUntil ? load + ep.penaltyLoad : load;
}
