import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { dbFiles, type Scenario } from "../plugins/tool-use/domain.ts";
import { toolUse } from "../plugins/tool-use/index.ts";
import { ASSISTANT_SYSTEM, userSystem } from "../plugins/tool-use/prompts.ts";
import { argumentLines, scriptFiles, TOOL_SPECS } from "../plugins/tool-use/tools.ts";
import { makeJobRuntime } from "../src/engine/job.ts";
import { runJob, type RunSummary } from "../src/engine/run.ts";
import { createEnvService, parseEnvConfig } from "../src/env/index.ts";
import type { EnvService } from "../src/env/types.ts";
import { createLlmClient } from "../src/llm/index.ts";
import type { LlmClient } from "../src/llm/types.ts";
import { silentLogger } from "../src/log.ts";
import { startSim, type SimServer } from "../src/sim/index.ts";
import { AGENT_MARK, CUSTOMER_MARK } from "../src/sim/skills/tool-use.ts";
import { readRows, tempDir, writeLines } from "./support/files.ts";
import { ROOT } from "./support/matrixd.ts";

const SHIPPED = join(ROOT, "configs/seeds/tool-use.jsonl");
const shipped: Scenario[] = readFileSync(SHIPPED, "utf8").trim().split("\n").map((l) => JSON.parse(l));
const tmp = tempDir();
let sim: SimServer;
let clumsy: SimServer;
let llm: LlmClient;
let clumsyLlm: LlmClient;
let envs: EnvService;

beforeAll(async () => {
  sim = await startSim({ model: "tu", timeScale: 0.002 });
  // A model that calls tools badly half the time, to reach the tool error limit.
  clumsy = await startSim({ model: "tu", timeScale: 0.002, badToolCallRate: 0.5 });
  llm = createLlmClient({ endpoints: [{ url: `${sim.url}/v1`, models: ["tu"] }], retries: 1 });
  clumsyLlm = createLlmClient({ endpoints: [{ url: `${clumsy.url}/v1`, models: ["tu"] }], retries: 1 });
  envs = await createEnvService(parseEnvConfig({ driver: "bwrap", capacity: 8, node: `tool-use-test-${process.pid}` }), silentLogger);
});

afterAll(async () => {
  await envs?.close();
  await llm?.close();
  await clumsyLlm?.close();
  await sim?.stop();
  await clumsy?.stop();
  tmp.remove();
});

async function run(name: string, seeds: string, opts: { options?: Record<string, unknown>; llm?: LlmClient; services?: Record<string, unknown> } = {}): Promise<{ s: RunSummary; rows: ReturnType<typeof readRows> }> {
  const job = makeJobRuntime({ workflow: toolUse, options: opts.options ?? {}, seed: 3, stepRetries: 0 });
  const out = tmp.path(`${name}.out`);
  const s = await runJob({ job, seedsPath: seeds, outPath: out, concurrency: 8, trials: 1, llm: opts.llm ?? llm, log: silentLogger, node: "n1", services: opts.services ?? { env: envs } });
  return { s, rows: readRows(out) };
}

