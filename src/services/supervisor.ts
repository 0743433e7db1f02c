import type { Subprocess } from "bun";
import { z } from "zod";
import { describe } from "../errors.ts";
import type { Logger } from "../log.ts";
import { readLines } from "../util/lines.ts";
import { freePort } from "../util/net.ts";
import type { LlmEndpointInput } from "../llm/config.ts";
import { endGroup } from "./group.ts";
import { portFree } from "./port.ts";
import { dialectFor, probeKind } from "../llm/dialect/index.ts";
import { type Dialect, KIND_SETTINGS, type ServerLoad } from "../llm/dialect/types.ts";

/** One supervised LLM server: a command serving the OpenAI API on `{port}`. */
export const SuperviseSchema = z.strictObject({
  /** e.g. `vllm serve meta-llama/Llama-3.1-8B-Instruct --port {port}` */
  command: z.string().min(1).refine((c) => c.includes("{port}"), "must contain {port}"),
  /** model name it serves, as agents ask for it */
  model: z.string().min(1).optional(),
  name: z.string().min(1).optional(),
  /** fixed port; by default a free one is picked */
  port: z.number().int().min(1).max(65535).optional(),
  /** how long a start may take before it counts as failed (vLLM loads for minutes) */
  startTimeoutMs: z.number().int().positive().default(900_000),
  /** a health probe slower than this fails */
  healthTimeoutMs: z.number().int().positive().default(5_000),
  /** failed probes in a row after which the server is restarted */
  unhealthyAfter: z.number().int().positive().default(3),
  /** first restart delay; doubles each time, back to this after a long healthy run */
  restartBackoffMs: z.number().int().nonnegative().default(1_000),
  maxBackoffMs: z.number().int().positive().default(60_000),
  /** SIGTERM, then SIGKILL after this long */
  graceMs: z.number().int().positive().default(10_000),
  /** requests in flight the client sends it at most (below, the limit follows its slots) */
  maxConcurrency: z.number().int().positive().default(1024),
  /** the server's kind; `auto` finds it out once it answers */
  kind: z.enum(KIND_SETTINGS).default("auto"),
  /** sequences it runs at once; by default read from the command (`--max-num-seqs`, `--parallel`...) or the server */
  slots: z.number().int().positive().optional(),
});
export type SuperviseSpec = z.infer<typeof SuperviseSchema>;

export type SupervisorState = "starting" | "ready" | "restarting" | "stopped";

/** A restart of a supervised server: which one it is, when it starts again, and why the last run ended. */
export interface SupervisorRestart {
  restarts: number;
  inMs: number;
  reason: string;
}

/**
 * The sequences a server command runs at once, when it says: vLLM
 * `--max-num-seqs`, llama.cpp `--parallel`/`-np`, SGLang
 * `--max-running-requests`, TGI `--max-concurrent-requests`.
 */
export function slotsOfCommand(command: string): number | undefined {
  const m = /(?:^|\s)(?:--max-num-seqs|--parallel|-np|--max-running-requests|--max-concurrent-requests)(?:=|\s+)(\d+)(?=\s|$)/.exec(command);
  const n = m ? Number(m[1]) : NaN;
  return Number.isInteger(n) && n > 0 ? n : undefined;
}

/** The command that re-runs this matrixd as a guard (compiled binary or `bun cmd/matrixd.ts`). */
export function guardCommand(): string[] {
  const script = process.argv[1];
  const compiled = !script || script.startsWith("/$bunfs/") || script === process.execPath;
  return compiled ? [process.execPath, "__guard"] : [process.execPath, script, "__guard"];
}


/** How long a restart waits for the old server's port to be let go before it moves to another. */
const PORT_WAIT_MS = 3_000;

/**
 * Starts a local LLM server, waits for its /health, reads its /metrics every
 * second, restarts it with exponential backoff when it dies or stops
 * answering, and stops it on shutdown. The server runs under a guard process
 * (see guard.ts) that leads a process group of its own: whichever of the
 * guard, a shell or the server dies, the rest of the group is ended before
 * the next start, and the guard ends the group when matrixd dies, so no
 * server outlives matrixd or holds the port of the next one.
 */
