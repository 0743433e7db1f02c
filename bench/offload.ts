/**
 * Claim-check figures (`bun bench/offload.ts [--quick] [--only dummy,longtext,coral,tool-use] [--settings 0,512,...]`):
 * three `matrixd join` processes on one local nats-server, every hop
 * through NATS (local-first off), at several `nats.offloadBytes`.
 *
 * - bytes on the wire per hop: the nats-server's own in + out bytes
 *   (/varz, its monitoring port) over the job, by hops through NATS;
 * - hop latency (the nodes' histograms: publish, objects written and read,
 *   to the step starting) and CPU seconds of the nodes per hop;
 * - coral-dummy with turns of 1 KiB, 16 KiB and 256 KiB, and coral and
 *   tool-use (sim LLM; tool-use in bubblewrap environments) as they come.
 *
 * Prints a table and writes bench/results/offload.json.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { freePort } from "../src/util/net.ts";
import { tempDir } from "../test/support/files.ts";
import { type JoinProcess, metric, spawnJoin } from "../test/support/join-process.ts";
import { matrixdBin } from "../test/support/matrixd.ts";
import { startNatsServer } from "../test/support/nats-server.ts";
import { latencyQuantile } from "./hop-latency.ts";
import { procStatus, repoRoot } from "./proc.ts";

const { values: f } = parseArgs({
  args: process.argv.slice(2),
  options: { quick: { type: "boolean" }, only: { type: "string" }, settings: { type: "string" }, out: { type: "string" } },
});
const quick = f.quick === true;
const only = new Set((f.only ?? "dummy,longtext,coral,tool-use").split(","));
const TASKS = quick ? 60 : 200;
const SETTINGS = f.settings ? f.settings.split(",").map(Number) : [0, 512, 4096, 16_384, 65_536, 262_144];
const log = (s: string) => process.stderr.write(`${s}\n`);
const tmp = tempDir("matrixd-bench-offload-");
const round = (x: number, d = 1) => Math.round(x * 10 ** d) / 10 ** d;

interface Case {
  name: string;
  workflow: string;
  seeds: unknown[];
  config: Record<string, unknown>;
  args: string[];
  nodeConfig?: Record<string, unknown>;
  /** a workflow definition the job carries (instead of `workflow`) */
  definition?: unknown;
}

function dummySeeds(n: number): unknown[] {
  return Array.from({ length: n }, (_, i) => ({ id: `d${i}`, question: `What is ${i} + 1?`, options: [String(i + 1), String(i + 2), String(i)], answer: "A" }));
}

async function seedsOf(file: string, n: number): Promise<unknown[]> {
  const lines = (await Bun.file(join(repoRoot(), "configs/seeds", file)).text()).split("\n").filter((l) => l.trim());
  return Array.from({ length: Math.min(n, lines.length) }, (_, i) => JSON.parse(lines[i] as string));
}

async function varz(port: number): Promise<{ in: number; out: number }> {
  const v = (await (await fetch(`http://127.0.0.1:${port}/varz`)).json()) as { in_bytes: number; out_bytes: number };
  return { in: v.in_bytes, out: v.out_bytes };
}

async function submitDefinition(node: JoinProcess, c: Case): Promise<{ id: string }> {
  const res = await fetch(`${node.url}/v1/jobs`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ definition: c.definition, seeds: c.seeds, config: c.config }),
  });
  if (res.status !== 201) throw new Error(`submit: ${res.status} ${await res.text()}`);
  return (await res.json()) as { id: string };
}

/** Twelve LLM turns of 256 KiB each, every one its own text (the sim's script names task and turn). */
const FILLER = "abcdefghijklmnop".repeat(16 * 1024);
const LONG = {
  definition: {
    name: "longtext",
    seed: { type: "object", properties: { id: { type: "string" } }, required: ["id"] },
    vars: { i: 0 },
    start: "writer",
    roles: {
      writer: {
        kind: "llm",
        max_tokens: 1000,
        messages: [{ role: "user", content: "id={{ seed.id }} turn={{ vars.i }}" }],
        set: { i: "vars.i + 1" },
        next: [{ if: "vars.i >= 12", then: "end" }, { then: "writer" }],
      },
    },
    output: { turns: "vars.i" },
  },
  sim: { timeScale: 0.001, contextTokens: 100_000_000, script: [{ match: "/id=(\\S+) turn=(\\d+)/", text: `{{1}}/{{2}}:${FILLER}` }] },
};

