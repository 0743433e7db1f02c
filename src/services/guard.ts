import { spawn } from "node:child_process";

/**
 * The guard: a small process between matrixd and a supervised server. It
 * starts the server's command in a process group of its own and watches its
 * stdin, a pipe from matrixd. When matrixd goes away, even by kill -9, the
 * pipe closes and the guard stops the whole group, so no server outlives its
 * matrixd. Usage (internal): matrixd __guard GRACE_MS COMMAND
 */
export async function guardMain(argv: string[]): Promise<number> {
  const [graceText, command] = argv;
  const grace = Number(graceText);
  if (!command || !Number.isFinite(grace)) {
    console.error("usage: matrixd __guard GRACE_MS COMMAND");
    return 2;
  }
  const child = spawn("/bin/sh", ["-c", command], { detached: true, stdio: ["ignore", "inherit", "inherit"] });
  const pid = child.pid;
  let stopping = false;
  const killGroup = (sig: NodeJS.Signals) => {
    if (pid === undefined) return;
    try {
      process.kill(-pid, sig);
    } catch {
      // the group is gone already
    }
  };
  const stop = () => {
    if (stopping) return;
    stopping = true;
    killGroup("SIGTERM");
    setTimeout(() => killGroup("SIGKILL"), grace).unref();
  };
  process.stdin.on("end", stop);
  process.stdin.on("close", stop);
  process.stdin.on("error", stop);
  process.stdin.resume();
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
  return new Promise((resolve) => {
    child.on("exit", (code, signal) => {
      // Whatever the leader did, take the rest of its group with it.
      killGroup("SIGKILL");
      resolve(code ?? (signal ? 128 + 15 : 1));
    });
    child.on("error", (err) => {
      console.error(`cannot start ${command}: ${err.message}`);
      resolve(127);
    });
  });
}
