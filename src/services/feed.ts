import type { ManagedLlmClient } from "../llm/types.ts";
import type { Supervisor } from "./supervisor.ts";

/**
 * Keep an LLM client's view of a supervised server current: up only while
 * the supervisor has it ready and answering (so requests wait through a
 * restart instead of failing), and its load from the metrics the supervisor
 * reads every second (with its slots from its command line when the
 * metrics do not say them). The endpoint is the supervisor's URL, which stays the
 * same across restarts unless a restart finds the port taken and moves: then
 * the endpoint moves with it. Returns the way to stop.
 *
 * @example
 * ```ts
 * const stop = feedSupervisor(client, supervisor);
 * // ... later
 * stop();
 * ```
 */
export function feedSupervisor(client: ManagedLlmClient, sup: Supervisor): () => void {
  let url = sup.url;
  const update = (s: Supervisor) => {
    if (s.url !== url) {
      client.addEndpoint(s.endpoint());
      client.removeEndpoint(url);
      url = s.url;
    }
    const up = s.up;
    const slots = s.slots ?? s.load?.slots;
    if (up && s.load) client.reportLoad(s.url, { running: s.load.running, waiting: s.load.waiting, ...(slots ? { slots } : {}) });
    client.setHealth(s.url, up);
  };
  // answers arriving tell the supervisor that a server slow to probe is busy, not dead
  sup.progress = () => client.endpoints().find((e) => e.url === sup.url)?.completionTokens ?? 0;
  update(sup);
  const stop = sup.onChange(update);
  return () => {
    sup.progress = undefined;
    stop();
  };
}
