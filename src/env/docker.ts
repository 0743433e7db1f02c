import Docker from "dockerode";
import type { Logger } from "../log.ts";
import { DockerEvents, collectExec } from "./docker-stream.ts";
import { makeTar, tarFits } from "./tar.ts";
import type { Driver, DriverEnv, DriverExec, ResolvedSpec } from "./pool.ts";
import { instanceAlive, newInstanceId } from "./instance.ts";
import { EnvError, type EnvConfig, type ExecResult, type KillReason } from "./types.ts";
import { sleep } from "../util/wait.ts";
import { CappedOutput, KILLED_EXIT_CODE, TIMEOUT_EXIT_CODE, baseEnv } from "./util.ts";

/**
 * Environments as Docker containers, through dockerode. Each one: no network,
 * every capability dropped, no-new-privileges, a read-only root with a tmpfs
 * work folder at /work (and /tmp), limits on memory (no swap), CPU and
 * processes, running as 65534:65534, labelled with the node's name and the
 * run's instance id (src/env/instance.ts): runs of one node name may overlap
 * on a host, so a run's start removes the node's containers whose run is
 * over, never those of a run still alive. The container idles under the
 * image's own command (busybox `init` in matrixd/tooluse, which also reaps
 * orphans); every exec goes through the exec API. Images are never pulled.
 */

const USER = "65534:65534";
const SANDBOX_PATH = "/opt/tools:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin";
const FORK_FAILED = /can't fork|Resource temporarily unavailable|fork: retry|Cannot fork/i;
/**
 * Counts the container's processes, then kills every one the sandbox user
 * has but PID 1 (the idle init) and itself; shell builtins only, so it needs
 * no fork at the pids limit. Orphans are reaped by init within a second.
 */
const COUNT_FN = 'c() { n=0; for p in /proc/[0-9]*; do [ -d "$p" ] && n=$((n+1)); done; }; ';
const KILL_ALL = `${COUNT_FN}c; b=$n; for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do kill -9 -1 2>/dev/null; done; c; echo "$b $n"`;
/** Prints "N N": the container's processes, this shell and init included. */
const COUNT = `${COUNT_FN}c; echo "$n $n"`;
const NODE_LABEL = "matrixd.node";
const ENV_LABEL = "matrixd.env";
const INSTANCE_LABEL = "matrixd.instance";

/** Connects to the engine, checks the image is there, watches for OOM kills. */
export async function createDockerDriver(config: EnvConfig, log: Logger): Promise<Driver> {
  // No socket timeout: exec streams may stay quiet for long; every wait has its own deadline.
  const docker = new Docker({ socketPath: config.socketPath });
  try {
    await withTimeout(docker.ping(), 10_000, "no answer in 10 s");
  } catch (err) {
    throw new EnvError(`No Docker engine at ${config.socketPath}: ${describeError(err)}`, "unavailable", { cause: err });
  }
  await checkImage(docker, config.image);
  const events = new DockerEvents(docker, config.node, log);
  try {
    await withTimeout(events.start(), 10_000, "no answer in 10 s");
  } catch (err) {
    events.stop();
    throw new EnvError(`Cannot follow the Docker engine's events at ${config.socketPath}: ${describeError(err)}`, "unavailable", { cause: err });
  }
  return new DockerDriver(docker, config, events, log);
}

async function checkImage(docker: Docker, image: string): Promise<void> {
  try {
    await docker.getImage(image).inspect();
  } catch (err) {
    throw new EnvError(`Docker image ${image} is not on this engine (images are built locally, never pulled): run configs/env/build-image.sh`, "unavailable", { cause: err });
  }
}

class DockerDriver implements Driver {
  readonly name = "docker" as const;
  private readonly envs = new Set<DockerEnv>();
  private readonly images = new Set<string>();
  /** this run's id, on every container it makes */
  readonly instance = newInstanceId();

  constructor(
    readonly docker: Docker,
    readonly config: EnvConfig,
    readonly events: DockerEvents,
    readonly log: Logger,
  ) {
    this.images.add(config.image);
  }

  /**
   * Remove the node's containers whose run is over. The instance id is
   * judged on this host (its pid and start time), where the engine's socket
   * is: a container with no instance label is an older run's, so a leftover.
   */
  async cleanupLeftovers(): Promise<number> {
    const listed = await this.docker.listContainers({ all: true, filters: { label: [`${NODE_LABEL}=${this.config.node}`] } });
    const left = listed.filter((c) => {
      const instance = c.Labels?.[INSTANCE_LABEL];
      return instance !== this.instance && (instance === undefined || !instanceAlive(instance));
    });
    await Promise.all(left.map((c) => removeContainer(this.docker.getContainer(c.Id))));
    return left.length;
  }