export class Supervisor {
  state: SupervisorState = "starting";
  restarts = 0;
  load: ServerLoad | undefined;
  /** the last health probe answered (while ready) */
  healthy = false;
  port = 0;
  readonly name: string;
  readonly #listeners = new Set<(s: Supervisor) => void>();
  readonly #restartListeners = new Set<(r: SupervisorRestart) => void>();
  /** why the last run of the server ended */
  #ended = "";
  #proc: Subprocess<"pipe", "pipe", "pipe"> | undefined;
  /** the ending of #proc and its group, once begun */
  #ending: Promise<void> | undefined;
  #stopped = false;
  #wake: (() => void) | undefined;
  #readyWaiters: { resolve: () => void; reject: (e: Error) => void }[] = [];
  #loop: Promise<void> | undefined;
  #dialect: Dialect | undefined;
  /**
   * A count that grows while the server answers requests (the client's
   * answers from it); a health probe that times out while it grows finds the
   * server busy, not dead.
   */
  progress: (() => number) | undefined;

  constructor(
    readonly spec: SuperviseSpec,
    private readonly log: Logger,
  ) {
    this.name = spec.name ?? spec.model ?? spec.command.split(/\s+/)[0] ?? "llm";
  }

  /** Its OpenAI base URL; it changes only when a restart finds the port taken and moves. */
  get url(): string {
    return `http://127.0.0.1:${this.port}/v1`;
  }

  /** The server as an endpoint of the LLM client. */
  endpoint(): LlmEndpointInput {
    const slots = this.slots;
    return {
      url: this.url,
      maxConcurrency: this.spec.maxConcurrency,
      kind: this.spec.kind,
      ...(slots ? { slots } : {}),
      ...(this.spec.model ? { models: [this.spec.model] } : {}),
    };
  }

  /** Whether requests may go to the server now: ready, and its last probe answered. */
  get up(): boolean {
    return this.state === "ready" && this.healthy;
  }

  /**
   * Call `fn` on every change of state and after every metrics read (about
   * once a second while ready). Returns the way to stop listening.
   */
  onChange(fn: (s: Supervisor) => void): () => void {
    this.#listeners.add(fn);
    return () => this.#listeners.delete(fn);
  }

  /** Call `fn` each time the server is restarted (it died or stopped answering). Returns the way to stop listening. */
  onRestart(fn: (r: SupervisorRestart) => void): () => void {
    this.#restartListeners.add(fn);
    return () => this.#restartListeners.delete(fn);
  }

