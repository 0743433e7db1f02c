import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { createApp } from "../src/api/app.ts";
import { silentLogger } from "../src/log.ts";
import { testRegistry } from "./support/api.ts";
import { readRows, tempDir, writeLines } from "./support/files.ts";
import { MATRIXD, ROOT, runProcess } from "./support/matrixd.ts";
import { MemoryNode } from "./support/memory-node.ts";
import { coralSeeds } from "./support/seeds.ts";
import { type SimProcess, startSims } from "./support/sim-llm.ts";

/**
 * Checks before any task is admitted, as a user meets them: each command is
 * its own process against real HTTP servers (a `matrixd sim-llm`, a port
 * nothing listens on, a server that wants an API key, a node's API). A check
 * that fails must say so within seconds: every run is bounded, and a killed
 * one exits with no code 2.
 */

const tmp = tempDir("matrixd-preflight-");
const BOUND_MS = 20_000;
const SEEDS_DIR = join(ROOT, "configs/seeds");
let sim: SimProcess;
let live = "";
let dead = "";
let keyed: ReturnType<typeof Bun.serve>;
const keysSeen: (string | null)[] = [];

/** A port nothing listens on: one the system just gave and took back. */
function closedPort(): number {
  const s = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response("") });
  const port = s.port as number;
  s.stop(true);
  return port;
}

function matrixd(args: string[], env: Record<string, string> = {}) {
  return runProcess([...MATRIXD, ...args], { cwd: tmp.dir, timeoutMs: BOUND_MS, env: { MATRIXD_TOKEN: "", ...env } });
}

/** stderr as one line: what a failed check prints, and nothing else. */
function oneLine(stderr: string): string {
  const lines = stderr.trim().split("\n");
  expect(lines.length).toBe(1);
  return lines[0] as string;
}

beforeAll(async () => {
  sim = await startSims(["--model", "llama-3-8b", "--slots", "16"]);
  live = sim.urls[0] as string;
  dead = `http://127.0.0.1:${closedPort()}/v1`;
  keyed = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch(req) {
      if (new URL(req.url).pathname !== "/v1/models") return new Response("not found", { status: 404 });
      const auth = req.headers.get("authorization");
      keysSeen.push(auth);
      if (auth !== "Bearer right-key") return Response.json({ error: "invalid api key" }, { status: 401 });
      return Response.json({ object: "list", data: [{ id: "hosted-model", object: "model" }] });
    },
  });
  writeLines(tmp.path("seeds.jsonl"), coralSeeds(6));
  writeFileSync(tmp.path("a-file"), "not a folder\n");
  mkdirSync(tmp.path("empty-bin"));
}, 60_000);

afterAll(async () => {
  await sim?.stop();
  await keyed?.stop(true);
  tmp.remove();
});

