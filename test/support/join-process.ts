import type { Subprocess } from "bun";
import { closeSync, openSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { JobStatus, Member } from "../../src/cluster/types.ts";
import { matrixdBin } from "./matrixd.ts";
import { waitFor } from "./wait.ts";

/** One `matrixd join` process of the compiled binary, with its HTTP API on a free loopback port. */
export class JoinProcess {
  readonly url: string;
  constructor(
    readonly name: string,
    readonly proc: Subprocess,
    readonly port: number,
    readonly logPath: string,
  ) {
    this.url = `http://127.0.0.1:${port}`;
  }

  get alive(): boolean {
    return this.proc.exitCode === null && this.proc.signalCode === null;
  }

  kill9(): Promise<number> {
    this.proc.kill("SIGKILL");
    return this.proc.exited;
  }

  /** SIGTERM; resolves with the exit code (bounded: SIGKILL after `ms`). */
  async term(ms = 20_000): Promise<number> {
    this.proc.kill("SIGTERM");
    const t = setTimeout(() => this.proc.kill("SIGKILL"), ms);
    const code = await this.proc.exited;
    clearTimeout(t);
    return code;
  }

  log(tail = 4000): string {
    try {
      return readFileSync(this.logPath, "utf8").slice(-tail);
    } catch {
      return "";
    }
  }

  /** A request to the node; an error (a timeout included) names the request and the node. */
  async #fetch(method: string, path: string, timeoutMs: number, init: RequestInit = {}): Promise<Response> {
    try {
      return await fetch(`${this.url}${path}`, { ...init, method, signal: AbortSignal.timeout(timeoutMs) });
    } catch (err) {
      throw new Error(`${method} ${path} on ${this.name}: ${err instanceof Error ? `${err.name}: ${err.message}` : String(err)} (limit ${timeoutMs} ms)`);
    }
  }

  async get<T>(path: string): Promise<T> {
    const res = await this.#fetch("GET", path, 10_000);
    if (!res.ok) throw new Error(`GET ${path} on ${this.name}: ${res.status} ${await res.text()}`);
    return (await res.json()) as T;
  }

  async submit(workflow: string, seeds: readonly unknown[], config: Record<string, unknown> = {}): Promise<{ id: string; total: number }> {
    const res = await this.#fetch("POST", "/v1/jobs", 60_000, {
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ workflow, seeds, config }),
    });
    if (res.status !== 201) throw new Error(`submit to ${this.name}: ${res.status} ${await res.text()}`);
    return (await res.json()) as { id: string; total: number };
  }

  job(id: string): Promise<JobStatus> {
    return this.get<JobStatus>(`/v1/jobs/${encodeURIComponent(id)}`);
  }

  async members(): Promise<Member[]> {
    return (await this.get<{ members: Member[] }>("/v1/cluster")).members;
  }

  // biome-ignore lint/suspicious/noExplicitAny: rows are checked by each test
  async results(id: string): Promise<any[]> {
    const res = await this.#fetch("GET", `/v1/jobs/${encodeURIComponent(id)}/results`, 60_000);
    if (!res.ok) throw new Error(`results on ${this.name}: ${res.status}`);
    const text = await res.text();
    return text
      .split("\n")
      .filter((l) => l.length > 0)
      .map((l) => JSON.parse(l));
  }

  async metrics(): Promise<string> {
    const res = await this.#fetch("GET", "/metrics", 10_000);
    return res.text();
  }
}

/** Kill -9 every node of `procs` still alive, and empty the list (a test's clean-up). */
export async function killAll(procs: JoinProcess[]): Promise<void> {
  const alive = procs.splice(0).filter((p) => p.alive);
  await Promise.all(alive.map((p) => p.kill9()));
}

/** Poll the live nodes until the job ends (any live node answers); bounded, and the error shows each node's log tail. */
export async function waitDone(procs: readonly JoinProcess[], id: string, timeoutMs: number): Promise<JobStatus> {
  let last: unknown;
  const ended = async (): Promise<JobStatus | undefined> => {
    for (const p of procs.filter((x) => x.alive)) {
      try {
        const st = await p.job(id);
        last = st;
        return st.state !== "running" ? st : undefined;
      } catch (err) {
        last = String(err);
      }
    }
    return undefined;
  };
  try {
    return await waitFor(`job ${id} to end`, ended, timeoutMs, 200);
  } catch (err) {
    const logs = procs.map((p) => `--- ${p.name}\n${p.log(1500)}`).join("\n");
    throw new Error(`${err instanceof Error ? err.message : String(err)}; last: ${JSON.stringify(last)}\n${logs}`);
  }
}

/** The value of a Prometheus sample (summed over its label sets matching `labels`). */
export function metric(text: string, name: string, labels = ""): number {
  let sum = 0;
  for (const line of text.split("\n")) {
    if (!line.startsWith(`${name}{`) || !line.includes(labels)) continue;
    sum += Number(line.slice(line.lastIndexOf(" ") + 1));
  }
  return sum;
}

/**
 * Start `matrixd join` (the compiled binary) and wait until its HTTP API
 * answers. Its JSON log goes to a file in `dir`.
 */
export async function spawnJoin(opts: {
  name: string;
  nats: string;
  dir: string;
  config?: Record<string, unknown>;
  args?: string[];
  timeoutMs?: number;
  /** the matrixd command (default: the compiled binary, built when stale) */
  command?: string[];
}): Promise<JoinProcess> {
  const cmd = opts.command ?? [await matrixdBin()];
  const cfgPath = join(opts.dir, `${opts.name}.json`);
  writeFileSync(cfgPath, JSON.stringify(opts.config ?? {}));
  const logPath = join(opts.dir, `${opts.name}.log`);
  const fd = openSync(logPath, "a");
  const logStart = readFileSync(logPath, "utf8").length;
  // Port 0: the node picks a free port itself and logs the URL, so nothing else can take it meanwhile.
  const proc = Bun.spawn(
    [...cmd, "join", "--nats", opts.nats, "--http", "127.0.0.1:0", "--name", opts.name, "--config", cfgPath, "--log-level", "info", ...(opts.args ?? [])],
    { stdin: "ignore", stdout: fd, stderr: fd, env: { ...process.env } },
  );
  closeSync(fd);
  const timeoutMs = opts.timeoutMs ?? 30_000;
  const logText = () => readFileSync(logPath, "utf8").slice(logStart);
  const exited = () => proc.exitCode !== null || proc.signalCode !== null;
  const answering = async (): Promise<JoinProcess | undefined> => {
    if (exited()) throw new Error(`matrixd join ${opts.name} exited with ${proc.exitCode ?? proc.signalCode}:\n${logText()}`);
    const m = /"url":"http:\/\/127\.0\.0\.1:(\d+)","msg":"HTTP API listening"/.exec(logText());
    if (!m) return undefined;
    const p = new JoinProcess(opts.name, proc, Number(m[1]), logPath);
    try {
      const res = await fetch(`${p.url}/healthz`, { signal: AbortSignal.timeout(1000) });
      return res.ok ? p : undefined;
    } catch {
      return undefined; // not answering yet
    }
  };
  try {
    return await waitFor(`matrixd join ${opts.name} to answer /healthz`, answering, timeoutMs, 100);
  } catch (err) {
    if (exited()) throw err;
    proc.kill("SIGKILL");
    throw new Error(`${err instanceof Error ? err.message : String(err)}:\n${logText()}`);
  }
}
