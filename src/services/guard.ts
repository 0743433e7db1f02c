import { spawn } from "node:child_process";
import { constants } from "node:os";
import { groupMembers, ownGroup } from "./group.ts";

/** Shell syntax beyond plain words: such a command needs /bin/sh. */
const SHELL_SYNTAX = /[^A-Za-z0-9_\-.,/:=@%+ ]/;
/** First words that are shell builtins or keywords, never programs. */
const SHELL_WORDS = new Set(["cd", "exec", "export", "ulimit", "umask", "set", "unset", ".", "source", "eval", "if", "for", "while", "until", "case", "time", "command", "trap", "wait"]);

/**
 * The argv that runs a supervised command: its words when it is plain words
 * naming a program (so no shell stays between the guard and the server),
 * else `/bin/sh -c COMMAND`.
 *
 * @example
 * ```ts
 * commandArgv("vllm serve m --port 8000"); // ["vllm", "serve", "m", "--port", "8000"]
 * commandArgv("cd /srv && vllm serve m");  // ["/bin/sh", "-c", "cd /srv && vllm serve m"]
 * ```
 */
export function commandArgv(command: string): string[] {
  const words = command.trim().split(/ +/);
  const first = words[0] ?? "";
  if (SHELL_SYNTAX.test(command.trim()) || first.includes("=") || SHELL_WORDS.has(first)) return ["/bin/sh", "-c", command];
  return words;
}

/**
 * The guard: a small process between matrixd and a supervised server.
 * matrixd starts it as the leader of a process group of its own, and the
 * server's command runs in that group, so matrixd can end the whole group
 * whichever of them dies first. The guard watches its stdin, a pipe from
 * matrixd, and its parent: when matrixd goes away, even by kill -9, the pipe
 * closes (or the guard is handed to another parent) and the guard stops the
 * group, so no server outlives its matrixd. When the server's command ends,
 * the guard ends what it left behind. Usage (internal): matrixd __guard
 * GRACE_MS COMMAND
 */
export async function guardMain(argv: string[]): Promise<number> {
  const [graceText, command] = argv;
  const grace = Number(graceText);
  if (!command || !Number.isFinite(grace)) {
    console.error("usage: matrixd __guard GRACE_MS COMMAND");
    return 2;
  }
  const [file, ...args] = commandArgv(command);
  // started by hand, not as a group leader: the command gets a group of its own instead
  const leader = ownGroup() === process.pid;
  const child = spawn(file as string, args, { detached: !leader, stdio: ["ignore", "inherit", "inherit"] });
  const group = leader ? process.pid : child.pid;
  /** the rest of the group, the guard itself left out */
  const signalOthers = (sig: NodeJS.Signals) => {
    if (group === undefined) return;
    for (const pid of groupMembers(group)) {
      if (pid === process.pid) continue;
      try {
        process.kill(pid, sig);
      } catch {
        // gone meanwhile
      }
    }
  };
  let stopping = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    signalOthers("SIGTERM");
    setTimeout(() => signalOthers("SIGKILL"), grace).unref();
  };
  process.stdin.on("end", stop);
  process.stdin.on("close", stop);
  process.stdin.on("error", stop);
  process.stdin.resume();
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
  // a parent that died without closing the pipe (it was shared, or never a pipe): the guard is re-parented
  const parent = process.ppid;
  const watch = setInterval(() => {
    if (process.ppid !== parent) stop();
  }, 500);
  return new Promise((resolve) => {
    child.on("exit", (code, signal) => {
      clearInterval(watch);
      // whatever the command did, take the rest of its group with it
      signalOthers("SIGKILL");
      resolve(code ?? (signal ? 128 + (constants.signals[signal] ?? 15) : 1));
    });
    child.on("error", (err) => {
      clearInterval(watch);
      console.error(`cannot start ${command}: ${err.message}`);
      resolve(127);
    });
  });
}
