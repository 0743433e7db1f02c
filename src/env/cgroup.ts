import { existsSync } from "node:fs";
import { mkdir, readFile, readdir, rmdir, writeFile } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import type { Logger } from "../log.ts";
import { isInstanceId } from "./instance.ts";
import { sleep } from "../util/wait.ts";

/**
 * Memory, process and CPU limits for bwrap environments through cgroups: one
 * cgroup per environment, under `matrixd-<node>/<instance>` in a tree this
 * process may write (one folder per run: runs of one node name may overlap,
 * and each clean-up touches only the folders of runs that are over).
 * cgroup v2 (unified, with the memory and pids controllers) is used when the
 * machine has it; else the v1 memory and pids hierarchies (and cpu when
 * mounted); else none, and the bwrap driver falls back on rlimits.
 */

export interface CgroupLimits {
  memoryBytes: number;
  pids: number;
  cpus: number;
}

export interface CgroupCounters {
  /** processes the kernel's OOM killer killed in the cgroup */
  oomKills: number;
  /** forks refused at the pids limit */
  pidsMax: number;
}

/** One environment's cgroup (in each hierarchy that applies). */
export interface EnvCgroup {
  /** `cgroup.procs` files a process writes its pid into to join */
  readonly procsFiles: string[];
  counters(): Promise<CgroupCounters>;
  /** SIGKILL every process in it. */
  kill(): Promise<void>;
  remove(): Promise<void>;
}

export interface Cgroups {
  readonly mode: "v2" | "v1" | "none";
  /** one line for the log: what limits apply and where */
  readonly describe: string;
  create(id: string, limits: CgroupLimits): Promise<EnvCgroup>;
  /**
   * Kill and remove the cgroups of this node's runs that are over: the run
   * folders (and folders of an older layout) for which `isLeftover(name)`
   * holds. Returns how many environments' cgroups were removed.
   */
  cleanupLeftovers(isLeftover: (name: string) => boolean): Promise<number>;
  /** Remove this run's (empty) cgroup folders, and the node's when no other run uses it. */
  close(): Promise<void>;
}

const ROOT = "/sys/fs/cgroup";

/**
 * Find where this process may make limited cgroups.
 * @param instance this run's id (src/env/instance.ts): its cgroups go in a folder of that name
 * @param setting "auto", "off", or a cgroup v2 folder delegated to this process
 */
export async function detectCgroups(node: string, instance: string, setting: string, log: Logger): Promise<Cgroups> {
  const group = { node: `matrixd-${node}`, instance };
  if (setting === "off") return noCgroups("cgroups turned off by config");
  const own = await ownCgroups();
  if (existsSync(join(ROOT, "cgroup.controllers")) || (setting !== "auto" && setting.startsWith("/"))) {
    const candidates = setting !== "auto" ? [setting] : v2Candidates(own.get("") ?? "/");
    for (const base of candidates) {
      const made = await tryV2(base, group).catch((err) => {
        log.debug({ base, err: String(err) }, "cgroup v2 folder not usable");
        return undefined;
      });
      if (made) return made;
    }
    return noCgroups(`no writable cgroup v2 folder with the memory and pids controllers (tried ${candidates.join(", ")})`);
  }
  const v1 = await tryV1(own, group).catch((err) => {
    log.debug({ err: String(err) }, "cgroup v1 not usable");
    return undefined;
  });
  return v1 ?? noCgroups("no writable cgroup v1 memory and pids hierarchies");
}

function noCgroups(why: string): Cgroups {
  return {
    mode: "none",
    describe: why,
    create: () => Promise.reject(new Error("no cgroups")),
    cleanupLeftovers: async () => 0,
    close: async () => undefined,
  };
}

/** This process's cgroup path in each hierarchy, by controller list ("" for v2). */
async function ownCgroups(): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const text = await readFile("/proc/self/cgroup", "utf8").catch(() => "");
  for (const line of text.split("\n")) {
    const m = /^\d+:([^:]*):(.*)$/.exec(line);
    if (!m) continue;
    for (const c of (m[1] ?? "").split(",")) out.set(c, m[2] ?? "/");
  }
  return out;
}

/** Under this process's own cgroup (a delegated tree), then beside it. */
function v2Candidates(own: string): string[] {
  const self = join(ROOT, own);
  const parent = dirname(self);
  return parent.startsWith(ROOT) && parent !== self ? [self, parent] : [self];
}

async function readWords(file: string): Promise<string[]> {
  return (await readFile(file, "utf8")).split(/\s+/).filter(Boolean);
}

/** Read `key value` lines (memory.events, pids.events, memory.oom_control). */
async function readKeyed(file: string, key: string): Promise<number> {
  const text = await readFile(file, "utf8").catch(() => "");
  const m = new RegExp(`^${key} (\\d+)$`, "m").exec(text);
  return m ? Number(m[1]) : 0;
}

