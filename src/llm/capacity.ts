import type { EndpointInfo, LlmClient } from "./types.ts";

/**
 * Requests queued per request running that keep a server busy between one
 * step's answer and the next step's call (the hop, the agent's own work).
 */
export const QUEUE_FACTOR = 1.25;

/**
 * The slots a node should give an LLM-bound role: what the endpoints
 * serving `model` (any model when undefined) can run at once, plus a small
 * queue. An endpoint runs the fewer of its client limit (adaptive) and its
 * server's slots when its metrics say them. Endpoints that are up count;
 * when none is (servers still starting), all do, so a role is never sized
 * to nothing. At least 1.
 *
 * @example
 * ```ts
 * const slots = llmCapacity(llm, role.model?.(config)); // 4 servers x 64 slots: 320
 * ```
 */
export function llmCapacity(client: LlmClient, model?: string, factor = QUEUE_FACTOR): number {
  const serving = client.endpoints().filter((e) => model === undefined || e.models.length === 0 || e.models.includes(model));
  const up = serving.filter((e) => e.healthy);
  let sum = 0;
  for (const e of up.length > 0 ? up : serving) sum += runs(e);
  return Math.max(1, Math.ceil(sum * factor));
}

function runs(e: EndpointInfo): number {
  return e.serverSlots !== undefined && e.serverSlots < e.limit ? e.serverSlots : e.limit;
}