describe("preflight - run", () => {
  test("preflight - a dead --llm URL stops the run at once: exit 2, one line naming the endpoint, no row", async () => {
    const r = await matrixd(["run", "--workflow", "coral", "--seeds", "seeds.jsonl", "--out", "dead.jsonl", "--llm", dead]);
    expect(r.code).toBe(2);
    expect(oneLine(r.stderr)).toBe(`matrixd run: LLM endpoint ${dead} does not answer (connection refused)`);
    expect(existsSync(tmp.path("dead.jsonl"))).toBe(false);
  });

  test("preflight - a model no endpoint serves names the endpoint, what it serves, the model and the role", async () => {
    writeFileSync(tmp.path("qwen.yaml"), "options:\n  teacherModel: qwen2.5-7b\n");
    const r = await matrixd(["run", "--workflow", "coral", "--seeds", "seeds.jsonl", "--out", "qwen.jsonl", "--llm", live, "--config", "qwen.yaml"]);
    expect(r.code).toBe(2);
    expect(oneLine(r.stderr)).toBe(`matrixd run: LLM endpoint ${live} serves llama-3-8b, not "qwen2.5-7b" that role teacher asks for`);
    expect(existsSync(tmp.path("qwen.jsonl"))).toBe(false);
  });

  test("preflight - a dead endpoint among two is a warning line; the job runs on the live one", async () => {
    const r = await matrixd(["run", "--workflow", "coral", "--seeds", "seeds.jsonl", "--out", "two.jsonl", "--llm", live, "--llm", dead]);
    expect(r.code).toBe(0);
    const warnings = r.stderr.split("\n").filter((l) => l.includes("warning"));
    expect(warnings).toEqual([`matrixd run: warning: LLM endpoint ${dead} does not answer (connection refused); going on with the other one`]);
    const rows = readRows(tmp.path("two.jsonl"));
    expect(rows.length).toBe(6);
    expect(rows.every((x) => x.status === "ok")).toBe(true);
  });

  test("preflight - an LLM workflow given no endpoint at all says what to pass", async () => {
    const r = await matrixd(["run", "--workflow", "coral", "--seeds", "seeds.jsonl", "--out", "none.jsonl"]);
    expect(r.code).toBe(2);
    expect(oneLine(r.stderr)).toMatch(/^matrixd run: workflow coral calls an LLM \(roles teacher, student, extractor\) and none is given: pass --llm URL \(or --llm sim\), --supervise CMD/);
  });

  test("preflight - a workflow that runs tools, without --env, says to pass --env docker|bwrap", async () => {
    const r = await matrixd(["run", "--workflow", "tool-use", "--seeds", join(SEEDS_DIR, "tool-use.jsonl"), "--out", "tu.jsonl", "--llm", "sim"]);
    expect(r.code).toBe(2);
    expect(oneLine(r.stderr)).toMatch(/^matrixd run: workflow tool-use runs roles .*tools.* in per-task environments: pass --env docker\|bwrap$/);
  });

  test("preflight - --env bwrap with no bwrap on PATH names the driver", async () => {
    const r = await matrixd(["run", "--workflow", "tool-use", "--seeds", join(SEEDS_DIR, "tool-use.jsonl"), "--out", "tu.jsonl", "--llm", "sim", "--env", "bwrap"], {
      PATH: tmp.path("empty-bin"),
    });
    expect(r.code).toBe(2);
    expect(oneLine(r.stderr)).toBe("matrixd run: bwrap is not on PATH: install bubblewrap, or pass --env docker");
  });

  test("preflight - --out into a missing folder creates it; under a file, or onto a folder, it names the path", async () => {
    const deep = join("made", "for", "it", "o.jsonl");
    const made = await matrixd(["run", "--workflow", "coral-dummy", "--seeds", "seeds.jsonl", "--out", deep]);
    expect(made.code).toBe(0);
    expect(readRows(tmp.path(deep)).length).toBe(6);

    const under = await matrixd(["run", "--workflow", "coral-dummy", "--seeds", "seeds.jsonl", "--out", "a-file/sub/o.jsonl"]);
    expect(under.code).toBe(2);
    expect(oneLine(under.stderr)).toBe(`matrixd run: --out a-file/sub/o.jsonl: cannot create folder ${tmp.path("a-file/sub")}: ${tmp.path("a-file")} is a file`);

    const folder = await matrixd(["run", "--workflow", "coral-dummy", "--seeds", "seeds.jsonl", "--out", "made"]);
    expect(folder.code).toBe(2);
    expect(oneLine(folder.stderr)).toBe("matrixd run: --out made is a folder, not a file");
  });

  test("preflight - a supervised server is checked once it started: the model it serves, then it is stopped", async () => {
    const marker = `--decode-tps ${4000 + (process.pid % 5000)}`;
    const sup = `${MATRIXD.join(" ")} sim-llm --port {port} --model llama-3-8b --slots 4 ${marker}`;
    writeFileSync(tmp.path("qwen.yaml"), "options:\n  teacherModel: qwen2.5-7b\n");
    const r = await matrixd(["run", "--workflow", "coral", "--seeds", "seeds.jsonl", "--out", "sup.jsonl", "--supervise", sup, "--config", "qwen.yaml"]);
    expect(r.code).toBe(2);
    expect(r.stderr.trim().split("\n").at(-1)).toMatch(/^matrixd run: LLM endpoint http:\/\/127\.0\.0\.1:\d+\/v1 \(supervised\) serves llama-3-8b, not "qwen2\.5-7b" that role teacher asks for$/);
    expect(existsSync(tmp.path("sup.jsonl"))).toBe(false);
    const left = await runProcess(["pgrep", "-f", `sim-llm .*${marker}`]);
    expect(left.stdout.trim()).toBe("");
  });

  test("preflight - an endpoint that wants an API key: 401 names the variable of the key", async () => {
    const url = `http://127.0.0.1:${keyed.port}/v1`;
    writeFileSync(tmp.path("keyed.yaml"), `llm:\n  endpoints:\n    - url: ${url}\n      apiKeyEnv: PREFLIGHT_TEST_KEY\n`);
    const r = await matrixd(["run", "--workflow", "coral", "--seeds", "seeds.jsonl", "--out", "keyed.jsonl", "--config", "keyed.yaml"], { PREFLIGHT_TEST_KEY: "" });
    expect(r.code).toBe(2);
    expect(oneLine(r.stderr)).toBe(`matrixd run: LLM endpoint ${url} answered 401 Unauthorized: $PREFLIGHT_TEST_KEY, which holds its API key, is not set`);
  });
});

