import { existsSync, lstatSync, readlinkSync } from "node:fs";
import { chmod, chown, mkdir, readFile, readdir, rm, rmdir } from "node:fs/promises";
import { join } from "node:path";
import type { Logger } from "../log.ts";
import { fnv1a } from "../util/hash.ts";
import { sleep } from "../util/wait.ts";
import { instanceAlive, isInstanceId, newInstanceId } from "./instance.ts";
import { detectCgroups, type Cgroups, type EnvCgroup } from "./cgroup.ts";
import { readWorkFile, writeWorkFile, type Owner } from "./hostfs.ts";
import type { Driver, DriverEnv, DriverExec, ResolvedSpec } from "./pool.ts";
import { EnvError, type EnvConfig, type ExecResult, type KillReason } from "./types.ts";
import { CappedOutput, KILLED_EXIT_CODE, TIMEOUT_EXIT_CODE, baseEnv, newEnvId } from "./util.ts";

/**
 * Environments made with bubblewrap, where no Docker engine is. An
 * environment is a work folder on this host plus its limits; each exec is a
 * fresh bwrap process over it: every namespace unshared (no network: only a
 * loopback of its own), all capabilities dropped, a read-only root (the
 * host's /usr and a few /etc files, or a root folder such as the busybox one
 * built by configs/env/build-image.sh), its own /proc, /dev and /tmp, the
 * work folder read-write at /work. Commands run as uid 65534 inside; started
 * as root, each environment also gets a host uid of its own (unused by the
 * system), so environments cannot signal each other and RLIMIT_NPROC counts
 * one environment's processes only. The exec's processes live in a PID
 * namespace that dies with the exec; memory, processes and CPU are bounded by
 * the environment's cgroup where the machine allows, else by rlimits.
 *
 * State lives in `<stateDir>/<node>/<instance>/<env id>`: one folder per run
 * (src/env/instance.ts), as runs of one node name may overlap on a host. At
 * start a run removes the folders, processes and cgroups of the node's runs
 * that are over, and never those of a run still alive.
 *
 * The command runs as the namespace's PID 1 (`--as-pid-1`): with bwrap's own
 * init in between, bwrap exits before reaping that init, which then waits as
 * a zombie for the host's init, still counted against the pids limit.
 */

/** The sandbox user as commands see it. */
const NOBODY = 65534;
const SANDBOX_PATH = "/opt/tools:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin";
/** /etc files a dynamically linked host program may need */
const HOST_ETC = ["alternatives", "ld.so.cache", "ld.so.conf", "ld.so.conf.d", "passwd", "group", "nsswitch.conf", "localtime", "mime.types"];
const FORK_FAILED = /can't fork|Resource temporarily unavailable|fork: retry|Cannot fork/i;
const NO_MEMORY = /Cannot allocate memory|out of memory|memory exhausted|MemoryError|bad_alloc/i;

/** Checks bwrap runs here and prepares this run's state folder. */
export async function createBwrapDriver(config: EnvConfig, log: Logger): Promise<Driver> {
  const asRoot = process.getuid?.() === 0;
  const instance = newInstanceId();
  // Host uids by run, not by node name: two runs of one name must not share uids either.
  const uids = asRoot ? new HostUids(instance) : undefined;
  const nodeDir = join(config.stateDir, config.node);
  const runDir = join(nodeDir, instance);
  if (config.rootfs && !existsSync(join(config.rootfs, "bin"))) {
    throw new EnvError(`bwrap rootfs ${config.rootfs} has no bin folder: build one with configs/env/build-image.sh --rootfs DIR --no-import`, "unavailable");
  }
  await makeRunDir(runDir);
  await chmod(config.stateDir, 0o711).catch(() => undefined);
  await chmod(nodeDir, 0o711).catch(() => undefined);
  await chmod(runDir, 0o711);
  let cgroups: Cgroups;
  try {
    cgroups = await detectCgroups(config.node, instance, config.cgroup, log);
  } catch (err) {
    await rm(runDir, { recursive: true, force: true });
    throw err;
  }
  if (cgroups.mode === "none") {
    log.warn({ reason: cgroups.describe }, "bwrap limits: rlimits (RLIMIT_AS for memory, RLIMIT_NPROC for processes); no cgroup limits");
  } else {
    log.info({ cgroups: cgroups.describe }, `bwrap limits: ${cgroups.describe}`);
  }
  if (!uids) log.warn("bwrap: not root, so every environment runs as this node's own uid (RLIMIT_NPROC would count the node's processes: not set)");
  const driver = new BwrapDriver(config, log, { node: nodeDir, run: runDir, instance }, uids, cgroups, rootArgs(config.rootfs));
  try {
    await driver.selfTest();
  } catch (err) {
    await driver.close();
    throw err;
  }
  return driver;
}