async function killProcs(dirs: string[]): Promise<void> {
  for (let round = 0; round < 20; round++) {
    let left = 0;
    for (const dir of dirs) {
      const text = await readFile(join(dir, "cgroup.procs"), "utf8").catch(() => "");
      for (const pid of text.split("\n").filter(Boolean)) {
        left++;
        try {
          process.kill(Number(pid), "SIGKILL");
        } catch {
          // gone already
        }
      }
    }
    if (left === 0) return;
    await sleep(5 * (round + 1));
  }
}

async function removeDir(dir: string): Promise<void> {
  for (let round = 0; round < 20; round++) {
    try {
      await rmdir(dir);
      return;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === "ENOENT") return;
      if (code !== "EBUSY") throw err;
      await sleep(10 * (round + 1));
    }
  }
}

/** The node's cgroup folder name and this run's folder name in it. */
interface Group {
  node: string;
  instance: string;
}

/** `dir` and every folder below it, deepest first (the order cgroups can be removed in). */
async function treeDeepestFirst(dir: string): Promise<string[]> {
  const out: string[] = [];
  const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
  for (const e of entries) if (e.isDirectory()) out.push(...(await treeDeepestFirst(join(dir, e.name))));
  out.push(dir);
  return out;
}

/** Folders of a tree that stand for environments (not a run's own folder). */
function envCount(dirs: readonly string[]): number {
  return dirs.filter((d) => !isInstanceId(basename(d))).length;
}

/** The names in `dir` that are folders and leftovers. */
async function leftoverNames(dir: string, isLeftover: (name: string) => boolean): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
  return entries.filter((d) => d.isDirectory() && isLeftover(d.name)).map((d) => d.name);
}

/**
 * Run `setup` again when a folder it works in vanished: another run of the
 * node that closes removes the node's folder once it is empty, which may be
 * between this run's making of it and of its own folder inside.
 */
async function whileVanishing(setup: () => Promise<void>): Promise<void> {
  for (let round = 0; ; round++) {
    try {
      return await setup();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT" || round >= 4) throw err;
    }
  }
}

async function tryV2(base: string, group: Group): Promise<Cgroups | undefined> {
  const available = await readWords(join(base, "cgroup.controllers"));
  if (!available.includes("memory") || !available.includes("pids")) return undefined;
  const want = ["memory", "pids", ...(available.includes("cpu") ? ["cpu"] : [])];
  const enabled = await readWords(join(base, "cgroup.subtree_control"));
  const missing = want.filter((c) => !enabled.includes(c));
  // Fails with EBUSY where `base` holds processes itself (the no-internal-process rule).
  if (missing.length > 0) await writeFile(join(base, "cgroup.subtree_control"), missing.map((c) => `+${c}`).join(" "));
  const nodeTop = join(base, group.node);
  const top = join(nodeTop, group.instance);
  const controllers = want.map((c) => `+${c}`).join(" ");
  // Both levels hand the controllers down: the run's folder holds the environments' cgroups.
  await whileVanishing(async () => {
    await mkdir(nodeTop, { recursive: true });
    await writeFile(join(nodeTop, "cgroup.subtree_control"), controllers);
    await mkdir(top, { recursive: true });
    await writeFile(join(top, "cgroup.subtree_control"), controllers);
  });
  const hasCpu = want.includes("cpu");
  const canKill = existsSync(join(top, "cgroup.kill"));

  const make = (dir: string): EnvCgroup => ({
    procsFiles: [join(dir, "cgroup.procs")],
    counters: async () => ({
      oomKills: await readKeyed(join(dir, "memory.events"), "oom_kill"),
      pidsMax: await readKeyed(join(dir, "pids.events"), "max"),
    }),
    kill: async () => {
      if (canKill) await writeFile(join(dir, "cgroup.kill"), "1").catch(() => undefined);
      await killProcs([dir]);
    },
    remove: () => removeDir(dir),
  });

  return {
    mode: "v2",
    describe: `cgroup v2 under ${top} (memory.max, pids.max${hasCpu ? ", cpu.max" : ""})`,
    create: async (id, limits) => {
      const dir = join(top, id);
      await mkdir(dir);
      await writeFile(join(dir, "memory.max"), String(limits.memoryBytes));
      await writeFile(join(dir, "memory.swap.max"), "0").catch(() => undefined);
      await writeFile(join(dir, "pids.max"), String(limits.pids));
      if (hasCpu) await writeFile(join(dir, "cpu.max"), `${Math.round(limits.cpus * 100_000)} 100000`);
      return make(dir);
    },
    cleanupLeftovers: async (isLeftover) => {
      let count = 0;
      for (const name of await leftoverNames(nodeTop, isLeftover)) {
        const dir = join(nodeTop, name);
        const dirs = await treeDeepestFirst(dir);
        // cgroup.kill of a folder kills the whole tree below it at once.
        if (canKill) await writeFile(join(dir, "cgroup.kill"), "1").catch(() => undefined);
        await killProcs(dirs);
        for (const d of dirs) await removeDir(d);
        count += envCount(dirs);
      }
      return count;
    },
    close: async () => {
      await rmdir(top).catch(() => undefined);
      // Fails while another run of the node has its folder there, as it should.
      await rmdir(nodeTop).catch(() => undefined);
    },
  };
}

