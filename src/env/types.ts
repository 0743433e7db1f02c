import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { z } from "zod";

/**
 * Per-task environments: a sandbox (container or bubblewrap) holding a task's
 * files, in which untrusted commands run with no network, no capabilities and
 * limits on memory, CPU, processes and time.
 *
 * Every environment has a work folder, seen at `/work` from inside (the
 * current directory of every exec); paths given to `put` and `get` are
 * relative to it.
 */

/** Where an environment's work folder is mounted, as its commands see it. */
export const ENV_WORK_DIR = "/work";

/** The most bytes of stdout (and, apart, of stderr) an exec returns by default. */
export const DEFAULT_OUTPUT_CAP = 1 << 20;

/** Appended to stdout or stderr when it was cut at the cap. */
export const TRUNCATED_MARKER = "\n[matrixd: output truncated]\n";

/** Why an exec was killed. */
export const KillReason = {
  memory: "memory",
  pids: "pids",
  time: "time",
} as const;
export type KillReason = (typeof KillReason)[keyof typeof KillReason];

export interface ExecOptions {
  /** written to the command's standard input, then closed */
  stdin?: string;
  /** wall-clock limit of this exec; the environment's limit when absent */
  timeoutMs?: number;
  /** extra environment variables (PATH, HOME and PWD are set) */
  env?: Record<string, string>;
}

export interface ExecResult {
  /** UTF-8, at most the output cap, then {@link TRUNCATED_MARKER} */
  stdout: string;
  stderr: string;
  /** the command's exit code; 128 + signal when killed by a signal; 124 on timeout */
  exitCode: number;
  timedOut: boolean;
  /** killed for exceeding a limit: "memory" | "pids" | "time" */
  killed?: KillReason;
  /** wall-clock milliseconds of the exec */
  durationMs?: number;
}

/** One task's environment. Hold it from the task's start to its end. */
export interface Env {
  readonly id: string;
  /** who acquired it (a task id); {@link EnvService.releaseOwner} frees by owner */
  readonly owner: string;
  /** Run `cmd` (argv, no shell) inside, in the work folder. Rejects only when the environment is gone. */
  exec(cmd: string[], opts?: ExecOptions): Promise<ExecResult>;
  /** Write a file (parent folders are created). `path` is relative to the work folder. */
  put(path: string, data: string | Uint8Array): Promise<void>;
  /** Read a file. `path` is relative to the work folder. Rejects with EnvError "not_found" when absent. */
  get(path: string): Promise<Uint8Array>;
  /** Kill everything running in it and delete it. Idempotent. */
  release(): Promise<void>;
}

/** What a task asks for; every field falls back on the service's defaults. */
export interface EnvSpec {
  /** docker image (the docker driver only) */
  image?: string;
  /** files written into the work folder before `acquire` resolves, path -> text */
  files?: Record<string, string>;
  memoryMb?: number;
  cpus?: number;
  pids?: number;
  /** default wall-clock limit of each exec */
  timeoutMs?: number;
}

/** A node's pool of environments. */
export interface EnvService {
  readonly driver: "docker" | "bwrap";
  /** most environments alive at once */
  readonly capacity: number;
  /** environments alive now */
  inUse(): number;
  /** Get an environment; waits (first come, first served) while `capacity` are in use. Rejects on abort. */
  acquire(owner: string, spec?: EnvSpec, signal?: AbortSignal): Promise<Env>;
  find(id: string): Env | undefined;
  /** Call `listener` each time an environment is released; returns a function that stops it. Optional. */
  onRelease?(listener: () => void): () => void;
  /** Release every environment of an owner (e.g. when its task ends, whatever happened). */
  releaseOwner(owner: string): Promise<void>;
  /** Release everything, reject waiters, stop taking requests. */
  close(): Promise<void>;
}

const LimitsSchema = z.strictObject({
  memoryMb: z.number().int().min(8).default(256),
  cpus: z.number().positive().max(256).default(1),
  pids: z.number().int().min(4).default(64),
  execTimeoutMs: z.number().int().positive().default(30_000),
  /** size of the work folder (docker: a tmpfs of this size; bwrap: checked after each put) */
  workDirMb: z.number().int().positive().default(64),
});
export type EnvLimits = z.infer<typeof LimitsSchema>;

/** The environment service's settings; every field has a default. */
export const EnvConfigSchema = z.strictObject({
  driver: z.enum(["docker", "bwrap"]).default("bwrap"),
  /** most environments alive at once on this node */
  capacity: z.number().int().positive().max(4096).default(16),
  /**
   * this node's name: docker labels and the bwrap state folder carry it, with
   * each run's instance id beside it, so a restart removes what the node's
   * runs that are over left, and runs of one name that overlap leave each other alone
   */
  node: z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, "letters, digits, _ . - only").default(defaultNodeName()),
  /** docker: the engine's unix socket */
  socketPath: z.string().min(1).default("/var/run/docker.sock"),
  /** docker: the image used when a spec names none (built locally, never pulled) */
  image: z.string().min(1).default("matrixd/tooluse:latest"),
  /** bwrap: a root folder to bind read-only as `/`; absent: the host's /usr, /bin, /lib* and a few /etc files */
  rootfs: z.string().min(1).optional(),
  /** bwrap: where work folders live (`<node>/<instance>/<env id>`) */
  stateDir: z.string().min(1).default(join(tmpdir(), "matrixd-env")),
  /** bwrap: a delegated cgroup v2 folder to create per-exec cgroups under; "auto" finds one; "off" uses rlimits */
  cgroup: z.string().min(1).default("auto"),
  /** bytes of stdout, and apart of stderr, an exec returns */
  outputCap: z.number().int().min(1024).default(DEFAULT_OUTPUT_CAP),
  limits: LimitsSchema.default(LimitsSchema.parse({})),
});
export type EnvConfig = z.infer<typeof EnvConfigSchema>;
export type EnvConfigInput = z.input<typeof EnvConfigSchema>;

function defaultNodeName(): string {
  const name = hostname().replace(/[^A-Za-z0-9_.-]/g, "-").slice(0, 64);
  return name.length > 0 ? name : "node";
}

/** The one error type of the environment service; `code` says what went wrong. */
export class EnvError extends Error {
  override name = "EnvError";
  constructor(
    message: string,
    readonly code: "bad_path" | "not_found" | "released" | "closed" | "aborted" | "unavailable" | "failed",
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}
