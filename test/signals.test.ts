import { expect, test } from "bun:test";
import { join } from "node:path";

const ROOT = join(import.meta.dir, "..");

/** A process that owns its signals the way every command does, printing what it is told. */
const SCRIPT = `
import { handleSignals } from ${JSON.stringify(join(ROOT, "cmd/signals.ts"))};
handleSignals({
  graceful: (s) => console.log("graceful " + s),
  forced: (s) => console.log("forced " + s),
});
console.log("ready");
setInterval(() => {}, 1000);
`;

test("signals - the first signal asks for a graceful stop, the second exits 130 at once", async () => {
  const proc = Bun.spawn([process.execPath, "-e", SCRIPT], { stdout: "pipe", stderr: "pipe" });
  const reader = proc.stdout.getReader();
  const decoder = new TextDecoder();
  let out = "";
  const until = async (text: string) => {
    while (!out.includes(text)) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`the process ended before printing "${text}": ${out}`);
      out += decoder.decode(value);
    }
  };
  await until("ready");
  proc.kill("SIGTERM");
  await until("graceful SIGTERM");
  proc.kill("SIGINT");
  expect(await proc.exited).toBe(130);
  await until("forced SIGINT").catch(() => undefined);
  expect(out).toContain("forced SIGINT");
  expect(out.match(/graceful/g)?.length).toBe(1);
});