async function runCase(c: Case, offloadBytes: number, bin: string): Promise<Record<string, unknown>> {
  const monitor = await freePort();
  const srv = await startNatsServer({ args: ["-m", String(monitor)] });
  const tag = `${c.name.replace(/[^a-z0-9]/gi, "")}${offloadBytes}`;
  const nodes: JoinProcess[] = [];
  try {
    for (let i = 1; i <= 3; i++) {
      nodes.push(
        await spawnJoin({
          name: `${tag}n${i}`,
          nats: srv.url,
          dir: tmp.dir,
          config: { log: { level: "warn" }, nats: { offloadBytes }, localFirst: false, defaultSlots: 256, ...c.nodeConfig },
          args: c.args,
          command: [bin],
          timeoutMs: 60_000,
        }),
      );
    }
    const v0 = await varz(monitor);
    const cpu0 = nodes.map((n) => procStatus(n.proc.pid).cpuS);
    const t0 = Date.now();
    const { id } = c.definition === undefined ? await nodes[0]!.submit(c.workflow, c.seeds, c.config) : await submitDefinition(nodes[0]!, c);
    let st = await nodes[1]!.job(id);
    while (st.state === "running") {
      await Bun.sleep(200);
      st = await nodes[1]!.job(id);
    }
    const wallS = (Date.now() - t0) / 1000;
    const v1 = await varz(monitor);
    const cpu1 = nodes.map((n) => procStatus(n.proc.pid).cpuS);
    const texts = await Promise.all(nodes.map((n) => n.metrics()));
    const sum = (name: string, labels = "") => texts.reduce((s, t) => s + metric(t, name, labels), 0);
    const natsHops = sum("matrixd_hops_total", 'route="nats"');
    const hops = natsHops + sum("matrixd_hops_total", 'route="local"');
    const wire = v1.in - v0.in + (v1.out - v0.out);
    const cpu = cpu1.reduce((s, x, i) => s + x - (cpu0[i] ?? 0), 0);
    const out = {
      case: c.name,
      offloadBytes,
      ok: st.ok,
      failed: st.failed,
      firstFailure: st.failures?.[0]?.error?.slice(0, 120),
      wallS: round(wallS, 2),
      hops,
      natsHops,
      wireBytesPerHop: Math.round(wire / Math.max(1, hops)),
      wireBytesPerNatsHop: Math.round(wire / Math.max(1, natsHops)),
      taskMessageBytesPerNatsHop: Math.round(sum("matrixd_hop_bytes_total") / Math.max(1, sum("matrixd_tasks_received_total"))),
      partsPut: sum("matrixd_parts_total", 'op="put"'),
      partsFetched: sum("matrixd_parts_total", 'op="fetched"'),
      partsCached: sum("matrixd_parts_total", 'op="cached"'),
      hopP50Ms: round(latencyQuantile(texts, 0.5), 2),
      hopP99Ms: round(latencyQuantile(texts, 0.99), 2),
      cpuMsPerHop: round((1000 * cpu) / Math.max(1, hops), 3),
      hopsPerSecond: Math.round(hops / wallS),
    };
    log(JSON.stringify(out));
    return out;
  } finally {
    await Promise.all(nodes.map((n) => n.kill9()));
    await srv.close();
  }
}

const cases: Case[] = [];
if (only.has("dummy")) {
  // coral-dummy's turns are slices of a 64 KiB text: 48 KiB is about its largest
  for (const textBytes of [1024, 16_384, 49_152]) {
    cases.push({
      name: `coral-dummy ${textBytes / 1024} KiB turns`,
      workflow: "coral-dummy",
      seeds: dummySeeds(TASKS),
      config: { concurrency: 64, options: { textBytes, maxTurns: 8, agreeAfter: 8 } },
      args: [],
    });
  }
}
if (only.has("longtext")) {
  cases.push({
    name: "longtext 256 KiB turns",
    workflow: "longtext",
    definition: LONG.definition,
    seeds: Array.from({ length: quick ? 10 : 40 }, (_, i) => ({ id: `s${i}` })),
    config: { concurrency: 20 },
    args: ["--llm", "sim"],
    nodeConfig: { sim: LONG.sim },
  });
}
const sim = { timeScale: 0.002 };
if (only.has("coral")) cases.push({ name: "coral", workflow: "coral", seeds: await seedsOf("coral.jsonl", TASKS), config: { concurrency: 64 }, args: ["--llm", "sim"], nodeConfig: { sim } });
if (only.has("tool-use")) {
  cases.push({
    name: "tool-use",
    workflow: "tool-use",
    seeds: await seedsOf("tool-use.jsonl", quick ? 20 : 60),
    config: { concurrency: 24 },
    args: ["--llm", "sim", "--env", "bwrap"],
    nodeConfig: { sim },
  });
}

const bin = await matrixdBin();
const results: Record<string, unknown>[] = [];
for (const c of cases) {
  const settings = c.name.startsWith("coral-dummy") || c.name.startsWith("longtext") || f.settings ? SETTINGS : [0, 512, 65_536];
  for (const s of settings) results.push(await runCase(c, s, bin));
}
const dir = f.out ?? join(repoRoot(), "bench/results");
mkdirSync(dir, { recursive: true });
writeFileSync(join(dir, "offload.json"), `${JSON.stringify({ at: new Date().toISOString(), quick, results }, null, 2)}\n`);
console.log("| case | offloadBytes | ok/failed | wire bytes per hop | task message bytes | parts put/fetched/cached | hop p50/p99 ms | node CPU ms/hop | hops/s |");
console.log("|---|---|---|---|---|---|---|---|---|");
for (const r of results) {
  console.log(
    `| ${r.case} | ${r.offloadBytes === 0 ? "off" : r.offloadBytes} | ${r.ok}/${r.failed} | ${r.wireBytesPerNatsHop} | ${r.taskMessageBytesPerNatsHop} | ${r.partsPut}/${r.partsFetched}/${r.partsCached} | ${r.hopP50Ms}/${r.hopP99Ms} | ${r.cpuMsPerHop} | ${r.hopsPerSecond} |`,
  );
}
tmp.remove();
