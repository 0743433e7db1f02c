import type { Logger } from "../log.ts";
import {
  EnvError,
  type Env,
  type EnvLimits,
  type EnvService,
  type EnvSpec,
  type ExecOptions,
  type ExecResult,
} from "./types.ts";
import { Serial, newEnvId, splitWorkPath, toBytes } from "./util.ts";

/** What a driver is asked to create: the spec completed with the node's defaults. */
export interface ResolvedSpec {
  image: string;
  memoryMb: number;
  cpus: number;
  pids: number;
  timeoutMs: number;
  workDirMb: number;
}

/** One exec as a driver receives it: checked and completed. */
export interface DriverExec {
  cmd: string[];
  stdin?: Uint8Array;
  timeoutMs: number;
  env: Record<string, string>;
}

/** A live sandbox, as a driver makes it. The pool calls one method at a time. */
export interface DriverEnv {
  exec(req: DriverExec): Promise<ExecResult>;
  /** `parts` is a checked relative path, split on "/" */
  put(parts: string[], data: Uint8Array): Promise<void>;
  get(parts: string[]): Promise<Uint8Array>;
  /** Write several files at once (where one call is cheaper than many); else `put` is called per file. */
  putMany?(files: Array<{ parts: string[]; data: Uint8Array }>): Promise<void>;
  /** Kill what runs (even an exec in progress) and delete everything. */
  destroy(): Promise<void>;
}

/** A way of making sandboxes: docker or bwrap. */
export interface Driver {
  readonly name: "docker" | "bwrap";
  /** Remove what the node's runs that are over left, never what a live run holds; returns how many environments. */
  cleanupLeftovers(): Promise<number>;
  create(id: string, spec: ResolvedSpec): Promise<DriverEnv>;
  close(): Promise<void>;
}

interface Waiter {
  resolve: () => void;
  reject: (err: unknown) => void;
}

/** Bounds the most environments alive at once; waiters are served first come, first served. */
class Slots {
  private used = 0;
  private readonly waiters: Waiter[] = [];

  constructor(readonly capacity: number) {}

  get inUse(): number {
    return this.used;
  }

  take(signal?: AbortSignal): Promise<void> {
    if (signal?.aborted) return Promise.reject(abortError(signal));
    if (this.used < this.capacity && this.waiters.length === 0) {
      this.used++;
      return Promise.resolve();
    }
    return new Promise<void>((resolve, reject) => {
      const onAbort = () => {
        const i = this.waiters.indexOf(waiter);
        if (i >= 0) this.waiters.splice(i, 1);
        reject(abortError(signal));
      };
      const waiter: Waiter = {
        resolve: () => {
          signal?.removeEventListener("abort", onAbort);
          resolve();
        },
        reject: (err) => {
          signal?.removeEventListener("abort", onAbort);
          reject(err);
        },
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      this.waiters.push(waiter);
    });
  }

  give(): void {
    const next = this.waiters.shift();
    if (next) next.resolve();
    else this.used--;
  }

  rejectAll(err: unknown): void {
    for (const w of this.waiters.splice(0)) w.reject(err);
  }
}

function abortError(signal: AbortSignal | undefined): EnvError {
  const why = signal?.reason instanceof Error ? `: ${signal.reason.message}` : "";
  return new EnvError(`Environment request aborted${why}`, "aborted", { cause: signal?.reason });
}

/** An environment as handed out: checks paths, runs one operation at a time, releases once. */
class EnvHandle implements Env {
  private readonly serial = new Serial();
  private state: "live" | "releasing" | "released" = "live";
  private releasing: Promise<void> | undefined;
  private unlinkSignal: (() => void) | undefined;

  constructor(
    readonly id: string,
    readonly owner: string,
    private readonly inner: DriverEnv,
    private readonly spec: ResolvedSpec,
    private readonly onGone: (env: EnvHandle) => void,
    private readonly log: Logger,
  ) {}