/**
 * Make this run's folder. Another run of the node that closes removes the
 * node's folder once it is empty, maybe just between the making of it and of
 * this run's folder inside: then make both again.
 */
async function makeRunDir(runDir: string): Promise<void> {
  for (let round = 0; ; round++) {
    try {
      await mkdir(runDir, { recursive: true, mode: 0o711 });
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT" || round >= 4) throw err;
    }
  }
}

/** The folders of one run: the node's, this run's in it, and this run's instance id (its name). */
interface RunDirs {
  node: string;
  run: string;
  instance: string;
}

/** The read-only root: a root folder, or the host's system folders. */
function rootArgs(rootfs: string | undefined): string[] {
  if (rootfs) return ["--ro-bind", rootfs, "/"];
  const args = ["--ro-bind", "/usr", "/usr"];
  for (const top of ["/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"]) {
    const st = lstatSync(top, { throwIfNoEntry: false });
    if (!st) continue;
    if (st.isSymbolicLink()) args.push("--symlink", readlinkSync(top), top);
    else args.push("--ro-bind", top, top);
  }
  for (const name of HOST_ETC) args.push("--ro-bind-try", `/etc/${name}`, `/etc/${name}`);
  return args;
}

class BwrapDriver implements Driver {
  readonly name = "bwrap" as const;
  private readonly envs = new Set<BwrapEnv>();

  constructor(
    readonly config: EnvConfig,
    readonly log: Logger,
    readonly dirs: RunDirs,
    readonly uids: HostUids | undefined,
    readonly cgroups: Cgroups,
    readonly root: string[],
  ) {}

  /** Run `true` in a throwaway sandbox: user namespaces, mounts and binds must all work here. */
  async selfTest(): Promise<void> {
    const env = await this.create(`selftest-${newEnvId()}`, { image: "", memoryMb: 64, cpus: 1, pids: 16, timeoutMs: 10_000, workDirMb: 1 });
    try {
      const r = await env.exec({ cmd: ["true"], timeoutMs: 10_000, env: {} });
      if (r.exitCode !== 0) {
        const hint = this.uids && /Permission denied/.test(r.stderr) ? " (sandboxes run as unprivileged uids: they must be able to reach the rootfs and state folders)" : "";
        throw new EnvError(`bwrap cannot run here (exit ${r.exitCode}): ${r.stderr.trim() || r.stdout.trim()}${hint}`, "unavailable");
      }
    } finally {
      await env.destroy();
    }
  }

  /**
   * Remove what the node's runs that are over left: their sandboxes'
   * processes, cgroups and folders. A run still alive (this one, or another
   * run of the same node name) is left alone. A name in the node's folder
   * that is no run's (an older layout's environment folder) is a leftover.
   */
  async cleanupLeftovers(): Promise<number> {
    const isLeftover = (name: string) => name !== this.dirs.instance && !instanceAlive(name);
    const names = (await readdir(this.dirs.node).catch(() => [] as string[])).filter(isLeftover);
    let envs = 0;
    for (const name of names) {
      const dir = join(this.dirs.node, name);
      // bwrap's command line names the work folder it binds: that finds the run's sandboxes.
      await killProcessesMentioning(`${dir}/`);
      envs += isInstanceId(name) ? (await readdir(dir).catch(() => [] as string[])).length : 1;
      await rm(dir, { recursive: true, force: true });
    }
    const cgroups = await this.cgroups.cleanupLeftovers(isLeftover).catch((err) => {
      this.log.warn({ err: String(err) }, "cgroups left by an earlier run not removed");
      return 0;
    });
    return Math.max(envs, cgroups);
  }

  async create(id: string, spec: ResolvedSpec): Promise<BwrapEnv> {
    const dir = join(this.dirs.run, id);
    await mkdir(dir, { mode: 0o700 });
    let cgroup: EnvCgroup | undefined;
    const owner = this.uids?.take();
    try {
      if (owner) await chown(dir, owner.uid, owner.gid);
      if (this.cgroups.mode !== "none") {
        cgroup = await this.cgroups.create(id, { memoryBytes: spec.memoryMb * 1024 * 1024, pids: spec.pids, cpus: spec.cpus });
      }
    } catch (err) {
      await rm(dir, { recursive: true, force: true });
      if (owner) this.uids?.give(owner);
      throw new EnvError(`Cannot prepare a bwrap environment: ${String(err)}`, "failed", { cause: err });
    }
    const env = new BwrapEnv(this, id, dir, spec, owner, cgroup, () => {
      this.envs.delete(env);
      if (owner) this.uids?.give(owner);
    });
    this.envs.add(env);
    return env;
  }