  async create(id: string, spec: ResolvedSpec): Promise<DockerEnv> {
    if (!this.images.has(spec.image)) {
      await checkImage(this.docker, spec.image);
      this.images.add(spec.image);
    }
    const memory = spec.memoryMb * 1024 * 1024;
    let container: Docker.Container | undefined;
    try {
      container = await this.docker.createContainer({
        name: `matrixd-${this.config.node}-${id}`,
        Image: spec.image,
        User: USER,
        WorkingDir: "/work",
        Env: Object.entries(baseEnv(SANDBOX_PATH)).map(([k, v]) => `${k}=${v}`),
        Labels: { [NODE_LABEL]: this.config.node, [INSTANCE_LABEL]: this.instance, [ENV_LABEL]: id },
        NetworkDisabled: true,
        HostConfig: {
          NetworkMode: "none",
          CapDrop: ["ALL"],
          SecurityOpt: ["no-new-privileges"],
          ReadonlyRootfs: true,
          Tmpfs: {
            "/work": `rw,nosuid,nodev,size=${spec.workDirMb}m,uid=65534,gid=65534,mode=0755`,
            "/tmp": "rw,nosuid,nodev,size=16m,mode=1777",
          },
          Memory: memory,
          MemorySwap: memory,
          NanoCpus: Math.round(spec.cpus * 1e9),
          PidsLimit: spec.pids,
          ShmSize: 16 * 1024 * 1024,
          LogConfig: { Type: "none", Config: {} },
          RestartPolicy: { Name: "no" },
        },
      });
      await container.start();
    } catch (err) {
      if (container) await removeContainer(container);
      throw new EnvError(`Cannot start a container from ${spec.image}: ${describeError(err)}`, "failed", { cause: err });
    }
    const env = new DockerEnv(this, container, id, spec, () => this.envs.delete(env));
    this.envs.add(env);
    return env;
  }

  async close(): Promise<void> {
    await Promise.all([...this.envs].map((e) => e.destroy()));
    this.events.stop();
  }
}

class DockerEnv implements DriverEnv {
  private destroyed = false;
  /** set when the container had to be killed: nothing more can run in it */
  private broken: string | undefined;
  private readonly inFlight = new Set<() => void>();

  constructor(
    private readonly driver: DockerDriver,
    private readonly container: Docker.Container,
    readonly id: string,
    readonly spec: ResolvedSpec,
    private readonly onDestroyed: () => void,
  ) {}

  private check(): void {
    if (this.destroyed) throw new EnvError(`Environment ${this.id} was released`, "released");
    if (this.broken) throw new EnvError(`Environment ${this.id} is dead: ${this.broken}`, "failed");
  }

  /** One exec through the API: output collected, a deadline, the exit code. */
  private async run(cmd: string[], opts: { stdin?: Uint8Array; timeoutMs: number; env?: Record<string, string>; cap: number }) {
    const exec = await this.container.exec({
      Cmd: cmd,
      AttachStdin: opts.stdin !== undefined,
      AttachStdout: true,
      AttachStderr: true,
      User: USER,
      WorkingDir: "/work",
      Env: Object.entries(opts.env ?? {}).map(([k, v]) => `${k}=${v}`),
    });
    const stream = await exec.start({ hijack: opts.stdin !== undefined, stdin: opts.stdin !== undefined });
    const stdout = new CappedOutput(opts.cap);
    const stderr = new CappedOutput(opts.cap);
    let cancel: () => void = () => undefined;
    const stopped = new Promise<void>((resolve) => (cancel = resolve));
    this.inFlight.add(cancel);
    try {
      const outcome = await collectExec(stream, stdout, stderr, opts.stdin, opts.timeoutMs, stopped);
      let exitCode: number | null = null;
      if (outcome === "ended") {
        for (let i = 0; i < 20 && exitCode === null; i++) {
          const info = await exec.inspect();
          if (!info.Running) exitCode = info.ExitCode ?? null;
          else await sleep(10 * (i + 1));
        }
      }
      return { outcome, exitCode, stdout, stderr };
    } finally {
      this.inFlight.delete(cancel);
    }
  }

  async exec(req: DriverExec): Promise<ExecResult> {
    this.check();
    const started = performance.now();
    const oomBefore = this.driver.events.oomCount(this.container.id);
    const cap = this.driver.config.outputCap;
    const r = await this.run(req.cmd, { stdin: req.stdin, timeoutMs: req.timeoutMs, env: req.env, cap });
    if (r.outcome === "cancelled") throw new EnvError(`Environment ${this.id} was released`, "released");
    const timedOut = r.outcome === "timeout";
    const stderrText = r.stderr.text();
    let killed: KillReason | undefined;
    if (r.exitCode === 137 && !timedOut) {
      // The OOM event usually comes before the exec's end; give it a moment when not.
      for (let i = 0; i < 10 && this.driver.events.oomCount(this.container.id) === oomBefore; i++) await sleep(20);
      if (this.driver.events.oomCount(this.container.id) > oomBefore) killed = "memory";
    }
    // Fork failures (EAGAIN) in a container mean its pids limit was hit.
    if (!killed && FORK_FAILED.test(stderrText)) killed = "pids";
    if (timedOut || killed === "pids") {
      const before = await this.killAll();
      if (!killed) killed = before === undefined || before >= this.spec.pids - 2 ? "pids" : "time";
    }
    let exitCode = r.exitCode ?? KILLED_EXIT_CODE;
    if (timedOut) exitCode = TIMEOUT_EXIT_CODE;
    else if (killed && exitCode === 0) exitCode = KILLED_EXIT_CODE;
    return {
      stdout: r.stdout.text(),
      stderr: killed ? `${stderrText}${stderrText && !stderrText.endsWith("\n") ? "\n" : ""}[matrixd: killed: ${killed} limit]\n` : stderrText,
      exitCode,
      timedOut,
      ...(killed ? { killed } : {}),
      durationMs: Math.round(performance.now() - started),
    };
  }

