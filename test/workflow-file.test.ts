import { afterAll, describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { makeJobRuntime } from "../src/engine/job.ts";
import { runJob } from "../src/engine/run.ts";
import { createLlmClient } from "../src/llm/index.ts";
import { silentLogger } from "../src/log.ts";
import { graphDot, loadWorkflowFile, parseWorkflowText, WorkflowError } from "../src/workflow/index.ts";
import { Expr, toCel } from "../src/workflow/expr.ts";
import { MAX_WORKFLOW_BYTES } from "../src/workflow/schema.ts";
import { readRows, tempDir, writeLines } from "./support/files.ts";
import { MATRIXD, ROOT, runProcess } from "./support/matrixd.ts";
import { completion, startServer } from "./support/scripted-llm.ts";

const tmp = tempDir();
afterAll(() => tmp.remove());

const WRITER_CRITIC = join(ROOT, "configs/workflows/writer-critic.yaml");

/** The problems of a definition's text (none: []). */
function problemsOf(text: string, where = "wf.yaml"): string[] {
  try {
    parseWorkflowText(text, where);
    return [];
  } catch (err) {
    if (err instanceof WorkflowError) return err.problems;
    throw err;
  }
}

/** Run a definition's text on seeds against a scripted server; the rows by id. */
async function runText(text: string, seeds: unknown[], reply: (n: number, body: Record<string, unknown>) => Response, options: Record<string, unknown> = {}, kind: "auto" | "vllm" = "auto") {
  const server = startServer((n, body) => reply(n, body));
  const llm = createLlmClient({ endpoints: [{ url: server.url, kind }], retries: 0 });
  try {
    const loaded = parseWorkflowText(text, "wf.yaml");
    const job = makeJobRuntime({ workflow: loaded.workflow, options, seed: 1, stepRetries: 0, workflowHash: loaded.hash });
    const dir = tmp.path(`run-${Math.random().toString(36).slice(2)}`);
    writeLines(`${dir}.seeds.jsonl`, seeds);
    const summary = await runJob({ job, seedsPath: `${dir}.seeds.jsonl`, outPath: `${dir}.out.jsonl`, concurrency: 8, trials: 1, llm, log: silentLogger, node: "n1" });
    const rows = readRows(`${dir}.out.jsonl`);
    return { summary, rows: new Map(rows.map((r) => [r.id, r])), bodies: server.bodies, hash: loaded.hash };
  } finally {
    await llm.close();
    await server.stop();
  }
}

const CRITIC_LOOP = `
name: loop
options: { maxRounds: 2 }
vars: { rounds: 0 }
start: writer
roles:
  writer:
    kind: llm
    max_tokens: 64
    messages:
      - { role: system, content: "Write." }
      - { role: user, content: "{{ seed.question }}{% if vars.critique %} Critique: {{ vars.critique }}{% endif %}" }
    reply: { text: draft }
    next: critic
  critic:
    kind: llm
    messages: [ { role: user, content: "Is this answer right? {{ vars.draft }}" } ]
    reply:
      json: { type: object, properties: { ok: { type: boolean }, critique: { type: string } }, required: [ok] }
      into: verdict
      retries: 1
    next:
      - { if: "vars.verdict.ok", then: end }
      - { if: "vars.rounds >= options.maxRounds", then: end }
      - { then: revise }
  revise:
    kind: code
    set: { rounds: "vars.rounds + 1", critique: "vars.verdict.critique" }
    next: writer
output: { answer: "vars.draft", rounds: "vars.rounds" }
metrics: { approved: "vars.verdict.ok", rounds: "vars.rounds" }
maxSteps: 30
`;

describe("workflow files", () => {
  test("workflow file - the README's writer-critic file checks clean and prints its graph", async () => {
    const loaded = loadWorkflowFile(WRITER_CRITIC);
    expect(loaded.workflow.name).toBe(`writer-critic@${loaded.hash.slice(0, 12)}`);
    expect(Object.keys(loaded.workflow.roles).sort()).toEqual(["critic", "revise", "writer"]);
    const r = await runProcess([...MATRIXD, "check", WRITER_CRITIC]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("critic (llm) -> end if vars.verdict.ok | end if vars.rounds >= options.maxRounds | revise");
    const dot = await runProcess([...MATRIXD, "check", "--dot", WRITER_CRITIC]);
    expect(dot.code).toBe(0);
    expect(dot.stdout).toStartWith('digraph "writer-critic"');
    expect(dot.stdout).toContain('"critic" -> "revise"');
    expect(graphDot(loaded.file)).toBe(dot.stdout.trimEnd());
  });

  test("workflow file - matrixd check lists every problem with file, line and path, exit 2", async () => {
    const file = join(tmp.dir, "broken.yaml");
    writeFileSync(
      file,
      [
        "name: broken", // 1
        "options: { maxRounds: 3 }", // 2
        "start: writer", // 3
        "roles:", // 4
        "  writer:", // 5
        "    kind: llm", // 6
        '    messages: [ { role: user, content: "{{ seed.q }} {{ vars.critique }}" } ]', // 7
        "    next: critic", // 8
        "  critic:", // 9
        "    kind: code", // 10
        '    set: { ok: "vars.x +" }', // 11
        "    next:", // 12
        '      - { if: "vars.rounds >= options.maxRoundz", then: end }', // 13
        "      - { then: writter }", // 14
        "  orphan:", // 15
        "    kind: code", // 16
        '    set: { a: "1" }', // 17
        "    next: end", // 18
      ].join("\n"),
    );
    const r = await runProcess([...MATRIXD, "check", file]);
    expect(r.code).toBe(2);
    const err = r.stderr;
    expect(err).toContain('broken.yaml:11 roles.critic.set.ok: does not compile');
    expect(err).toContain('broken.yaml:14 roles.critic.next[1].then: no role "writter" (roles: writer, critic, orphan; or end)');
    expect(err).toContain('broken.yaml:15 roles.orphan: role "orphan" cannot be reached from start (writer)');
    expect(err).toContain("broken.yaml:13 roles.critic.next[0].if: reads options.maxRoundz, which the file's options do not have (maxRounds)");
    expect(err).toContain("broken.yaml:13 roles.critic.next[0].if: reads vars.rounds before any role or `vars` sets it");
    expect(err).toContain("broken.yaml:7 roles.writer.messages[0].content: reads vars.critique before any role or `vars` sets it");
  });

  test("workflow file - schema errors, a misspelt key, a template that does not compile, a loop with no way out", () => {
    expect(problemsOf("name: x\nstart: a\nroles:\n  a:\n    kind: code\n    sett: { b: '1' }\n    set: {}\n    next: end\n")).toEqual(["wf.yaml:6 roles.a.sett: unknown key"]);
    expect(problemsOf("name: x\nstart: a\nroles:\n  a:\n    kind: lm\n    next: end\n")[0]).toMatch(/^wf\.yaml:5 roles\.a\.kind: /);
    // A schema error does not hide the other roles' problems.
    expect(problemsOf('name: x\nstart: a\nroles:\n  a: { kind: code, set: { n: "1 +" }, next: b }\n  b: { kind: code, sett: {}, next: end }\n')).toEqual([
      "wf.yaml:5 roles.b.set: is missing (expected record)",
      "wf.yaml:5 roles.b.sett: unknown key",
      "wf.yaml:4 roles.a.set.n: does not compile: Unexpected token: EOF",
    ]);
    expect(problemsOf('name: x\nstart: a\nroles:\n  a:\n    kind: llm\n    messages: [ { role: user, content: "{% if seed.q %}" } ]\n    next: end\n')).toEqual([
      "wf.yaml:6 roles.a.messages[0].content: does not compile: unexpected end of template (a block is not closed)",
    ]);
    const loop = problemsOf("name: x\nstart: a\nroles:\n  a: { kind: code, set: { n: '1' }, next: b }\n  b: { kind: code, set: { m: '2' }, next: a }\n");
    expect(loop).toContain("wf.yaml:4 roles.a.next: no way leads from role \"a\" to the end: a, b form a loop with no way out (and no maxSteps)");
    expect(problemsOf("name: x\nstart: a\nroles:\n  a: { kind: code, set: { n: '1' }, next: end }\nbogus: 1\n")).toEqual(["wf.yaml:5 bogus: unknown key"]);
    expect(problemsOf("name: x\nstart: a\nroles:\n  a: { kind: code, set: { n: '1' }, next: end }\nseed: { type: object, properties: { q: { type: strin } } }\n")[0]).toContain(
      'seed.properties.q.type: unknown type "strin"',
    );
    expect(problemsOf("name: x\nstart: a\nroles: {a: {kind: code, set: {n: '1'}, next: end}}\nname: y\n")[0]).toContain("wf.yaml:4");
  });

  test("workflow file - a file over the size limit is refused before it is parsed", () => {
    const big = join(tmp.dir, "big.yaml");
    writeFileSync(big, `name: big\n# ${"x".repeat(MAX_WORKFLOW_BYTES)}\n`);
    expect(() => loadWorkflowFile(big)).toThrow(`over the limit of ${MAX_WORKFLOW_BYTES}`);
  });

  test("workflow file - the critic's verdict routes the task: approve, revise, give up at maxRounds", async () => {
    const seeds = [
      { id: "ok-first", question: "q1" },
      { id: "ok-second", question: "q2" },
      { id: "never", question: "q3" },
    ];
    const { rows, summary, bodies } = await runText(CRITIC_LOOP, seeds, (_n, body) => {
      const msgs = body.messages as { role: string; content: string }[];
      const user = msgs.find((m) => m.role === "user")?.content ?? "";
      if (!user.startsWith("Is this answer right?")) return completion(`draft for ${user}`);
      if (user.includes("q1")) return completion('{"ok": true}');
      if (user.includes("q2") && user.includes("Critique: shorter")) return completion('{"ok": true}');
      return completion('{"ok": false, "critique": "shorter"}');
    });
    expect(summary.ok).toBe(3);
    expect(rows.get("ok-first").output).toEqual({ answer: "draft for q1", rounds: 0 });
    expect(rows.get("ok-second").output).toEqual({ answer: "draft for q2 Critique: shorter", rounds: 1 });
    expect(rows.get("never").output.rounds).toBe(2);
    expect(rows.get("never").metrics).toEqual({ approved: false, rounds: 2 });
    expect(rows.get("never").history.map((t: { role: string }) => t.role)).toEqual(["writer", "critic", "writer", "critic", "writer", "critic"]);
    // The critic's schema went to the server as structured output.
    const critic = bodies.find((b) => JSON.stringify(b.messages).includes("Is this answer right?"));
    expect(critic?.response_format).toEqual({
      type: "json_schema",
      json_schema: { name: "verdict", schema: { type: "object", properties: { ok: { type: "boolean" }, critique: { type: "string" } }, required: ["ok"] } },
    });
    expect(rows.get("ok-first").provenance.workflow_hash).toMatch(/^[0-9a-f]{64}$/);
  });

  test("workflow file - a reply that fails its JSON schema after its retries fails the task with the last problem", async () => {
    const { rows, summary } = await runText(CRITIC_LOOP, [{ id: "a", question: "q" }], (_n, body) => {
      const user = JSON.stringify(body.messages);
      return user.includes("Is this answer right?") ? completion('{"ok": "maybe"}') : completion("draft");
    });
    expect(summary.failed).toBe(1);
    const row = rows.get("a");
    expect(row.error).toContain("failed its schema after 2 tries");
    expect(row.error).toContain('"ok": Invalid input: expected boolean');
    // Both tries' tokens are in the row.
    expect(row.history.at(-1).usage).toEqual({ prompt: 10, completion: 6 });
  });

  test("workflow file - a CEL type error at run time fails that task naming role, expression and value; the others run", async () => {
    const text = `
name: typed
start: count
roles:
  count:
    kind: code
    set: { n: "seed.n + 1" }
    next: end
output: { n: "vars.n" }
`;
    const { rows, summary } = await runText(text, [{ id: "good", n: 1 }, { id: "bad", n: "one" }, { id: "also-good", n: 2.5 }], () => completion("-"));
    expect(summary.ok).toBe(2);
    expect(rows.get("good").output).toEqual({ n: 2 });
    expect(rows.get("also-good").output).toEqual({ n: 3.5 });
    expect(rows.get("bad").status).toBe("failed");
    expect(rows.get("bad").error).toContain('count: "seed.n + 1": no such overload: dyn<string> + int');
    const e = Expr.compile("vars.rounds + 'x'");
    expect(() => e.eval(toCel({ vars: { rounds: 2 } }) as Record<string, unknown>)).toThrow("(vars.rounds = 2)");
  });

  test("workflow file - a filter stops a task as ok with `stopped`; choice and regex replies; next: fail", async () => {
    const text = `
name: funnel
seed: { type: object, properties: { text: { type: string } }, required: [text] }
options: { minWords: 3 }
start: length
roles:
  length:
    kind: filter
    keep: "seed.text.words() >= options.minWords"
    reason: "too short ({{ seed.text.split(' ') | length }} words)"
    next: judge
  judge:
    kind: llm
    messages: [ { role: user, content: "Good? {{ seed.text }}" } ]
    reply: { choice: [Yes, No], into: verdict }
    next:
      - { if: "vars.verdict == 'No'", fail: "judged bad: {{ seed.text }}" }
      - { then: grade }
  grade:
    kind: llm
    messages: [ { role: user, content: "Grade: {{ seed.text }}" } ]
    reply: { regex: "^grade ([A-F])$", into: grade }
    next: end
output: { grade: "has(vars.grade) ? vars.grade : null", why: "has(vars.stopped) ? vars.stopped.reason : ''" }
`;
    const { rows, bodies } = await runText(
      text,
      [{ id: "short", text: "two words" }, { id: "bad", text: "this one is bad" }, { id: "good", text: "this one is good" }],
      (_n, body) => {
        const user = JSON.stringify(body.messages);
        if (user.includes("Good?")) return completion(user.includes("bad") ? "No" : "yes.");
        return completion("grade B");
      },
      {},
      "vllm",
    );
    expect(rows.get("short").status).toBe("ok");
    expect(rows.get("short").output).toEqual({ grade: null, why: "too short (2 words)", stopped: "length" });
    expect(rows.get("bad").status).toBe("failed");
    expect(rows.get("bad").error).toBe('next role after "judge": judged bad: this one is bad');
    expect(rows.get("good").output).toEqual({ grade: "B", why: "" });
    const judge = bodies.find((b) => JSON.stringify(b.messages).includes("Good?"));
    // vLLM takes the choice and the regex as guided regexes.
    expect(judge?.guided_regex ?? judge?.structured_outputs).toBeDefined();
    expect(JSON.stringify(judge)).toContain("(Yes|No)");
    const grade = bodies.find((b) => JSON.stringify(b.messages).includes("Grade:"));
    expect(JSON.stringify(grade)).toContain("^grade ([A-F])$");
  });

  test("workflow file - matrixd run --workflow FILE with the simulated LLM, resumed with the same --out", async () => {
    const seeds = join(tmp.dir, "wc-seeds.jsonl");
    writeLines(seeds, [{ id: "a", question: "What is 2+2?" }, { id: "b", question: "Why is the sky blue?" }, { id: "c", question: "" }]);
    const out = join(tmp.dir, "wc-out.jsonl");
    const r = await runProcess([...MATRIXD, "run", "--workflow", WRITER_CRITIC, "--seeds", seeds, "--out", out, "--llm", "sim"]);
    expect(r.code).toBe(0);
    const rows = readRows(out);
    expect(rows.length).toBe(3);
    expect(rows.find((x) => x.id === "c").error).toContain('seed line 3: "question": Too small');
    expect(new Set(rows.map((x) => x.provenance.workflow_hash)).size).toBe(1);
    const again = await runProcess([...MATRIXD, "run", "--workflow", WRITER_CRITIC, "--seeds", seeds, "--out", out, "--llm", "sim"]);
    expect(again.code).toBe(0);
    expect(again.stdout).toContain("0 this run, 3 resumed");
    expect(readRows(out).length).toBe(3);
    const bad = await runProcess([...MATRIXD, "run", "--workflow", join(tmp.dir, "missing.yaml"), "--seeds", seeds, "--out", out, "--llm", "sim"]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain("does not exist");
  });
});

describe("workflow files with tools", () => {
  test("workflow file - a tool role runs the assistant's tool calls in the task's environment (bwrap)", async () => {
    const { createEnvService, parseEnvConfig } = await import("../src/env/index.ts");
    const { chmodSync } = await import("node:fs");
    chmodSync(tmp.dir, 0o755);
    const envs = await createEnvService(parseEnvConfig({ driver: "bwrap", node: `wf-${process.pid}`, stateDir: tmp.path("env-state"), capacity: 4 }), silentLogger);
    const text = `
name: tools
start: assistant
env:
  files: { "city.txt": "{{ seed.city }}" }
tools:
  echo_args:
    description: Echo the arguments.
    parameters: { type: object, properties: { word: { type: string } }, required: [word] }
    command: [cat]
  read_city:
    description: Read the city file.
    command: [sh, -c, "printf 'city=%s' \\"$(cat city.txt)\\""]
roles:
  assistant:
    kind: llm
    tools: [echo_args, read_city]
    messages:
      - { role: user, content: "Help with {{ seed.city }}" }
      - { history: { roles: [assistant, tools] } }
    reply: { text: answer }
    set: { calls: "size(reply.tool_calls)" }
    next:
      - { if: "vars.calls > 0", then: tools }
      - { then: end }
  tools:
    kind: tool
    next: assistant
output: { answer: "vars.answer", results: "history.filter(t, t.role == 'tools').map(t, t.text)" }
maxSteps: 10
`;
    const server = startServer((_n, body) => {
      const msgs = body.messages as { role: string; content: string }[];
      if (msgs.some((m) => m.role === "tool")) return completion(`done: ${msgs.filter((m) => m.role === "tool").map((m) => m.content).join(" / ")}`);
      return completion("", {
        toolCalls: [
          { id: "c1", type: "function", function: { name: "echo_args", arguments: '{"word":"hi"}' } },
          { id: "c2", type: "function", function: { name: "read_city", arguments: "{}" } },
          { id: "c3", type: "function", function: { name: "echo_args", arguments: '{"wrong":1}' } },
        ],
      });
    });
    const llm = createLlmClient({ endpoints: [{ url: server.url }], retries: 0 });
    try {
      const loaded = parseWorkflowText(text, "tools.yaml");
      const job = makeJobRuntime({ workflow: loaded.workflow, options: {}, seed: 1, stepRetries: 0 });
      writeLines(tmp.path("tools-seeds.jsonl"), [{ id: "p", city: "Paris" }, { id: "l", city: "Lyon" }]);
      const out = tmp.path("tools-out.jsonl");
      const summary = await runJob({ job, seedsPath: tmp.path("tools-seeds.jsonl"), outPath: out, concurrency: 4, trials: 1, llm, services: { env: envs }, log: silentLogger, node: "n1" });
      expect(summary.ok).toBe(2);
      const rows = new Map(readRows(out).map((r) => [r.id, r]));
      expect(rows.get("p").output.results).toEqual(['{"word":"hi"}', "city=Paris", 'error: bad arguments: "word": Invalid input: expected string, received undefined']);
      expect(rows.get("l").output.answer).toContain("city=Lyon");
      expect(rows.get("p").history.map((t: { role: string }) => t.role)).toEqual(["assistant", "tools", "tools", "tools", "assistant"]);
      // Every environment was given back when its task ended.
      expect(envs.inUse()).toBe(0);
      // The tool results went back to the model as tool messages, after the call.
      const second = server.bodies.find((b) => JSON.stringify(b.messages).includes('"role":"tool"')) as { messages: { role: string; tool_call_id?: string }[] };
      expect(second.messages.map((m) => m.role)).toEqual(["user", "assistant", "tool", "tool", "tool"]);
      expect(second.messages[2]?.tool_call_id).toBe("c1");
    } finally {
      await llm.close();
      await server.stop();
      await envs.close();
    }
  });
});

describe("workflow files against a scripted simulated LLM", () => {
  test("workflow file - sim.script takes the writer-critic file down each branch: rejected, revised, approved", async () => {
    const config = join(tmp.dir, "wc-script.yaml");
    writeFileSync(
      config,
      [
        "sim:",
        "  script:",
        '    - { match: "Critique: be shorter", text: "Revised: four." }',
        '    - { match: "Is this answer right? Revised", json: { ok: true } }',
        '    - { match: "Is this answer right?", json: { ok: false, critique: "be shorter" } }',
        "options: { maxRounds: 3 }",
      ].join("\n"),
    );
    const seeds = join(tmp.dir, "wc-script-seeds.jsonl");
    writeLines(seeds, [{ id: "q", question: "What is 2+2?" }]);
    const out = join(tmp.dir, "wc-script-out.jsonl");
    const r = await runProcess([...MATRIXD, "run", "--workflow", WRITER_CRITIC, "--seeds", seeds, "--out", out, "--llm", "sim", "--config", config]);
    expect(r.code).toBe(0);
    const [row] = readRows(out);
    expect(row.output).toEqual({ answer: "Revised: four.", rounds: 1, approved: true });
    expect(row.history.map((t: { role: string }) => t.role)).toEqual(["writer", "critic", "writer", "critic"]);
  });
});
