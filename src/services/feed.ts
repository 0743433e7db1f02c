import type { ManagedLlmClient } from "../llm/types.ts";
import type { Supervisor } from "./supervisor.ts";

/**
 * Keep an LLM client's view of a supervised server current: up only while
 * the supervisor has it ready and answering (so requests wait through a
 * restart instead of failing), and its load from the metrics the supervisor
 * reads every second. The endpoint is the supervisor's URL, which stays the
 * same across restarts. Returns the way to stop.
 *
 * @example
 * ```ts
 * const stop = feedSupervisor(client, supervisor);
 * // ... later
 * stop();
 * ```
 */
export function feedSupervisor(client: ManagedLlmClient, sup: Supervisor): () => void {
  const update = (s: Supervisor) => {
    const up = s.up;
    if (up && s.load) client.reportLoad(s.url, s.load);
    client.setHealth(s.url, up);
  };
  update(sup);
  return sup.onChange(update);
}
