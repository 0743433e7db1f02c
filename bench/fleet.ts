/**
 * The simulated GPU fleet, in its own process (`matrixd sim-llm --servers K`),
 * and its counters read from the servers' own /metrics: the benchmark never
 * takes the framework's word for how many tokens were generated.
 */
import type { Subprocess } from "bun";
import { resolveSimOptions } from "../src/sim/options.ts";
import { track } from "./proc.ts";

/** Settings of the fleet, the same for every mode of a run. */
export interface FleetSettings {
  servers: number;
  slots: number;
  /** ceiling of one server, generated tokens per second of wall time */
  decodeTps: number;
  /** sim-llm options passed as flags, e.g. { "agree-rate": 0.3 } or { "scheduling-policy": "priority" } */
  flags: Record<string, number | string>;
  /**
   * Model names served, each by its own servers (model -> servers; they sum
   * to `servers`), e.g. { small: 1, large: 2 } for a workflow that asks a
   * small model and a large one by name. Absent: every server serves the
   * sim's default name and any request may go to any server.
   */
  models?: Record<string, number>;
}

/** Cumulative counters summed over the fleet. */
export interface FleetCounters {
  generationTokens: number;
  promptTokens: number;
  /** integral of running/slots over wall time, summed over servers, seconds */
  runningSeconds: number;
  requests: number;
  /** prompt tokens found in the servers' prefix caches: their prefill was skipped */
  prefixHits: number;
}

export interface Fleet {
  /** OpenAI base URLs, `http://host:port/v1` */
  urls: string[];
  /** the model each server of `urls` serves, when the settings name models */
  models: (string | undefined)[];
  /** fleet ceiling, tokens per second (from the servers' /metrics) */
  ceilingTps: number;
  /** tokens per second of wall time one sequence decodes at on a server that runs it alone */
  unloadedTps: number;
  /** wall seconds a server's step grows by for each prompt token it prefills */
  prefillSPerToken: number;
  pid: number;
  counters(): Promise<FleetCounters>;
  /** requests decoding now, over the fleet */
  running(): Promise<number>;
  stop(): Promise<void>;
}

/** Start the fleet (one sim-llm process per model) and wait until every server answers /metrics. */
export async function startFleet(matrixd: string[], s: FleetSettings): Promise<Fleet> {
  const groups: [string | undefined, number][] = s.models ? Object.entries(s.models) : [[undefined, s.servers]];
  const total = groups.reduce((a, [, n]) => a + n, 0);
  if (total !== s.servers) throw new Error(`fleet: the models' servers (${total}) must sum to servers (${s.servers})`);
  const procs: Subprocess<"ignore", "pipe", "inherit">[] = [];
  const stop = async () => {
    for (const p of procs) p.kill("SIGTERM");
    const timer = setTimeout(() => {
      for (const p of procs) p.kill("SIGKILL");
    }, 5000);
    await Promise.all(procs.map((p) => p.exited));
    clearTimeout(timer);
  };
  const bases: string[] = [];
  const models: (string | undefined)[] = [];
  try {
    for (const [model, servers] of groups) {
      if (servers < 1) continue;
      const args = [...matrixd, "sim-llm", "--port", "0", "--servers", String(servers), "--slots", String(s.slots), "--decode-tps", String(s.decodeTps)];
      if (model !== undefined) args.push("--model", model);
      for (const [k, v] of Object.entries(s.flags)) args.push(`--${k}`, String(v));
      const proc = track(Bun.spawn(args, { stdin: "ignore", stdout: "pipe", stderr: "inherit" }));
      procs.push(proc);
      for (const b of await readUrls(proc, servers)) {
        bases.push(b);
        models.push(model);
      }
    }
  } catch (err) {
    await stop();
    throw err;
  }
  const ceilings = await Promise.all(bases.map(async (b) => gauge(await metricsText(b), "sim:ceiling_tokens_per_second")));
  return {
    urls: bases.map((b) => `${b}/v1`),
    models,
    ceilingTps: ceilings.reduce((a, b) => a + b, 0),
    unloadedTps: unloadedTps(s),
    prefillSPerToken: prefillSPerToken(s),
    pid: procs[0]?.pid ?? 0,
    async counters() {
      const texts = await Promise.all(bases.map(metricsText));
      const sum = (name: string) => texts.reduce((a, t) => a + gauge(t, name), 0);
      return {
        generationTokens: sum("vllm:generation_tokens_total"),
        promptTokens: sum("vllm:prompt_tokens_total"),
        runningSeconds: sum("sim:running_seconds_total"),
        requests: sum("sim:requests_total"),
        prefixHits: sum("vllm:prefix_cache_hits_total"),
      };
    },
    async running() {
      const texts = await Promise.all(bases.map(metricsText));
      return texts.reduce((a, t) => a + gauge(t, "vllm:num_requests_running"), 0);
    },
    stop,
  };
}

/** One sequence's decode speed on an idle server of the fleet: a step with one sequence running, at the fleet's time scale. */
export function unloadedTps(s: Pick<FleetSettings, "slots" | "decodeTps">): number {
  const o = resolveSimOptions({ slots: s.slots, decodeTps: s.decodeTps });
  return 1000 / ((o.stepBaseMs + o.stepPerSeqMs) * o.timeScale);
}

/** Wall seconds of prefill per prompt token not found in the prefix cache (a step computes them before it decodes). */
export function prefillSPerToken(s: Pick<FleetSettings, "slots" | "decodeTps">): number {
  const o = resolveSimOptions({ slots: s.slots, decodeTps: s.decodeTps });
  return o.timeScale / o.prefillTps;
}

/** The URLs of the first `n` "listening on" lines a sim-llm process prints; it is killed if they take over 30 s. */
export async function readUrls(proc: { stdout: ReadableStream<Uint8Array>; kill(signal?: NodeJS.Signals): void }, n: number): Promise<string[]> {
  const urls: string[] = [];
  const decoder = new TextDecoder();
  let text = "";
  const timeout = setTimeout(() => proc.kill("SIGKILL"), 30_000);
  try {
    for await (const chunk of proc.stdout) {
      text += decoder.decode(chunk, { stream: true });
      for (const m of text.matchAll(/listening on (http:\/\/[^\s]+)/g)) if (!urls.includes(m[1] as string)) urls.push(m[1] as string);
      if (urls.length >= n) break;
    }
  } finally {
    clearTimeout(timeout);
  }
  if (urls.length < n) throw new Error(`sim-llm fleet did not start (${urls.length} of ${n} servers): ${text.trim()}`);
  return urls;
}

async function metricsText(base: string): Promise<string> {
  const res = await fetch(`${base}/metrics`);
  if (!res.ok) throw new Error(`${base}/metrics answered ${res.status}`);
  return res.text();
}

/** The value of an unlabelled-by-us series (every label set summed). */
export function gauge(text: string, name: string): number {
  let total = 0;
  let seen = false;
  for (const line of text.split("\n")) {
    if (!line.startsWith(name)) continue;
    const rest = line.slice(name.length);
    if (rest[0] !== "{" && rest[0] !== " ") continue;
    const v = Number(line.slice(line.lastIndexOf(" ") + 1));
    if (Number.isFinite(v)) {
      total += v;
      seen = true;
    }
  }
  if (!seen) throw new Error(`metric ${name} not found`);
  return total;
}