describe("preflight - check", () => {
  test("preflight - matrixd check --config alone: each check with ok, warning or failed; exit 0 with warnings only", async () => {
    writeFileSync(tmp.path("node.yaml"), `workflow: coral\nllm:\n  endpoints:\n    - url: ${live}\n    - url: ${dead}\n`);
    const r = await matrixd(["check", "--config", "node.yaml"]);
    expect(r.code).toBe(0);
    const lines = r.stdout.trim().split("\n");
    expect(lines).toContain("ok      workflow      workflow coral: known, options valid");
    expect(lines).toContain(`ok      llm endpoint  LLM endpoint ${live} answers; serves llama-3-8b`);
    expect(lines).toContain(`warning llm endpoint  LLM endpoint ${dead} does not answer (connection refused); going on with the other one`);
  });

  test("preflight - matrixd check fails (exit 2) on a model no endpoint serves, a missing Docker engine, every endpoint dead", async () => {
    writeFileSync(tmp.path("bad.yaml"), `workflow: coral\noptions:\n  studentModel: qwen2.5-7b\nenv:\n  driver: docker\n  socketPath: ${tmp.path("no.sock")}\n`);
    const r = await matrixd(["check", "--config", "bad.yaml", "--llm", live]);
    expect(r.code).toBe(2);
    expect(r.stdout).toContain(`failed  llm model     LLM endpoint ${live} serves llama-3-8b, not "qwen2.5-7b" that role student asks for`);
    expect(r.stdout).toContain(`failed  environment   no Docker engine answers at ${tmp.path("no.sock")} (no such socket): start dockerd, or pass --env bwrap`);

    const all = await matrixd(["check", "--workflow", "coral", "--llm", dead]);
    expect(all.code).toBe(2);
    expect(all.stdout).toContain(`failed  llm endpoint  LLM endpoint ${dead} does not answer (connection refused)`);
  });

  test("preflight - a workflow file: its tool roles need --env, the model its llm role names must be served", async () => {
    // one llm role naming its model, whose tool calls a tool role runs
    const tools = {
      name: "tools",
      start: "assistant",
      tools: { echo_args: { description: "Echo the arguments.", command: ["cat"] } },
      roles: {
        assistant: {
          kind: "llm",
          model: "gpt-x",
          tools: ["echo_args"],
          messages: [{ role: "user", content: "Help" }, { history: { roles: ["assistant", "tools"] } }],
          reply: { text: "answer" },
          next: [{ if: "size(history) < 4", then: "tools" }, { then: "end" }],
        },
        tools: { kind: "tool", next: "assistant" },
      },
      output: { answer: "vars.answer" },
    };
    writeFileSync(tmp.path("tools.json"), JSON.stringify(tools));
    const r = await matrixd(["check", "--workflow", "tools.json", "--llm", "sim"]);
    expect(r.code).toBe(2);
    expect(r.stdout).toContain("failed  environment   workflow tools@");
    expect(r.stdout).toContain("runs role tools in per-task environments: pass --env docker|bwrap");
    expect(r.stdout).toContain('failed  llm model     LLM endpoint sim (in-process simulated LLM) serves sim-llm, not "gpt-x" that role assistant asks for');
    writeFileSync(tmp.path("gpt-x.yaml"), "sim:\n  model: gpt-x\n");
    const fine = await matrixd(["check", "--workflow", "tools.json", "--llm", "sim", "--env", "bwrap", "--config", "gpt-x.yaml"]);
    expect(fine.stdout).not.toContain("failed");
    expect(fine.code).toBe(0);
  });

  test("preflight - matrixd check sends the API key the client sends", async () => {
    const url = `http://127.0.0.1:${keyed.port}/v1`;
    writeFileSync(tmp.path("key.yaml"), `workflow: coral\nllm:\n  endpoints:\n    - url: ${url}\n      apiKeyEnv: PREFLIGHT_TEST_KEY\n`);
    keysSeen.length = 0;
    const right = await matrixd(["check", "--config", "key.yaml"], { PREFLIGHT_TEST_KEY: "right-key" });
    expect(right.code).toBe(0);
    expect(right.stdout).toContain(`ok      llm endpoint  LLM endpoint ${url} answers; serves hosted-model`);
    expect(keysSeen).toEqual(["Bearer right-key"]);
    const wrong = await matrixd(["check", "--config", "key.yaml"], { PREFLIGHT_TEST_KEY: "wrong-key" });
    expect(wrong.code).toBe(2);
    expect(wrong.stdout).toContain(`failed  llm endpoint  LLM endpoint ${url} answered 401 Unauthorized to the API key in $PREFLIGHT_TEST_KEY: check the key`);
  });
});

