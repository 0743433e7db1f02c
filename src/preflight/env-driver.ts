import { EnvConfigSchema } from "../env/types.ts";
import { describeNetworkError } from "../llm/wire.ts";
import type { WorkflowNeeds } from "./needs.ts";
import { type CheckResult, PROBE_TIMEOUT_MS, result } from "./types.ts";

const CHECK = "environment";

/** The driver a node will open, from `--env` over the config's `env` section (undefined: none). */
export interface EnvSetting {
  flag?: string;
  config?: Record<string, unknown>;
}

async function bwrapRuns(timeoutMs: number): Promise<CheckResult> {
  const bin = Bun.which("bwrap");
  if (!bin) return result(CHECK, "bwrap", "fail", "bwrap is not on PATH: install bubblewrap, or pass --env docker");
  try {
    const proc = Bun.spawn([bin, "--version"], { stdin: "ignore", stdout: "pipe", stderr: "pipe", timeout: timeoutMs, killSignal: "SIGKILL" });
    const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
    if (code !== 0) return result(CHECK, "bwrap", "fail", `bwrap at ${bin} does not run (exit ${code}${err.trim() ? `: ${err.trim().split("\n")[0]}` : ""})`);
    return result(CHECK, "bwrap", "ok", `${out.trim() || "bwrap"} at ${bin}`);
  } catch (e) {
    return result(CHECK, "bwrap", "fail", `bwrap at ${bin} does not run (${describeNetworkError(e)})`);
  }
}

async function dockerAnswers(socketPath: string, timeoutMs: number): Promise<CheckResult> {
  try {
    const res = await fetch("http://docker/_ping", { unix: socketPath, signal: AbortSignal.timeout(timeoutMs) });
    await res.text();
    if (!res.ok) return result(CHECK, "docker", "fail", `the Docker engine at ${socketPath} answered ${`${res.status} ${res.statusText}`.trim()} to a ping`);
    return result(CHECK, "docker", "ok", `the Docker engine at ${socketPath} answers`);
  } catch (e) {
    const code = e instanceof Error && "code" in e ? e.code : undefined;
    const why =
      e instanceof Error && e.name === "TimeoutError" ? `no answer in ${Math.round(timeoutMs / 1000)} s` : code === "ENOENT" ? "no such socket" : describeNetworkError(e);
    return result(CHECK, "docker", "fail", `no Docker engine answers at ${socketPath} (${why}): start dockerd, or pass --env bwrap`);
  }
}

/**
 * The environment driver is given when the workflow runs roles in
 * environments, and it is there: a Docker engine that answers at its
 * socket, or a bwrap binary that runs. A value of `--env` that is no driver
 * is the usage error it is, before anything else.
 */
export async function checkEnvDriver(setting: EnvSetting, needs?: WorkflowNeeds, timeoutMs = PROBE_TIMEOUT_MS): Promise<CheckResult[]> {
  const { flag, config } = setting;
  if (flag !== undefined && flag !== "docker" && flag !== "bwrap") {
    return [result(CHECK, flag, "fail", `--env must be "docker" or "bwrap", got "${flag}"`)];
  }
  if (flag === undefined && config === undefined) {
    if (!needs || needs.envRoles.length === 0) return [];
    const roles = needs.envRoles.join(", ");
    return [result(CHECK, "--env", "fail", `workflow ${needs.workflow} runs ${needs.envRoles.length > 1 ? "roles" : "role"} ${roles} in per-task environments: pass --env docker|bwrap`)];
  }
  // a config the service will refuse is said, with its key, when it opens
  const parsed = EnvConfigSchema.safeParse({ ...(config ?? {}), ...(flag ? { driver: flag } : {}) });
  if (!parsed.success) return [];
  return [parsed.data.driver === "docker" ? await dockerAnswers(parsed.data.socketPath, timeoutMs) : await bwrapRuns(timeoutMs)];
}
