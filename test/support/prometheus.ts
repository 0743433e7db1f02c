/**
 * A real Prometheus (Debian's `prometheus` package) for tests: its own
 * config and TSDB in a temporary folder, a free loopback port, a bounded
 * life (killed by `timeout` even if the test process dies), and its HTTP
 * API. `promtool check metrics` on an exposition.
 */
import type { Subprocess } from "bun";
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { freePort } from "../../src/util/net.ts";
import { waitFor } from "./wait.ts";

export const PROMETHEUS = "/usr/bin/prometheus";
export const PROMTOOL = "/usr/bin/promtool";

/** Why Prometheus cannot run here, or undefined when it can. */
export function prometheusMissing(): string | undefined {
  if (!existsSync(PROMETHEUS) || !existsSync(PROMTOOL)) return `${PROMETHEUS} or ${PROMTOOL} is missing (apt-get install -y --no-install-recommends prometheus)`;
  return undefined;
}

/** One sample of an instant query's answer. */
export interface PromSample {
  metric: Record<string, string>;
  value: [number, string];
}

export interface PromTarget {
  labels: Record<string, string>;
  scrapeUrl: string;
  health: "up" | "down" | "unknown";
  lastError: string;
}

export interface PrometheusServer {
  url: string;
  proc: Subprocess;
  /** an instant query (`/api/v1/query`); throws on an error answer */
  query(expr: string): Promise<PromSample[]>;
  /** the active targets (`/api/v1/targets`) */
  targets(): Promise<PromTarget[]>;
  stop(): Promise<void>;
}

/** A scrape job: its name, targets (`host:port`) and optional bearer token. */
export interface ScrapeJob {
  job: string;
  targets: string[];
  token?: string;
}

/** The YAML of a scrape config: every job scraped each `intervalSec`. */
export function scrapeConfig(jobs: readonly ScrapeJob[], intervalSec = 1): string {
  const lines = ["global:", `  scrape_interval: ${intervalSec}s`, `  scrape_timeout: ${intervalSec}s`, `  evaluation_interval: ${intervalSec}s`, "scrape_configs:"];
  for (const j of jobs) {
    lines.push(`  - job_name: ${JSON.stringify(j.job)}`);
    if (j.token) lines.push("    authorization:", `      credentials: ${JSON.stringify(j.token)}`);
    lines.push("    static_configs:", `      - targets: [${j.targets.map((t) => JSON.stringify(t)).join(", ")}]`);
  }
  return `${lines.join("\n")}\n`;
}

/** Start Prometheus in `dir` scraping `jobs`; it is killed after `lifeSec` whatever happens. */
export async function startPrometheus(dir: string, jobs: readonly ScrapeJob[], lifeSec = 300): Promise<PrometheusServer> {
  const missing = prometheusMissing();
  if (missing) throw new Error(missing);
  const config = join(dir, "prometheus.yml");
  writeFileSync(config, scrapeConfig(jobs));
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const proc = Bun.spawn(
    [
      "timeout", "-s", "KILL", String(lifeSec),
      PROMETHEUS,
      `--config.file=${config}`,
      `--storage.tsdb.path=${join(dir, "tsdb")}`,
      `--web.listen-address=127.0.0.1:${port}`,
      "--log.level=warn",
    ],
    { stdin: "ignore", stdout: "ignore", stderr: Bun.file(join(dir, "prometheus.log")) },
  );
  const api = async <T>(path: string): Promise<T> => {
    const res = await fetch(`${url}${path}`, { signal: AbortSignal.timeout(5000) });
    const body = (await res.json()) as { status: string; data: T; error?: string };
    if (body.status !== "success") throw new Error(`prometheus ${path}: ${body.error}`);
    return body.data;
  };
  await waitFor(
    "prometheus to be ready",
    async () => {
      if (proc.exitCode !== null) throw new Error(`prometheus exited with ${proc.exitCode}: ${await Bun.file(join(dir, "prometheus.log")).text()}`);
      return fetch(`${url}/-/ready`).then((r) => r.ok, () => false);
    },
    30_000,
    100,
  );
  return {
    url,
    proc,
    query: async (expr) => (await api<{ resultType: string; result: PromSample[] }>(`/api/v1/query?query=${encodeURIComponent(expr)}`)).result,
    targets: async () => (await api<{ activeTargets: PromTarget[] }>("/api/v1/targets")).activeTargets,
    stop: async () => {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      proc.kill("SIGTERM");
      const t = setTimeout(() => proc.kill("SIGKILL"), 5000);
      await proc.exited;
      clearTimeout(t);
    },
  };
}

/** What `promtool check metrics` says of an exposition (stdout and stderr), and its exit code. */
export async function promtoolCheck(text: string): Promise<{ code: number; output: string }> {
  const proc = Bun.spawn([PROMTOOL, "check", "metrics"], { stdin: new TextEncoder().encode(text), stdout: "pipe", stderr: "pipe" });
  const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  return { code, output: (out + err).trim() };
}