  /** Release when `signal` aborts (the task was cancelled or timed out). */
  bindSignal(signal: AbortSignal | undefined): void {
    if (!signal) return;
    const onAbort = () => void this.release();
    signal.addEventListener("abort", onAbort, { once: true });
    this.unlinkSignal = () => signal.removeEventListener("abort", onAbort);
  }

  exec(cmd: string[], opts: ExecOptions = {}): Promise<ExecResult> {
    if (!Array.isArray(cmd) || cmd.length === 0 || cmd.some((a) => typeof a !== "string" || a.includes("\0"))) {
      return Promise.reject(new EnvError("exec needs a command: a non-empty array of strings without NUL", "failed"));
    }
    for (const [k, v] of Object.entries(opts.env ?? {})) {
      if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(k) || typeof v !== "string" || v.includes("\0")) {
        return Promise.reject(new EnvError(`exec env: bad variable ${JSON.stringify(k)} (a name of letters, digits and _, a string value without NUL)`, "failed"));
      }
    }
    const timeoutMs = opts.timeoutMs ?? this.spec.timeoutMs;
    if (!(timeoutMs > 0)) return Promise.reject(new EnvError(`exec timeoutMs must be positive, got ${timeoutMs}`, "failed"));
    return this.op(() =>
      this.inner.exec({
        cmd,
        stdin: opts.stdin === undefined ? undefined : toBytes(opts.stdin),
        timeoutMs,
        env: opts.env ?? {},
      }),
    );
  }

  put(path: string, data: string | Uint8Array): Promise<void> {
    let parts: string[];
    try {
      parts = splitWorkPath(path);
    } catch (err) {
      return Promise.reject(err);
    }
    const bytes = toBytes(data);
    if (bytes.byteLength > this.spec.workDirMb * 1024 * 1024) {
      return Promise.reject(new EnvError(`Cannot put ${path}: ${bytes.byteLength} bytes exceed the work folder's ${this.spec.workDirMb} MiB`, "failed"));
    }
    return this.op(() => this.inner.put(parts, bytes));
  }

  get(path: string): Promise<Uint8Array> {
    let parts: string[];
    try {
      parts = splitWorkPath(path);
    } catch (err) {
      return Promise.reject(err);
    }
    return this.op(() => this.inner.get(parts));
  }

  /** The spec's files, before the environment is handed out. */
  async putFiles(files: Record<string, string>): Promise<void> {
    const list = Object.entries(files).map(([path, text]) => ({ parts: splitWorkPath(path), data: toBytes(text) }));
    if (list.length === 0) return;
    const total = list.reduce((n, f) => n + f.data.byteLength, 0);
    if (total > this.spec.workDirMb * 1024 * 1024) {
      throw new EnvError(`Cannot put the spec's files: ${total} bytes exceed the work folder's ${this.spec.workDirMb} MiB`, "failed");
    }
    const inner = this.inner;
    if (inner.putMany) await this.op(() => inner.putMany!(list));
    else for (const f of list) await this.op(() => inner.put(f.parts, f.data));
  }

  release(): Promise<void> {
    if (this.releasing) return this.releasing;
    this.state = "releasing";
    this.unlinkSignal?.();
    // Not queued behind a running exec: destroy kills it.
    this.releasing = this.inner
      .destroy()
      .catch((err) => this.log.warn({ env: this.id, err }, "environment release failed"))
      .finally(() => {
        this.state = "released";
        this.onGone(this);
      });
    return this.releasing;
  }

  private op<T>(job: () => Promise<T>): Promise<T> {
    if (this.state !== "live") return Promise.reject(this.releasedError());
    return this.serial.run(() => (this.state === "live" ? job() : Promise.reject(this.releasedError())));
  }

  private releasedError(): EnvError {
    return new EnvError(`Environment ${this.id} was released`, "released");
  }
}

