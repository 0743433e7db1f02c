import { readFileSync } from "node:fs";

/**
 * Which run of a node made an environment. Several runs may share a node name
 * on one host (two `matrixd run --env bwrap` at once, or a run and a `join`),
 * so each run names its state folder, cgroups and containers with an
 * instance id of its own, and the start-up clean-up removes only what belongs
 * to runs that are over. The id says whose it is: the process id, the
 * process's start time (clock ticks after boot, so a pid taken again by a
 * later process does not pass for the old run), the start of this boot's id
 * (so neither does a process of a later boot), and a random part, for
 * several drivers opened in one process.
 */

/** `<pid>-<start ticks>-<boot>-<random>`, e.g. `41873-9920117-0ad1b6b2-5f3c9a` */
const INSTANCE = /^(\d+)-(\d+)-([0-9a-f]{8})-([0-9a-f]{6})$/;

interface Parsed {
  pid: number;
  start: string;
  boot: string;
}

/** A new instance id for this process (one per driver opened). */
export function newInstanceId(): string {
  const start = processStart(process.pid) ?? "0";
  const random = Array.from(crypto.getRandomValues(new Uint8Array(3)), (b) => b.toString(16).padStart(2, "0")).join("");
  return `${process.pid}-${start}-${bootId()}-${random}`;
}

/** Whether `name` is an instance id at all (else it is no run's, e.g. a folder of an older layout). */
export function isInstanceId(name: string): boolean {
  return INSTANCE.test(name);
}

/**
 * Whether the run named by `id` is still alive on this host: its process
 * exists (and is no zombie) and started when the id says, in this boot.
 * Not an instance id: false (nobody's, so a leftover). A process whose start
 * cannot be read is taken as alive: what cannot be judged is not killed.
 */
export function instanceAlive(id: string): boolean {
  const p = parse(id);
  if (!p) return false;
  if (p.boot !== bootId()) return false;
  try {
    process.kill(p.pid, 0);
  } catch (err) {
    // EPERM: it exists, under another user
    if ((err as NodeJS.ErrnoException).code !== "EPERM") return false;
  }
  const stat = readStat(p.pid);
  if (stat === undefined) return true;
  if (stat.state === "Z" || stat.state === "X") return false;
  return stat.start === p.start;
}

function parse(id: string): Parsed | undefined {
  const m = INSTANCE.exec(id);
  if (!m) return undefined;
  return { pid: Number(m[1]), start: m[2] as string, boot: m[3] as string };
}

/** A process's start time, in clock ticks after boot (field 22 of /proc/PID/stat). */
function processStart(pid: number): string | undefined {
  return readStat(pid)?.start;
}

function readStat(pid: number): { state: string; start: string } | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    return undefined;
  }
  // "pid (comm) state ppid ...": comm may hold spaces and parentheses, so read after the last ")"
  const fields = text.slice(text.lastIndexOf(")") + 2).split(" ");
  const state = fields[0];
  const start = fields[19];
  if (state === undefined || start === undefined || !/^\d+$/.test(start)) return undefined;
  return { state, start };
}

let boot: string | undefined;

/** The first 8 hex digits of this boot's random id; zeros where the kernel does not say. */
function bootId(): string {
  if (boot === undefined) {
    let text = "";
    try {
      text = readFileSync("/proc/sys/kernel/random/boot_id", "utf8");
    } catch {
      // not Linux, or /proc hidden: every run counts as this boot's
    }
    const hex = text.replace(/[^0-9a-f]/gi, "").toLowerCase().slice(0, 8);
    boot = hex.length === 8 ? hex : "00000000";
  }
  return boot;
}
