/** How a command's LLM client is put together from its flags and config. */
import { describe, expect, test } from "bun:test";
import { validate } from "../src/config/load.ts";
import { JobConfigSchema } from "../src/config/run.ts";
import { ConfigError } from "../src/errors.ts";
import { slotsOfCommand } from "../src/services/supervisor.ts";
import { coralSeeds } from "./support/seeds.ts";
import { readRows, tempDir, writeLines } from "./support/files.ts";
import { MATRIXD, runProcess } from "./support/matrixd.ts";

describe("llm open", () => {
  test("llm open - a supervised server with no llm section is the only endpoint: no default URL beside it", async () => {
    const tmp = tempDir();
    try {
      writeLines(tmp.path("s.jsonl"), coralSeeds(20, "s"));
      const sup = `${MATRIXD.join(" ")} sim-llm --port {port} --slots 4 --decode-tps 4000`;
      const r = await runProcess([...MATRIXD, "run", "--workflow", "coral", "--seeds", "s.jsonl", "--out", "s.out", "--log-level", "info", "--supervise", sup], {
        cwd: tmp.dir,
        timeoutMs: 60_000,
      });
      expect(r.code).toBe(0);
      expect(readRows(tmp.path("s.out")).filter((row) => row.status === "ok").length).toBe(20);
      expect(r.stderr).not.toContain("127.0.0.1:8000");
      // the endpoint was found out: a vLLM-speaking server with its 4 slots
      const found = r.stderr.split("\n").find((l) => l.includes('"msg":"LLM endpoint"'));
      expect(found).toContain('"kind":"vllm"');
      expect(found).toContain('"slots":4');
    } finally {
      tmp.remove();
    }
  }, 70_000);

  test("llm open - the slots a server command sets are read off it", () => {
    expect(slotsOfCommand("vllm serve m --port {port} --max-num-seqs 64")).toBe(64);
    expect(slotsOfCommand("llama-server -m x.gguf --parallel 8 --port {port}")).toBe(8);
    expect(slotsOfCommand("llama-server -m x.gguf -np 4 --port {port}")).toBe(4);
    expect(slotsOfCommand("python -m sglang.launch_server --max-running-requests=32")).toBe(32);
    expect(slotsOfCommand("vllm serve m --port {port}")).toBeUndefined();
  });

  test("llm open - an API key written in a config file is refused, naming the way to give it", () => {
    const bad = () => validate(JobConfigSchema, { llm: { apiKey: "sk-secret" } }, "config x.yaml");
    expect(bad).toThrow(ConfigError);
    expect(bad).toThrow(/apiKeyEnv/);
    expect(() => validate(JobConfigSchema, { llm: { endpoints: [{ url: "http://h:1/v1", kind: "llama" }] } }, "config x.yaml")).toThrow(/kind/);
  });
});