  async close(): Promise<void> {
    await Promise.all([...this.envs].map((e) => e.destroy()));
    await this.cgroups.close();
    await rm(this.dirs.run, { recursive: true, force: true });
    // Fails while another run of the node has its folder there, as it should.
    await rmdir(this.dirs.node).catch(() => undefined);
  }
}

class BwrapEnv implements DriverEnv {
  private readonly running = new Set<Bun.Subprocess>();
  private destroyed = false;

  constructor(
    private readonly driver: BwrapDriver,
    readonly id: string,
    readonly dir: string,
    readonly spec: ResolvedSpec,
    private readonly owner: Owner | undefined,
    private readonly cgroup: EnvCgroup | undefined,
    private readonly onDestroyed: () => void,
  ) {}

  /** The command line: cgroup join, rlimits, drop to the sandbox user, bwrap. */
  private argv(req: DriverExec): string[] {
    const { root } = this.driver;
    const owner = this.owner;
    const out: string[] = [];
    if (this.cgroup) {
      const files = this.cgroup.procsFiles;
      // A shell that moves itself into the cgroup, then becomes the sandbox: nothing escapes the limits.
      out.push("/bin/sh", "-c", 'n=$1; shift; while [ "$n" -gt 0 ]; do echo $$ > "$1" || exit 125; shift; n=$((n-1)); done; exec "$@"', "sh", String(files.length), ...files);
    }
    const fsize = this.spec.workDirMb * 1024 * 1024;
    out.push("prlimit", `--fsize=${fsize}`, "--core=0");
    if (!this.cgroup) out.push(`--as=${this.spec.memoryMb * 1024 * 1024}`, `--nproc=${this.spec.pids}`);
    out.push("--");
    if (owner) out.push("setpriv", `--reuid=${owner.uid}`, `--regid=${owner.gid}`, "--clear-groups", "--pdeathsig=SIGKILL", "--");
    out.push("bwrap", "--unshare-all", "--unshare-user", "--disable-userns", "--die-with-parent", "--new-session", "--as-pid-1", "--cap-drop", "ALL");
    out.push("--uid", String(NOBODY), "--gid", String(NOBODY), "--hostname", "matrixd-env");
    out.push(...root, "--proc", "/proc", "--dev", "/dev", "--size", String(16 * 1024 * 1024), "--tmpfs", "/tmp");
    out.push("--bind", this.dir, "/work", "--remount-ro", "/", "--chdir", "/work", "--clearenv");
    const vars = { ...baseEnv(SANDBOX_PATH), ...req.env };
    for (const [k, v] of Object.entries(vars)) out.push("--setenv", k, v);
    out.push("--", ...req.cmd);
    return out;
  }

  async exec(req: DriverExec): Promise<ExecResult> {
    if (this.destroyed) throw new EnvError(`Environment ${this.id} was released`, "released");
    const started = performance.now();
    const before = this.cgroup ? await this.cgroup.counters() : undefined;
    const proc = Bun.spawn(this.argv(req), {
      stdin: req.stdin ? "pipe" : "ignore",
      stdout: "pipe",
      stderr: "pipe",
      env: { PATH: "/usr/sbin:/usr/bin:/sbin:/bin" },
    });
    this.running.add(proc);
    const cap = this.driver.config.outputCap;
    const out = new CappedOutput(cap);
    const err = new CappedOutput(cap);
    const reading = Promise.all([drain(proc.stdout, out), drain(proc.stderr, err)]);
    if (req.stdin && proc.stdin) {
      const sink = proc.stdin;
      try {
        sink.write(req.stdin);
        await sink.end();
      } catch {
        // the command exited without reading all its input
      }
    }
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      void this.killAll();
    }, req.timeoutMs);
    let code: number;
    try {
      code = await proc.exited;
    } finally {
      clearTimeout(timer);
      this.running.delete(proc);
    }
    // The PID namespace is gone with bwrap, so the pipes close; bound the wait all the same.
    await Promise.race([reading, sleep(2000)]);
    if (this.destroyed) throw new EnvError(`Environment ${this.id} was released`, "released");
    const after = this.cgroup ? await this.cgroup.counters() : undefined;

    const stderr = err.text();
    let killed: KillReason | undefined;
    if (before && after) {
      if (after.oomKills > before.oomKills) killed = "memory";
      else if (after.pidsMax > before.pidsMax) killed = "pids";
    } else if (!timedOut && code !== 0) {
      if (NO_MEMORY.test(stderr)) killed = "memory";
      else if (FORK_FAILED.test(stderr)) killed = "pids";
    }
    if (timedOut && !killed) killed = "time";
    let exitCode = proc.signalCode ? 128 + signalNumber(proc.signalCode) : code;
    if (timedOut) exitCode = TIMEOUT_EXIT_CODE;
    else if (killed && exitCode === 0) exitCode = KILLED_EXIT_CODE;
    return {
      stdout: out.text(),
      stderr: killed ? `${stderr}${stderr && !stderr.endsWith("\n") ? "\n" : ""}[matrixd: killed: ${killed} limit]\n` : stderr,
      exitCode,
      timedOut,
      ...(killed ? { killed } : {}),
      durationMs: Math.round(performance.now() - started),
    };
  }

  put(parts: string[], data: Uint8Array): Promise<void> {
    if (this.destroyed) return Promise.reject(new EnvError(`Environment ${this.id} was released`, "released"));
    return writeWorkFile(this.dir, parts, data, this.owner);
  }

  get(parts: string[]): Promise<Uint8Array> {
    if (this.destroyed) return Promise.reject(new EnvError(`Environment ${this.id} was released`, "released"));
    return readWorkFile(this.dir, parts, this.spec.workDirMb * 1024 * 1024);
  }

  /**
   * Kill the sandboxes' PID-namespace inits first: the kernel then kills all
   * in them and bwrap reaps its child and exits, leaving no zombie to the
   * host's init (a zombie still counts against the pids limit). bwrap
   * itself, and the cgroup, are killed after a grace all the same.
   */
  private async killAll(): Promise<void> {
    const running = [...this.running];
    for (const p of running) for (const child of await childrenOf(p.pid)) signal(child);
    await Promise.race([Promise.all(running.map((p) => p.exited)), sleep(500)]);
    for (const p of running) if (p.exitCode === null && p.signalCode === null) p.kill("SIGKILL");
    await this.cgroup?.kill();
  }

  async destroy(): Promise<void> {
    if (this.destroyed) return;
    this.destroyed = true;
    const running = [...this.running];
    await this.killAll();
    await Promise.race([Promise.all(running.map((p) => p.exited)), sleep(5000)]);
    await this.cgroup?.remove().catch((err) => this.driver.log.warn({ env: this.id, err: String(err) }, "cgroup not removed"));
    await rm(this.dir, { recursive: true, force: true });
    this.onDestroyed();
  }
}