  /**
   * Kill every process but the idle init: a timed-out command and all it
   * started; wait (bounded) until init has reaped them, so the next exec
   * finds the pids free. Returns how many processes there were before (the
   * kill shell and init included), or undefined when the container had to be
   * killed instead.
   */
  private async killAll(): Promise<number | undefined> {
    let before: number | undefined;
    const deadline = performance.now() + 5000;
    for (let attempt = 0; performance.now() < deadline; attempt++) {
      try {
        const script = before === undefined ? KILL_ALL : COUNT;
        const r = await this.run(["/bin/sh", "-c", script], { timeoutMs: 5000, cap: 4096 });
        const counts = /^(\d+) (\d+)$/m.exec(r.stdout.text());
        if (r.outcome === "ended" && counts) {
          before ??= Number(counts[1]);
          if (Number(counts[2]) <= 2) return before;
        }
      } catch {
        // at the pids limit even the exec may fail to start: try again
      }
      await sleep(Math.min(50 * (attempt + 1), 250));
    }
    // Could not clean up from inside: the environment is lost, but nothing keeps running.
    this.broken = "its processes could not be stopped after a limit was hit";
    await this.container.kill().catch(() => undefined);
    return before;
  }

  async put(parts: string[], data: Uint8Array): Promise<void> {
    this.check();
    const path = parts.join("/");
    const script = 'd=$(dirname -- "$1") && mkdir -p -- "$d" && cat > "$1"';
    const r = await this.run(["/bin/sh", "-c", script, "sh", path], { stdin: data, timeoutMs: 60_000, cap: 64 * 1024 });
    if (r.outcome === "cancelled") throw new EnvError(`Environment ${this.id} was released`, "released");
    if (r.outcome !== "ended" || r.exitCode !== 0) {
      throw new EnvError(`Cannot put ${path}: ${r.stderr.text().trim() || `exit ${r.exitCode ?? r.outcome}`}`, "failed");
    }
  }

  /** All files in one exec: a tar archive unpacked by the image's tar. */
  async putMany(files: Array<{ parts: string[]; data: Uint8Array }>): Promise<void> {
    if (!tarFits(files.map((f) => f.parts.join("/")))) {
      for (const f of files) await this.put(f.parts, f.data);
      return;
    }
    this.check();
    const r = await this.run(["tar", "-x", "-f", "-", "-C", "/work"], { stdin: makeTar(files), timeoutMs: 60_000, cap: 64 * 1024 });
    if (r.outcome === "cancelled") throw new EnvError(`Environment ${this.id} was released`, "released");
    if (r.outcome !== "ended" || r.exitCode !== 0) {
      throw new EnvError(`Cannot put ${files.length} files: ${r.stderr.text().trim() || `exit ${r.exitCode ?? r.outcome}`}`, "failed");
    }
  }

  async get(parts: string[]): Promise<Uint8Array> {
    this.check();
    const path = parts.join("/");
    const max = this.spec.workDirMb * 1024 * 1024;
    const r = await this.run(["/bin/cat", "--", path], { timeoutMs: 60_000, cap: max });
    if (r.outcome === "cancelled") throw new EnvError(`Environment ${this.id} was released`, "released");
    if (r.outcome === "ended" && r.exitCode === 0) return r.stdout.bytes();
    const why = r.stderr.text().trim();
    if (/No such file/i.test(why)) throw new EnvError(`No such file: ${path}`, "not_found");
    if (/Is a directory/i.test(why)) throw new EnvError(`Bad environment path ${path}: it is a folder`, "bad_path");
    throw new EnvError(`Cannot get ${path}: ${why || `exit ${r.exitCode ?? r.outcome}`}`, "failed");
  }

  async destroy(): Promise<void> {
    if (this.destroyed) return;
    this.destroyed = true;
    for (const cancel of this.inFlight) cancel();
    await removeContainer(this.container).catch((err) =>
      this.driver.log.warn({ env: this.id, err: describeError(err) }, "container not removed"),
    );
    this.driver.events.forget(this.container.id);
    this.onDestroyed();
  }
}

async function removeContainer(container: Docker.Container): Promise<void> {
  try {
    await container.remove({ force: true, v: true });
  } catch (err) {
    const status = (err as { statusCode?: number }).statusCode;
    // 404: already gone; 409: removal already in progress
    if (status !== 404 && status !== 409) throw err;
  }
}

function describeError(err: unknown): string {
  const json = (err as { json?: { message?: unknown } }).json;
  if (json && typeof json.message === "string") return json.message;
  return err instanceof Error ? err.message : String(err);
}

function withTimeout<T>(p: Promise<T>, ms: number, why: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(why)), ms);
    }),
  ]);
}