/** Runs one tool script the way the environment does: `sh script` in the work folder, arguments on stdin. */
async function tool(shell: string[], dir: string, path: string, stdin: string, env: Record<string, string>) {
  const p = Bun.spawn([...shell, path], { cwd: dir, stdin: new Blob([stdin]), stdout: "pipe", stderr: "pipe", env });
  const [stdout, stderr, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  return { stdout: stdout.trim(), stderr: stderr.trim(), code };
}

describe("tool-use", () => {
  test("tool-use - tool arguments become key=value lines; anything else is refused with a reason", () => {
    expect(argumentLines('{"account_id": "A1042", "amount": 12.5}')).toEqual({ ok: true, stdin: "account_id=A1042\namount=12.5\n" });
    expect(argumentLines("")).toEqual({ ok: true, stdin: "" });
    expect(argumentLines('{"account_id": "A1042"')).toMatchObject({ ok: false });
    expect(argumentLines("[1]")).toEqual({ ok: false, error: "arguments must be a JSON object" });
    expect(argumentLines('{"a": {"b": 1}}')).toEqual({ ok: false, error: 'argument "a" must be a string, number or boolean' });
    expect(argumentLines('{"plan": "plus\\naccount_id=A0001"}')).toEqual({ ok: false, error: 'argument "plan" must be on one line' });
    expect(argumentLines('{"Bad Key": 1}')).toMatchObject({ ok: false });
    // The simulated model keys on the first sentence of each prompt.
    expect(ASSISTANT_SYSTEM.startsWith(AGENT_MARK)).toBe(true);
    expect(userSystem(shipped[0] as Scenario, "###STOP###").startsWith(CUSTOMER_MARK)).toBe(true);
  });

  // busybox alone (as in the image), and the host's sh and awk (as under bwrap without a root folder)
  for (const shell of ["busybox", "host"] as const) {
    test(`tool-use - every tool script does its job and refuses bad input (${shell} sh and awk)`, async () => {
      const dir = tmp.path(`direct-${shell}`);
      const bin = tmp.path(`bin-${shell}`);
      mkdirSync(bin, { recursive: true });
      let env: Record<string, string> = { PATH: process.env.PATH ?? "/usr/bin:/bin" };
      let sh = ["sh"];
      if (shell === "busybox") {
        const busybox = Bun.which("busybox");
        if (!busybox) throw new Error("busybox is not installed (apt-get install busybox-static)");
        for (const applet of ["sh", "awk", "sed", "cut", "head", "sort", "cat", "mv", "printf"]) symlinkSync(busybox, join(bin, applet));
        env = { PATH: bin };
        sh = [busybox, "sh"];
      }
      const s: Scenario = {
        ...(shipped[0] as Scenario),
        db: {
          accounts: [
            { account_id: "A1001", name: "Ana Diaz", phone: "555-0101", plan: "basic", status: "suspended", roaming: false, balance: 35.1 },
            { account_id: "A1002", name: "Sam O'Brien", phone: "555-0102", plan: "plus", status: "active", roaming: true, balance: 0 },
          ],
          usage: [
            { account_id: "A1001", used_mb: 4000, refuel_mb: 0 },
            { account_id: "A1002", used_mb: 100, refuel_mb: 1024 },
          ],
          payments: [],
        },
      };
      const files = { ...dbFiles(s.db, "db", true), ...scriptFiles(".tools") };
      for (const [path, text] of Object.entries(files)) {
        mkdirSync(join(dir, path, ".."), { recursive: true });
        writeFileSync(join(dir, path), text);
      }
      const t = (name: string, stdin = "") => tool(sh, dir, `.tools/tools/${name}.sh`, stdin, env);
      const json = async (name: string, stdin = "") => {
        const r = await t(name, stdin);
        expect({ name, stderr: r.stderr, code: r.code }).toEqual({ name, stderr: "", code: 0 });
        return JSON.parse(r.stdout);
      };
      const refused = async (name: string, stdin: string, message: string) => {
        const r = await t(name, stdin);
        expect({ name, stdin, code: r.code, stdout: r.stdout, stderr: r.stderr }).toEqual({ name, stdin, code: 1, stdout: "", stderr: message });
      };

      expect(await json("get_account", "account_id=A1002\n")).toEqual({
        account: { account_id: "A1002", name: "Sam O'Brien", phone: "555-0102", plan: "plus", status: "active", roaming: "on", balance: 0 },
        plan: { name: "plus", data_gb: 30, price: 50, roaming: "yes" },
      });
      expect(await json("find_account_by_phone", "phone=555-0101\n")).toEqual({ account_id: "A1001", name: "Ana Diaz" });
      expect(await json("get_usage", "account_id=A1002\n")).toEqual({ account_id: "A1002", plan: "plus", data_limit_mb: 31744, used_mb: 100, refuel_mb: 1024, remaining_mb: 31644 });
      expect((await json("list_plans")).plans.map((p: { name: string }) => p.name)).toEqual(["basic", "standard", "plus", "travel", "unlimited"]);
      await refused("get_account", "account_id=A9999\n", "no account A9999");
      await refused("get_account", "account_id=1001\n", 'bad account_id "1001": expected A and four digits, like A1042');
      await refused("get_account", "", "missing argument: account_id");
      await refused("get_account", "account_id=A1001\nforce=1\n", "unknown argument: force");
      await refused("get_account", "not a pair\n", "bad argument line (expected key=value): not a pair");
      await refused("find_account_by_phone", "phone=5550101\n", 'bad phone "5550101": expected three digits, a dash and four digits, like 555-0142');
      await refused("find_account_by_phone", "phone=555-0999\n", "no account with phone 555-0999");
      // A suspended account can change nothing until it pays everything it owes.
      await refused("change_plan", "account_id=A1001\nplan=plus\n", "account A1001 is suspended: the balance must be paid first");
      await refused("refuel_data", "account_id=A1001\ngb=1\n", "account A1001 is suspended: the balance must be paid first");
      await refused("make_payment", "account_id=A1001\namount=50\n", "amount 50.00 is more than the balance 35.10");
      await refused("make_payment", "account_id=A1001\namount=1.234\n", 'bad amount "1.234": expected a number with at most two decimals, like 25.50');
      await refused("make_payment", "account_id=A1001\namount=0\n", 'bad amount "0": must be more than zero');
      await refused("make_payment", "account_id=A1002\namount=5\n", "account A1002 has nothing to pay");
      expect(await json("make_payment", "account_id=A1001\namount=10.05\n")).toEqual({ payment_id: "P0001", account_id: "A1001", amount: 10.05, balance: 25.05, status: "suspended" });
      expect(await json("make_payment", "account_id=A1001\namount=25.05\n")).toEqual({ payment_id: "P0002", account_id: "A1001", amount: 25.05, balance: 0, status: "active" });
      await refused("change_plan", "account_id=A1001\nplan=premium\n", 'unknown plan "premium": choose one of basic, standard, plus, travel, unlimited');
      await refused("change_plan", "account_id=A1001\nplan=basic\n", "account A1001 is already on plan basic");
      await refused("enable_roaming", "account_id=A1001\n", "plan basic does not include roaming; plans with roaming: plus, travel, unlimited");
      expect(await json("change_plan", "account_id=A1001\nplan=travel\n")).toEqual({ account_id: "A1001", old_plan: "basic", new_plan: "travel", roaming_turned_off: false });
      expect(await json("enable_roaming", "account_id=A1001\n")).toEqual({ account_id: "A1001", roaming: "on", was: "off" });
      expect(await json("change_plan", "account_id=A1002\nplan=standard\n")).toMatchObject({ roaming_turned_off: true });
      expect(await json("disable_roaming", "account_id=A1001\n")).toEqual({ account_id: "A1001", roaming: "off", was: "on" });
      await refused("refuel_data", "account_id=A1002\ngb=11\n", 'bad gb "11": expected a whole number from 1 to 10');
      expect(await json("refuel_data", "account_id=A1002\ngb=3\n")).toEqual({ account_id: "A1002", added_mb: 3072, refuel_mb: 4096, charged: 6, balance: 6 });
      expect(await json("transfer_to_human_agents", "summary=cannot help\n")).toEqual({ transferred: true });

      // The reward script: 1 only when every table matches, row order aside.
      const expected: Scenario["db"] = {
        accounts: [
          { account_id: "A1002", name: "Sam O'Brien", phone: "555-0102", plan: "standard", status: "active", roaming: false, balance: 6 },
          { account_id: "A1001", name: "Ana Diaz", phone: "555-0101", plan: "travel", status: "active", roaming: false, balance: 0 },
        ],
        usage: [
          { account_id: "A1001", used_mb: 4000, refuel_mb: 0 },
          { account_id: "A1002", used_mb: 100, refuel_mb: 4096 },
        ],
        payments: [
          { payment_id: "P0001", account_id: "A1001", amount: 10.05 },
          { payment_id: "P0002", account_id: "A1001", amount: 25.05 },
        ],
      };
      for (const [path, text] of Object.entries(dbFiles(expected, "expected", false))) {
        mkdirSync(join(dir, "expected"), { recursive: true });
        writeFileSync(join(dir, path), text);
      }
      const reward = async () => JSON.parse((await tool(sh, dir, ".tools/reward.sh", "", env)).stdout);
      expect(await reward()).toEqual({ reward: 1, tables: { accounts: true, usage: true, payments: true } });
      await json("refuel_data", "account_id=A1002\ngb=1\n");
      expect(await reward()).toEqual({ reward: 0, tables: { accounts: false, usage: false, payments: true } });
    }, 30_000);
  }

  test("tool-use - the shipped scenarios run end to end in bwrap environments against the sim, the same twice", async () => {
    const { s, rows } = await run("shipped", SHIPPED);
    expect(rows.length).toBe(shipped.length);
    expect(rows.filter((r) => r.status !== "ok").map((r) => r.error)).toEqual([]);
    expect(envs.inUse()).toBe(0);
    const reward = s.metrics.reward as number;
    expect(reward).toBeGreaterThan(0.3);
    expect(reward).toBeLessThan(1);
    expect(s.metrics["termination.user_stop"]).toBeGreaterThan(0.5);
    expect(s.metrics["termination.assistant_gave_up"]).toBeGreaterThan(0);
    // Tools ran inside the environments: their results are the scripts' JSON.
    const results = rows.flatMap((r) => r.output.trajectory.filter((m: { role: string }) => m.role === "tool"));
    expect(results.some((m: { name: string; content: string }) => m.name === "get_account" && m.content.startsWith('{"account": {"account_id": "A'))).toBe(true);
    // Bad calls came back to the assistant as error results, and the task went on.
    expect(results.some((m: { content: string }) => m.content.startsWith('{"error":'))).toBe(true);
    expect(s.metrics.tool_errors).toBeGreaterThan(0);
    for (const r of rows) {
      expect(["user_stop", "assistant_gave_up", "tool_error_limit", "step_limit"]).toContain(r.output.termination);
      expect([0, 1]).toContain(r.output.reward);
      expect(r.output.trajectory[0].role).toBe("assistant");
    }
    // Every call the assistant made was answered in the trajectory.
    const good = rows.find((r) => r.output.reward === 1 && r.output.tool_calls > 0);
    expect(good.output.trajectory.filter((m: { role: string }) => m.role === "tool").length).toBe(good.output.tool_calls);
    // Offered tools are the domain's, with the plan names as an enum.
    expect(TOOL_SPECS.find((t) => t.function.name === "change_plan")?.function.parameters).toMatchObject({ properties: { plan: { enum: ["basic", "standard", "plus", "travel", "unlimited"] } } });

    const again = await run("shipped-again", SHIPPED);
    const view = (rs: typeof rows) => rs.map((r) => ({ id: r.id, o: r.output })).sort((a, b) => a.id.localeCompare(b.id));
    expect(view(again.rows)).toEqual(view(rows));
    expect(envs.inUse()).toBe(0);
  }, 60_000);

  test("tool-use - a small step limit and a low tool error limit end conversations, which are still scored", async () => {
    const few = tmp.path("few.jsonl");
    writeLines(few, shipped.slice(0, 16));
    const cut = await run("cut", few, { options: { maxSteps: 5 } });
    expect(cut.rows.length).toBe(16);
    expect(cut.rows.every((r) => r.status === "ok" && r.output.termination === "step_limit")).toBe(true);
    expect(cut.rows.every((r) => r.provenance.steps <= 5)).toBe(true);
    // only scenarios that ask for no change can be right when cut this short
    for (const r of cut.rows) if (r.output.reward === 1) expect(JSON.stringify(r.seed.db)).toBe(JSON.stringify(r.seed.expected));

    const errs = await run("errors", few, { options: { maxToolErrors: 1 }, llm: clumsyLlm });
    expect(errs.rows.every((r) => r.status === "ok")).toBe(true);
    const limited = errs.rows.filter((r) => r.output.termination === "tool_error_limit");
    expect(limited.length).toBeGreaterThan(0);
    expect(limited.every((r) => r.output.tool_errors === 1)).toBe(true);
    const contents = errs.rows.flatMap((r) => r.output.trajectory.filter((m: { role: string }) => m.role === "tool").map((m: { content: string }) => m.content));
    expect(contents.some((c: string) => c.startsWith('{"error":"unknown tool'))).toBe(true);
    expect(contents.some((c: string) => c.startsWith('{"error":"arguments are not valid JSON'))).toBe(true);
    expect(envs.inUse()).toBe(0);
  }, 60_000);

  test("tool-use - in the environment image's busybox root folder, with the tools it carries at /opt/tools", async () => {
    // The sandbox runs as another user: the root folder's parents must be readable by it.
    const rootDir = tempDir("matrixd-rootfs-");
    chmodSync(rootDir.dir, 0o755);
    const rootfs = rootDir.path("rootfs");
    const build = Bun.spawnSync(["bash", join(ROOT, "configs/env/build-image.sh"), "--rootfs", rootfs, "--no-import"], { stderr: "pipe" });
    expect({ code: build.exitCode, stderr: build.exitCode === 0 ? "" : build.stderr.toString() }).toEqual({ code: 0, stderr: "" });
    const boxed = await createEnvService(parseEnvConfig({ driver: "bwrap", capacity: 4, node: `tool-use-rootfs-${process.pid}`, rootfs }), silentLogger);
    try {
      const few = tmp.path("rootfs.jsonl");
      writeLines(few, shipped.slice(0, 12));
      const { s, rows } = await run("rootfs", few, { options: { toolsPath: "/opt/tools" }, services: { env: boxed } });
      expect(rows.filter((r) => r.status !== "ok").map((r) => r.error)).toEqual([]);
      expect(s.metrics.reward).toBeGreaterThan(0);
      expect(rows.some((r) => r.output.trajectory.some((m: { role: string; content: string }) => m.role === "tool" && m.content.startsWith('{"account"')))).toBe(true);
      expect(boxed.inUse()).toBe(0);
      // the same answers as with the host's shell and scripts written into the work folder
      const host = await run("rootfs-host", few);
      const view = (rs: typeof rows) => rs.map((r) => ({ id: r.id, o: r.output })).sort((a, b) => a.id.localeCompare(b.id));
      expect(view(rows)).toEqual(view(host.rows));
    } finally {
      await boxed.close();
      rootDir.remove();
    }
  }, 60_000);

  test("tool-use - with no environment service every task fails with the reason, and bad scenarios are refused", async () => {
    const bad = tmp.path("bad.jsonl");
    const broken = { ...(shipped[1] as Scenario), id: "not-mine", customer: { ...(shipped[1] as Scenario).customer, account_id: "A0000" } };
    writeLines(bad, [shipped[0], broken]);
    const { rows } = await run("noenv", bad, { services: {} });
    const byId = Object.fromEntries(rows.map((r) => [r.id, r]));
    expect(byId[String(shipped[0]?.id)].error).toBe("setup: no environment service on this node (run with --env docker or --env bwrap)");
    expect(byId["not-mine"].error).toContain("A0000 is not in db.accounts");
  }, 30_000);
});
