import { describeNetworkError, ModelListSchema } from "../llm/wire.ts";
import type { AskedModel } from "./needs.ts";
import { type CheckResult, PROBE_TIMEOUT_MS, result } from "./types.ts";

/** An LLM endpoint as the node will use it. */
export interface EndpointTarget {
  /** base URL (`.../v1`) */
  url: string;
  /** the models its config lists: the client sends it only those */
  models?: string[];
  /** the environment variable of its API key, sent as the client sends it */
  apiKeyEnv?: string;
  /** how it came (a supervised server, the in-process sim), said in messages */
  label?: string;
  /**
   * not probed, since this command does not start it (a supervised server,
   * the in-process sim): taken as serving its `models` (none listed: any),
   * its result of this status
   */
  assumed?: "ok" | "warn";
}

/** What `GET {url}/models` said. */
type Probe =
  | { target: EndpointTarget; kind: "live"; served: string[] | null; note?: string }
  | { target: EndpointTarget; kind: "dead"; reason: string }
  | { target: EndpointTarget; kind: "refused"; message: string };

const CHECK = "llm endpoint";
const MODEL_CHECK = "llm model";

function name(t: EndpointTarget): string {
  return `LLM endpoint ${t.url}${t.label ? ` (${t.label})` : ""}`;
}

function refusal(t: EndpointTarget, status: string, keySent: boolean): string {
  if (t.apiKeyEnv && !keySent) return `${name(t)} answered ${status}: $${t.apiKeyEnv}, which holds its API key, is not set`;
  if (t.apiKeyEnv) return `${name(t)} answered ${status} to the API key in $${t.apiKeyEnv}: check the key`;
  return `${name(t)} answered ${status}: it needs an API key; name the variable holding it with apiKeyEnv in its llm endpoint config`;
}

async function probe(t: EndpointTarget, timeoutMs: number): Promise<Probe> {
  const key = t.apiKeyEnv ? process.env[t.apiKeyEnv] : undefined;
  const headers: Record<string, string> = { accept: "application/json" };
  if (key) headers.authorization = `Bearer ${key}`;
  let res: Response;
  let text: string;
  try {
    res = await fetch(`${t.url}/models`, { headers, signal: AbortSignal.timeout(timeoutMs) });
    text = await res.text();
  } catch (err) {
    const timedOut = err instanceof Error && (err.name === "TimeoutError" || err.name === "AbortError");
    return { target: t, kind: "dead", reason: timedOut ? `no answer in ${Math.round(timeoutMs / 1000)} s` : describeNetworkError(err) };
  }
  const status = `${res.status} ${res.statusText}`.trim();
  if (res.status === 401 || res.status === 403) return { target: t, kind: "refused", message: refusal(t, status, key !== undefined && key !== "") };
  if (!res.ok) return { target: t, kind: "dead", reason: `answered ${status} to GET /models` };
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    body = undefined;
  }
  const list = ModelListSchema.safeParse(body);
  // as the client does, an endpoint that lists nothing is sent any model
  if (!list.success || list.data.data.length === 0) return { target: t, kind: "live", served: null, note: "lists no model; it is sent any model" };
  return { target: t, kind: "live", served: list.data.data.map((m) => m.id) };
}

/** The models the client will send an endpoint: those of its config, else those it serves (`null`: any). */
function routed(p: Probe & { kind: "live" }): string[] | null {
  return p.target.models ?? p.served;
}

function modelResults(live: (Probe & { kind: "live" })[], asked: readonly AskedModel[]): CheckResult[] {
  const byModel = new Map<string, string[]>();
  for (const a of asked) byModel.set(a.model, [...(byModel.get(a.model) ?? []), a.role]);
  const out: CheckResult[] = [];
  for (const [model, roles] of byModel) {
    const who = `${roles.length > 1 ? "roles" : "role"} ${roles.join(", ")} ${roles.length > 1 ? "ask" : "asks"} for`;
    const serving = live.filter((p) => {
      const m = routed(p);
      return m === null || m.includes(model);
    });
    if (serving.length > 0) {
      out.push(result(MODEL_CHECK, model, "ok", `"${model}" that ${who}: served by ${serving.map((p) => p.target.url).join(", ")}`));
      continue;
    }
    const lists = live.map((p) => `${p.target.url} serves ${routed(p)?.join(", ")}`);
    const [one] = live;
    const message =
      live.length === 1 && one
        ? `${name(one.target)} serves ${routed(one)?.join(", ")}, not "${model}" that ${who}`
        : `no LLM endpoint serves "${model}" that ${who} (${lists.join("; ")})`;
    out.push(result(MODEL_CHECK, model, "fail", message));
  }
  return out;
}

/**
 * Every endpoint answers `GET /models` (in parallel, a few seconds each) and
 * the models the workflow's roles ask for are served. An endpoint that does
 * not answer is a warning while another answers; with none answering, or
 * one refusing its API key, the check fails.
 */
export async function checkEndpoints(targets: readonly EndpointTarget[], asked: readonly AskedModel[] = [], timeoutMs = PROBE_TIMEOUT_MS): Promise<CheckResult[]> {
  const probes = await Promise.all(targets.filter((t) => !t.assumed).map((t) => probe(t, timeoutMs)));
  const out: CheckResult[] = [];
  const live = probes.filter((p): p is Probe & { kind: "live" } => p.kind === "live");
  for (const t of targets) {
    if (!t.assumed) continue;
    live.push({ target: t, kind: "live", served: null });
    const serves = t.models ? `serves ${t.models.join(", ")}` : "serves any model";
    const message = t.assumed === "ok" ? `${t.label ?? name(t)} ${serves}` : `${name(t)} is not started here: run and join check it once started (${serves})`;
    out.push(result(CHECK, t.url, t.assumed, message));
  }
  for (const p of probes) {
    const t = p.target;
    if (p.kind === "refused") out.push(result(CHECK, t.url, "fail", p.message));
    else if (p.kind === "dead") {
      const others = live.length;
      out.push(
        others > 0
          ? result(CHECK, t.url, "warn", `${name(t)} does not answer (${p.reason}); going on with the other ${others === 1 ? "one" : others}`)
          : result(CHECK, t.url, "fail", `${name(t)} does not answer (${p.reason})`),
      );
    } else {
      const serves = p.served ? `serves ${p.served.join(", ")}` : (p.note ?? "");
      // the client sends it only the models its config names: one it does not list may be refused
      const unlisted = p.served ? (t.models ?? []).filter((m) => !p.served?.includes(m)) : [];
      const also = unlisted.length > 0 ? `, but it is configured for ${unlisted.map((m) => `"${m}"`).join(", ")}: requests for that may be refused` : "";
      out.push(result(CHECK, t.url, p.note || also ? "warn" : "ok", `${name(t)} answers; ${serves}${also}`));
    }
  }
  // models are judged on the endpoints that answered; with none, the failure above says it all
  if (live.length > 0) out.push(...modelResults(live, asked));
  return out;
}