async function drain(stream: ReadableStream<Uint8Array>, into: CappedOutput): Promise<void> {
  const reader = stream.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return;
      into.push(value);
    }
  } catch {
    // the process died; what was read is kept
  } finally {
    reader.releaseLock();
  }
}

const SIGNALS: Record<string, number> = { SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGABRT: 6, SIGKILL: 9, SIGSEGV: 11, SIGPIPE: 13, SIGALRM: 14, SIGTERM: 15, SIGXCPU: 24, SIGXFSZ: 25 };
function signalNumber(signal: string | number): number {
  return typeof signal === "number" ? signal : (SIGNALS[signal] ?? 9);
}

function signal(pid: number): void {
  try {
    process.kill(pid, "SIGKILL");
  } catch {
    // gone already
  }
}

/** Direct children of a process, from /proc. */
async function childrenOf(pid: number): Promise<number[]> {
  const listed = await readFile(`/proc/${pid}/task/${pid}/children`, "utf8").catch(() => undefined);
  if (listed !== undefined) return listed.split(/\s+/).filter(Boolean).map(Number);
  const out: number[] = [];
  for (const name of await readdir("/proc").catch(() => [] as string[])) {
    if (!/^\d+$/.test(name)) continue;
    const stat = await readFile(`/proc/${name}/stat`, "utf8").catch(() => "");
    // "pid (comm) state ppid ...": comm may hold spaces, so read after the last ")"
    const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
    if (ppid === pid) out.push(Number(name));
  }
  return out;
}

/**
 * Host uids for environments: a block of 8192 above 2^30, chosen by the run's
 * instance id, far from the system's users and the usual subordinate-id ranges.
 */
class HostUids {
  private readonly base: number;
  private readonly free: number[] = [];
  private next = 0;

  constructor(instance: string) {
    this.base = 0x40000000 + (fnv1a(instance) % 65536) * 8192;
  }

  take(): Owner {
    const n = this.free.pop() ?? this.next++;
    if (n >= 8192) throw new EnvError("No free host uid for a bwrap environment", "failed");
    return { uid: this.base + n, gid: this.base + n };
  }

  give(owner: Owner): void {
    this.free.push(owner.uid - this.base);
  }
}

/** SIGKILL every host process whose command line mentions `needle` (a leftover run's bwrap). */
async function killProcessesMentioning(needle: string): Promise<number> {
  let killed = 0;
  const pids = await readdir("/proc").catch(() => [] as string[]);
  for (const pid of pids) {
    if (!/^\d+$/.test(pid) || Number(pid) === process.pid) continue;
    const cmdline = await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "");
    if (!cmdline.includes(needle)) continue;
    try {
      process.kill(Number(pid), "SIGKILL");
      killed++;
    } catch {
      // gone already
    }
  }
  return killed;
}
