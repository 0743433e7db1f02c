import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import { simLlmMain } from "../cmd/sim-llm.ts";
import { complete } from "./support/sim-http.ts";

const ROOT = join(import.meta.dir, "..");
const BUN = join(ROOT, "node_modules/.bin/bun");

/** Runs simLlmMain in a child process, with its arguments passed as JSON. */
function spawnSim(args: string[]) {
  const script = `import { simLlmMain } from ${JSON.stringify(join(ROOT, "cmd/sim-llm.ts"))};
process.exit(await simLlmMain(JSON.parse(process.env.SIM_ARGS ?? "[]")));`;
  return Bun.spawn([BUN, "-e", script], {
    cwd: ROOT,
    env: { ...process.env, SIM_ARGS: JSON.stringify(args) },
    stdout: "pipe",
    stderr: "pipe",
  });
}

/** Reads stdout until `n` lines have arrived. */
async function readLines(stream: ReadableStream<Uint8Array>, n: number): Promise<string[]> {
  const reader = stream.getReader();
  const decoder = new TextDecoder();
  let text = "";
  while (text.split("\n").length <= n) {
    const { value, done } = await reader.read();
    if (done) break;
    text += decoder.decode(value, { stream: true });
  }
  reader.releaseLock();
  return text.split("\n").slice(0, n);
}

/** Captures what a function writes with console.error. */
async function stderrOf(run: () => Promise<number>): Promise<{ code: number; err: string }> {
  const lines: string[] = [];
  const orig = console.error;
  console.error = (...a: unknown[]) => lines.push(a.join(" "));
  try {
    return { code: await run(), err: lines.join("\n") };
  } finally {
    console.error = orig;
  }
}

describe("sim-llm command", () => {
  test("sim-llm cli - serves until SIGTERM, then exits 0", async () => {
    const proc = spawnSim(["--port", "0", "--servers", "2", "--slots", "16", "--decode-tps", "50000", "--model", "m1"]);
    try {
      const lines = await readLines(proc.stdout, 2);
      const urls: string[] = [];
      for (const line of lines) {
        const m = /^sim-llm listening on (http:\/\/127\.0\.0\.1:\d+) \(model m1, slots 16, ceiling 50000 tok\/s\)$/.exec(line);
        expect(m).not.toBeNull();
        urls.push(m![1]!);
      }
      expect(new Set(urls).size).toBe(2);
      for (const url of urls) {
        expect((await fetch(`${url}/health`)).status).toBe(200);
        const r = await complete(url, { model: "m1", messages: [{ role: "user", content: "hello" }] });
        expect(r.usage.completion_tokens).toBeGreaterThan(0);
      }
      proc.kill("SIGTERM");
      expect(await proc.exited).toBe(0);
    } finally {
      proc.kill("SIGKILL");
    }
  }, 20_000);

  test("sim-llm cli - --kind and its flags set the server's protocol", async () => {
    const proc = spawnSim(["--kind", "llamacpp", "--slots", "3", "--no-metrics", "--context-tokens", "4096", "--reasoning"]);
    try {
      const [line] = await readLines(proc.stdout, 1);
      const url = /listening on (http:\/\/\S+) \(.*, kind llamacpp\)$/.exec(line ?? "")?.[1];
      expect(url).toBeDefined();
      expect((await fetch(`${url}/metrics`)).status).toBe(501);
      const props = (await (await fetch(`${url}/props`)).json()) as { total_slots: number; default_generation_settings: { n_ctx: number } };
      expect(props.total_slots).toBe(3);
      expect(props.default_generation_settings.n_ctx).toBe(4096);
      const r = await complete(url!, { messages: [{ role: "user", content: "hello" }] });
      expect((r.choices[0]!.message as { reasoning_content?: string }).reasoning_content).toBeDefined();
      proc.kill("SIGTERM");
      expect(await proc.exited).toBe(0);
    } finally {
      proc.kill("SIGKILL");
    }
  }, 20_000);

  test("sim-llm cli - --die-after exits with code 3", async () => {
    const proc = spawnSim(["--die-after", "0.2"]);
    try {
      expect(await proc.exited).toBe(3);
    } finally {
      proc.kill("SIGKILL");
    }
  }, 20_000);

  test("sim-llm cli - a bad flag exits 2 naming it", async () => {
    const proc = spawnSim(["--bogus", "1"]);
    expect(await proc.exited).toBe(2);
    expect(await new Response(proc.stderr).text()).toContain("--bogus");

    for (const [args, named] of [
      [["--slots", "many"], "--slots"],
      [["--slots", "0"], "--slots"],
      [["--accuracy", "2"], "--accuracy"],
      [["--port", "70000"], "--port"],
      [["--servers", "0"], "--servers"],
      [["--die-after", "-1"], "--die-after"],
      [["--kind", "ollama"], "--kind"],
      [["--context-tokens", "4"], "--context-tokens"],
      [["--rpm", "-1"], "--rpm"],
    ] as const) {
      const { code, err } = await stderrOf(() => simLlmMain([...args]));
      expect(code).toBe(2);
      expect(err).toContain(named);
    }
  }, 20_000);

  test("sim-llm cli - --help exits 0", async () => {
    const lines: string[] = [];
    const orig = console.log;
    console.log = (...a: unknown[]) => lines.push(a.join(" "));
    try {
      expect(await simLlmMain(["--help"])).toBe(0);
    } finally {
      console.log = orig;
    }
    expect(lines.join("\n")).toContain("--decode-tps");
    expect(lines.join("\n")).toContain("--kind K");
  }, 20_000);
});