/** The pool: capacity, owners, leftovers at start, one shutdown. */
export class EnvPoolImpl implements EnvService {
  private readonly slots: Slots;
  private readonly live = new Map<string, EnvHandle>();
  private readonly releaseListeners = new Set<() => void>();
  private closed = false;

  constructor(
    private readonly driverImpl: Driver,
    capacity: number,
    private readonly defaults: EnvLimits & { image: string },
    private readonly log: Logger,
  ) {
    this.slots = new Slots(capacity);
  }

  get driver(): "docker" | "bwrap" {
    return this.driverImpl.name;
  }

  get capacity(): number {
    return this.slots.capacity;
  }

  inUse(): number {
    return this.slots.inUse;
  }

  async acquire(owner: string, spec: EnvSpec = {}, signal?: AbortSignal): Promise<Env> {
    if (this.closed) throw new EnvError("The environment service is closed", "closed");
    const resolved = this.resolve(spec);
    await this.slots.take(signal);
    if (this.closed) {
      this.slots.give();
      throw new EnvError("The environment service is closed", "closed");
    }
    const id = newEnvId();
    let inner: DriverEnv;
    try {
      inner = await this.driverImpl.create(id, resolved);
    } catch (err) {
      this.slots.give();
      throw err instanceof EnvError ? err : new EnvError(`Cannot create a ${this.driver} environment: ${String(err)}`, "failed", { cause: err });
    }
    const env = new EnvHandle(id, owner, inner, resolved, (e) => this.gone(e), this.log);
    this.live.set(id, env);
    try {
      await env.putFiles(spec.files ?? {});
      if (signal?.aborted || this.closed) throw signal?.aborted ? abortError(signal) : new EnvError("The environment service is closed", "closed");
    } catch (err) {
      await env.release();
      throw err;
    }
    env.bindSignal(signal);
    this.log.debug({ env: id, owner }, "environment acquired");
    return env;
  }

  find(id: string): Env | undefined {
    return this.live.get(id);
  }

  onRelease(listener: () => void): () => void {
    this.releaseListeners.add(listener);
    return () => this.releaseListeners.delete(listener);
  }

  async releaseOwner(owner: string): Promise<void> {
    const mine = [...this.live.values()].filter((e) => e.owner === owner);
    await Promise.all(mine.map((e) => e.release()));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.slots.rejectAll(new EnvError("The environment service is closed", "closed"));
    await Promise.all([...this.live.values()].map((e) => e.release()));
    await this.driverImpl.close();
  }

  private gone(env: EnvHandle): void {
    if (this.live.get(env.id) === env) {
      this.live.delete(env.id);
      this.slots.give();
      for (const listener of this.releaseListeners) {
        try {
          listener();
        } catch (err) {
          this.log.warn({ env: env.id, err }, "environment release listener threw");
        }
      }
    }
  }

  private resolve(spec: EnvSpec): ResolvedSpec {
    const d = this.defaults;
    const out: ResolvedSpec = {
      image: spec.image ?? d.image,
      memoryMb: spec.memoryMb ?? d.memoryMb,
      cpus: spec.cpus ?? d.cpus,
      pids: spec.pids ?? d.pids,
      timeoutMs: spec.timeoutMs ?? d.execTimeoutMs,
      workDirMb: d.workDirMb,
    };
    const bad = (field: string, why: string) => new EnvError(`Bad environment spec: ${field} ${why}`, "failed");
    if (!Number.isInteger(out.memoryMb) || out.memoryMb < 8) throw bad("memoryMb", "must be an integer of at least 8");
    if (!(out.cpus > 0)) throw bad("cpus", "must be positive");
    if (!Number.isInteger(out.pids) || out.pids < 4) throw bad("pids", "must be an integer of at least 4");
    if (!(out.timeoutMs > 0)) throw bad("timeoutMs", "must be positive");
    for (const path of Object.keys(spec.files ?? {})) splitWorkPath(path);
    return out;
  }
}