describe("preflight - join and submit", () => {
  test("preflight - matrixd join with a dead --llm exits 2 naming it, before it looks for NATS", async () => {
    const r = await matrixd(["join", "--nats", "nats://127.0.0.1:1", "--llm", dead]);
    expect(r.code).toBe(2);
    expect(oneLine(r.stderr)).toBe(`matrixd join: LLM endpoint ${dead} does not answer (connection refused)`);
  });

  test("preflight - matrixd submit: a server that does not answer, a workflow no member hosts", async () => {
    const down = `http://127.0.0.1:${closedPort()}`;
    const r = await matrixd(["submit", "--server", down, "--workflow", "coral", "seeds.jsonl"]);
    expect(r.code).toBe(2);
    expect(oneLine(r.stderr)).toBe(`matrixd submit: server ${down} does not answer (connection refused)`);

    const registry = testRegistry();
    const node = new MemoryNode({ name: "preflight-node", registry });
    const server = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: createApp(node, { registry, log: silentLogger }).fetch });
    try {
      const url = `http://127.0.0.1:${server.port}`;
      const nope = await matrixd(["submit", "--server", url, "--workflow", "nope", "seeds.jsonl"]);
      expect(nope.code).toBe(2);
      expect(oneLine(nope.stderr)).toMatch(new RegExp(`^matrixd submit: unknown workflow "nope": no member of the cluster at ${url} hosts it \\(hosted: coral, coral-dummy, `));
      expect(await node.jobs()).toEqual([]);
    } finally {
      await server.stop(true);
      await node.close();
    }
  });
});