async function tryV1(own: Map<string, string>, group: Group): Promise<Cgroups | undefined> {
  const tops: Record<"memory" | "pids" | "cpu" | "unified", string | undefined> = {
    memory: undefined,
    pids: undefined,
    cpu: undefined,
    unified: undefined,
  };
  const makeTop = async (nodeTop: string): Promise<string> => {
    const top = join(nodeTop, group.instance);
    await whileVanishing(() => mkdir(top, { recursive: true }).then(() => undefined));
    return top;
  };
  for (const c of ["memory", "pids", "cpu"] as const) {
    const mount = join(ROOT, c);
    if (!existsSync(join(mount, "cgroup.procs"))) continue;
    try {
      tops[c] = await makeTop(join(mount, own.get(c) ?? "/", group.node));
    } catch {
      // not writable: that limit is not available
    }
  }
  if (!tops.memory || !tops.pids) {
    for (const top of Object.values(tops)) if (top) await rmdir(top).catch(() => undefined);
    return undefined;
  }
  // The v2 tree of a hybrid machine carries no controllers but can kill a whole cgroup at once.
  const unified = join(ROOT, "unified");
  if (existsSync(join(unified, "cgroup.procs"))) {
    try {
      const top = await makeTop(join(unified, own.get("") ?? "/", group.node));
      if (existsSync(join(top, "cgroup.kill"))) tops.unified = top;
      else await rmdir(top).catch(() => undefined);
    } catch {
      // no kill switch: processes are killed one by one
    }
  }
  const present = (Object.keys(tops) as (keyof typeof tops)[]).filter((k) => tops[k] !== undefined);

  const make = (id: string): EnvCgroup => {
    const dirs = present.map((k) => join(tops[k] as string, id));
    return {
      procsFiles: dirs.map((d) => join(d, "cgroup.procs")),
      counters: async () => ({
        oomKills: await readKeyed(join(tops.memory as string, id, "memory.oom_control"), "oom_kill"),
        pidsMax: await readKeyed(join(tops.pids as string, id, "pids.events"), "max"),
      }),
      kill: async () => {
        if (tops.unified) await writeFile(join(tops.unified, id, "cgroup.kill"), "1").catch(() => undefined);
        await killProcs(dirs);
      },
      remove: async () => {
        for (const d of dirs) await removeDir(d);
      },
    };
  };

  return {
    mode: "v1",
    describe: `cgroup v1 under ${tops.memory} (memory, pids${tops.cpu ? ", cpu" : ""}${tops.unified ? "; cgroup.kill" : ""})`,
    create: async (id, limits) => {
      const cg = make(id);
      const mem = join(tops.memory as string, id);
      await mkdir(mem);
      await writeFile(join(mem, "memory.limit_in_bytes"), String(limits.memoryBytes));
      // Only present with swap accounting; bounds memory plus swap to the same figure.
      await writeFile(join(mem, "memory.memsw.limit_in_bytes"), String(limits.memoryBytes)).catch(() => undefined);
      const pids = join(tops.pids as string, id);
      await mkdir(pids);
      await writeFile(join(pids, "pids.max"), String(limits.pids));
      if (tops.cpu) {
        const cpu = join(tops.cpu, id);
        await mkdir(cpu);
        await writeFile(join(cpu, "cpu.cfs_period_us"), "100000");
        await writeFile(join(cpu, "cpu.cfs_quota_us"), String(Math.round(limits.cpus * 100_000)));
      }
      if (tops.unified) await mkdir(join(tops.unified, id));
      return cg;
    },
    cleanupLeftovers: async (isLeftover) => {
      const nodeTops = present.map((k) => dirname(tops[k] as string));
      const names = new Set<string>();
      for (const nodeTop of nodeTops) for (const name of await leftoverNames(nodeTop, isLeftover)) names.add(name);
      let count = 0;
      for (const name of names) {
        if (tops.unified) await writeFile(join(dirname(tops.unified), name, "cgroup.kill"), "1").catch(() => undefined);
        const trees = await Promise.all(nodeTops.map((t) => treeDeepestFirst(join(t, name))));
        const dirs = trees.flat().filter((d) => existsSync(d));
        await killProcs(dirs);
        for (const d of dirs) await removeDir(d);
        count += Math.max(0, ...trees.map(envCount));
      }
      return count;
    },
    close: async () => {
      for (const k of present) {
        await rmdir(tops[k] as string).catch(() => undefined);
        // Fails while another run of the node has its folder there, as it should.
        await rmdir(dirname(tops[k] as string)).catch(() => undefined);
      }
    },
  };
}
