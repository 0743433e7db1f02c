import { type ApiClient, ApiError } from "../api/client.ts";
import type { ClusterResponse } from "../api/responses.ts";
import { describeNetworkError } from "../llm/wire.ts";
import { type CheckResult, PROBE_TIMEOUT_MS, result } from "./types.ts";

/** The workflows whose roles the members host (role keys are `workflow.role`). */
function hosted(cluster: ClusterResponse, workflow: string): { hosts: boolean; names: string[] } {
  const names = new Set<string>();
  let hosts = false;
  for (const m of cluster.members) {
    for (const key of Object.keys(m.roles)) {
      if (key.startsWith(`${workflow}.`)) hosts = true;
      names.add(key.slice(0, key.lastIndexOf(".")));
    }
  }
  return { hosts, names: [...names].sort() };
}

function within<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer in ${Math.round(ms / 1000)} s`)), ms);
  });
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}

/**
 * What `matrixd submit` can see before it sends a seed: the node answers,
 * and, when the job names a workflow (not a file it carries), some member
 * of the cluster hosts it, as far as `GET /v1/cluster` tells.
 */
export async function checkServer(api: ApiClient, workflow: string | undefined, timeoutMs = PROBE_TIMEOUT_MS): Promise<CheckResult[]> {
  const server = api.server;
  try {
    const res = await fetch(`${server}/healthz`, { signal: AbortSignal.timeout(timeoutMs) });
    await res.text();
    const status = `${res.status} ${res.statusText}`.trim();
    if (!res.ok) return [result("server", server, "fail", `server ${server} answered ${status} to GET /healthz: is it a matrixd node's HTTP API?`)];
  } catch (err) {
    const why = err instanceof Error && err.name === "TimeoutError" ? `no answer in ${Math.round(timeoutMs / 1000)} s` : describeNetworkError(err);
    return [result("server", server, "fail", `server ${server} does not answer (${why})`)];
  }
  const out = [result("server", server, "ok", `server ${server} answers`)];
  if (workflow === undefined) return out;
  let cluster: ClusterResponse;
  try {
    cluster = await within(api.cluster(), timeoutMs);
  } catch (err) {
    // a token the node refuses is said as such; anything else is left to the submission itself
    if (err instanceof ApiError && (err.status === 401 || err.status === 403)) out.push(result("server", server, "fail", `server ${server}: ${err.message}`));
    return out;
  }
  const { hosts, names } = hosted(cluster, workflow);
  if (hosts || cluster.members.length === 0) out.push(result("workflow", workflow, "ok", `workflow ${workflow} is hosted in the cluster`));
  else out.push(result("workflow", workflow, "fail", `unknown workflow "${workflow}": no member of the cluster at ${server} hosts it (hosted: ${names.join(", ") || "none"})`));
  return out;
}