  #changed(): void {
    for (const fn of this.#listeners) {
      try {
        fn(this);
      } catch (err) {
        this.log.error({ service: this.name, err: describe(err) }, "supervisor listener failed");
      }
    }
  }

  #setState(state: SupervisorState): void {
    if (state !== "ready") this.healthy = false;
    if (this.state === state) return;
    this.state = state;
    this.#changed();
  }

  /** Pick the port and start the first run; `ready()` tells when it answers. */
  async start(): Promise<void> {
    this.port = this.spec.port ?? (await freePort());
    this.#loop = this.#run();
  }

  /** Resolves when the server first answers /health; rejects if the first start times out. */
  ready(): Promise<void> {
    if (this.state === "ready") return Promise.resolve();
    return new Promise((resolve, reject) => this.#readyWaiters.push({ resolve, reject }));
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    this.#setState("stopped");
    this.#wake?.();
    await this.#kill();
    await this.#loop;
    for (const w of this.#readyWaiters.splice(0)) w.reject(new Error(`${this.name}: stopped before it was ready`));
  }

  async #run(): Promise<void> {
    let backoff = this.spec.restartBackoffMs;
    let first = true;
    while (!this.#stopped) {
      const began = Date.now();
      const ok = await this.#once(first);
      first = false;
      if (this.#stopped) break;
      this.#setState("restarting");
      this.restarts++;
      // A long healthy run resets the backoff; a crash loop keeps doubling it.
      if (ok && Date.now() - began > 60_000) backoff = this.spec.restartBackoffMs;
      this.log.warn({ event: "llm.restarted", service: this.name, restarts: this.restarts, inMs: backoff, reason: this.#ended }, "restarting the LLM server");
      const restart: SupervisorRestart = { restarts: this.restarts, inMs: backoff, reason: this.#ended || "it stopped" };
      for (const fn of this.#restartListeners) {
        try {
          fn(restart);
        } catch (err) {
          this.log.error({ service: this.name, err: describe(err) }, "supervisor listener failed");
        }
      }
      await this.#sleep(backoff);
      backoff = Math.min(backoff * 2 || 1, this.spec.maxBackoffMs);
      if (!this.#stopped) await this.#portForRestart();
    }
  }

  /**
   * The old server is gone, but its port may still be held (by a process
   * that left the group, or another program that took it): wait a little,
   * then move to a free port unless the port is fixed.
   */
  async #portForRestart(): Promise<void> {
    const deadline = Date.now() + PORT_WAIT_MS;
    while (!(await portFree(this.port))) {
      if (Date.now() >= deadline) {
        if (this.spec.port !== undefined) {
          this.log.warn({ service: this.name, port: this.port }, "the LLM server's port is still taken; starting it there anyway");
          return;
        }
        const old = this.port;
        this.port = await freePort();
        this.log.warn({ service: this.name, port: old, newPort: this.port }, "the LLM server's port is still taken; moving it to a free one");
        this.#changed();
        return;
      }
      await Bun.sleep(100);
    }
  }

  /** One life of the server: start, wait for health, watch. Returns whether it got ready. */
  async #once(first: boolean): Promise<boolean> {
    const command = this.spec.command.replaceAll("{port}", String(this.port));
    this.#setState("starting");
    this.load = undefined;
    this.#ended = "";
    this.log.info({ service: this.name, command }, "starting the LLM server");
    // detached: the guard leads a new process group (and session), which the server's command joins
    const proc = Bun.spawn([...guardCommand(), String(this.spec.graceMs), command], {
      stdin: "pipe",
      stdout: "pipe",
      stderr: "pipe",
      detached: true,
    });
    this.#proc = proc;
    this.#ending = undefined;
    this.#pipeLogs(proc.stdout, "stdout");
    this.#pipeLogs(proc.stderr, "stderr");
    let exited = false;
    void proc.exited.then((code) => {
      exited = true;
      if (!this.#stopped) {
        this.log.warn({ service: this.name, code }, "the LLM server exited");
        // killed for not answering, it keeps that reason
        this.#ended ||= `it exited with code ${code}`;
        // say so at once: requests stop going to it while it restarts
        if (this.#proc === proc) this.#setState("restarting");
      }
      this.#wake?.();
    });

    const deadline = Date.now() + this.spec.startTimeoutMs;
    while (!exited && !this.#stopped && !(await this.#healthy())) {
      if (Date.now() > deadline) {
        const err = new Error(`${this.name}: not healthy within ${this.spec.startTimeoutMs} ms of starting`);
        this.log.error({ service: this.name }, err.message);
        this.#ended = `it was not healthy within ${this.spec.startTimeoutMs} ms of starting`;
        if (first) for (const w of this.#readyWaiters.splice(0)) w.reject(err);
        await this.#kill();
        return false;
      }
      await this.#sleep(250);
    }
    if (exited || this.#stopped) {
      await this.#kill();
      return false;
    }
    await this.#findKind();
    // the first load comes with the news that it is up, so capacity is known at once
    await this.#readMetrics();
    this.healthy = true;
    this.#setState("ready");
    this.log.info({ service: this.name, url: this.url }, "the LLM server is ready");
    for (const w of this.#readyWaiters.splice(0)) w.resolve();

    let failures = 0;
    let answers = this.progress?.() ?? 0;
    while (!exited && !this.#stopped) {
      await this.#sleep(1_000);
      if (exited || this.#stopped) break;
      const [probe] = await Promise.all([this.#probe(), this.#readMetrics()]);
      if (exited || this.#stopped) break;
      const now = this.progress?.() ?? 0;
      // a probe that times out while requests are being answered meets a busy server, not a dead one
      const healthy = probe === "ok" || (probe === "slow" && now > answers);
      if (probe === "slow" && healthy) this.log.debug({ service: this.name }, "health probe timed out while the server answers requests: busy");
      answers = now;
      this.healthy = healthy;
      this.#changed();
      failures = healthy ? 0 : failures + 1;
      if (failures >= this.spec.unhealthyAfter) {
        this.log.warn({ service: this.name, failures }, "the LLM server stopped answering");
        this.#ended = `it stopped answering (${failures} health probes failed)`;
        break;
      }
    }
    await this.#kill();
    return true;
  }

  async #healthy(): Promise<boolean> {
    return (await this.#probe()) === "ok";
  }

  /** One /health probe: answered ok, timed out ("slow"), or failed (refused, an error status). */
  async #probe(): Promise<"ok" | "slow" | "failed"> {
    try {
      const res = await fetch(`http://127.0.0.1:${this.port}/health`, {
        signal: AbortSignal.timeout(this.spec.healthTimeoutMs),
      });
      await res.arrayBuffer();
      return res.ok ? "ok" : "failed";
    } catch (err) {
      return err instanceof Error && err.name === "TimeoutError" ? "slow" : "failed";
    }
  }

  /** The server's kind, given or found out once it answers; its slots from the command when it says them there. */
  async #findKind(): Promise<void> {
    if (this.#dialect) return;
    let kind = this.spec.kind;
    if (kind === "auto") {
      const found = await probeKind(this.url, { timeoutMs: this.spec.healthTimeoutMs });
      kind = found.kind;
      this.log.info({ service: this.name, kind, why: found.why }, "the LLM server's kind");
    }
    this.#dialect = dialectFor(kind);
  }

  /** Sequences the server runs at once: the spec's, else what its command line sets. */
  get slots(): number | undefined {
    return this.spec.slots ?? slotsOfCommand(this.spec.command);
  }

  async #readMetrics(): Promise<void> {
    const url = this.#dialect?.metricsUrl(this.url);
    if (!url) return;
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(2_000) });
      if (res.ok) {
        const load = this.#dialect?.parseLoad(await res.text());
        if (load && load.missing.length === 0) this.load = load;
      } else await res.arrayBuffer();
    } catch (err) {
      this.log.debug({ service: this.name, err: describe(err) }, "cannot read metrics");
    }
  }

  /** End the current server and its guard; once, however many ask. */
  #kill(): Promise<void> {
    const proc = this.#proc;
    if (!proc) return Promise.resolve();
    this.#ending ??= this.#end(proc);
    return this.#ending;
  }

  /**
   * Close the guard's stdin: it stops the server's group (SIGTERM, then
   * SIGKILL after the grace). Then end whatever of the group is left: all of
   * it when the guard itself was killed.
   */
  async #end(proc: Subprocess<"pipe", "pipe", "pipe">): Promise<void> {
    try {
      proc.stdin.end();
    } catch {
      // already closed
    }
    const timer = setTimeout(() => proc.kill(9), this.spec.graceMs + 2_000);
    await proc.exited;
    clearTimeout(timer);
    const stuck = await endGroup(proc.pid, this.spec.graceMs);
    if (stuck.length > 0) this.log.error({ service: this.name, pids: stuck }, "processes of the LLM server outlived SIGKILL");
  }

  #pipeLogs(stream: ReadableStream<Uint8Array>, which: "stdout" | "stderr"): void {
    void (async () => {
      try {
        for await (const line of readLines(stream)) if (line) this.log.info({ service: this.name, stream: which }, line);
      } catch {
        // the stream ends with the process
      }
    })();
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(done, ms);
      function done() {
        clearTimeout(t);
        resolve();
      }
      this.#wake = done;
    });
  }
}
