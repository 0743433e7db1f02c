/**
 * Simulated LLM servers as separate processes (`matrixd sim-llm`), for the
 * LLM client tests that need real servers: kill one mid-job, read their
 * prefix-cache and request counters from /metrics.
 */
import type { Subprocess } from "bun";
import { type ServerLoad, parsePrometheus, vllmLoad } from "../../src/services/prom.ts";
import { MATRIXD } from "./matrixd.ts";

/** One sim-llm process and its servers. */
export interface SimProcess {
  proc: Subprocess<"ignore", "pipe", "pipe">;
  /** `http://127.0.0.1:PORT` of each server */
  bases: string[];
  /** OpenAI base URLs (`.../v1`) */
  urls: string[];
  /** kill -9 */
  kill(): Promise<void>;
  stop(): Promise<void>;
}

/** What a server's /metrics say, with its request and injected-error counters. */
export interface SimCounters extends ServerLoad {
  requests: number;
  injected429: number;
}

/** Start `matrixd sim-llm --port 0 ARGS...` and wait for its servers' lines. */
export async function startSims(args: string[]): Promise<SimProcess> {
  const proc = Bun.spawn([...MATRIXD, "sim-llm", "--port", "0", ...args], { stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  const servers = Number(args[args.indexOf("--servers") + 1] ?? 1) || 1;
  const bases: string[] = [];
  const decoder = new TextDecoder();
  let text = "";
  const reader = proc.stdout.getReader();
  const deadline = setTimeout(() => proc.kill(9), 30_000);
  try {
    while (bases.length < servers) {
      const { value, done } = await reader.read();
      if (done) break;
      text += decoder.decode(value, { stream: true });
      for (const m of text.matchAll(/listening on (http:\/\/\S+)/g)) if (!bases.includes(m[1] as string)) bases.push(m[1] as string);
    }
  } finally {
    clearTimeout(deadline);
  }
  if (bases.length < servers) throw new Error(`sim-llm did not start: ${text}${await new Response(proc.stderr).text()}`);
  // keep draining its output so it never blocks on a full pipe
  void (async () => {
    while (!(await reader.read()).done) {}
  })().catch(() => {});
  void new Response(proc.stderr).arrayBuffer().catch(() => {});
  return {
    proc,
    bases,
    urls: bases.map((b) => `${b}/v1`),
    async kill() {
      proc.kill(9);
      await proc.exited;
    },
    async stop() {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      proc.kill("SIGTERM");
      const t = setTimeout(() => proc.kill(9), 5000);
      await proc.exited;
      clearTimeout(t);
    },
  };
}

/** A server's counters from its /metrics. */
export async function simCounters(base: string): Promise<SimCounters> {
  const text = await (await fetch(`${base}/metrics`)).text();
  const m = parsePrometheus(text);
  const injected = /sim:injected_errors_total\{code="429"[^}]*\} (\S+)/.exec(text);
  return { ...vllmLoad(text), requests: m.get("sim:requests_total") ?? 0, injected429: Number(injected?.[1] ?? 0) };
}

/** Prefix-cache hit rate (cached prompt tokens / prompt tokens looked up) over servers. */
export function hitRate(counters: readonly ServerLoad[]): number {
  const q = counters.reduce((a, c) => a + c.prefixQueries, 0);
  const h = counters.reduce((a, c) => a + c.prefixHits, 0);
  return q > 0 ? h / q : 0;
}
