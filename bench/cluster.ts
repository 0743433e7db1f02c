/**
 * Cluster figures (`bun bench/cluster.ts [--quick] [--nodes N]
 * [--nats-cluster]`): N `matrixd join` processes (3 by default) on one
 * local nats-server, and with `--nats-cluster` also on a local 3-server NATS
 * cluster whose streams and buckets have 3 replicas (`nats.replicas: 3`),
 * measured the same way in the same run.
 *
 * 1. coral-dummy hops/s per node (hops run where the task is, local first);
 * 2. the latency a hop through NATS adds, with every hop sent through NATS
 *    (local-first off), from the nodes' own histograms, and the hops/s then;
 * 3. coral utilization of a simulated fleet (its own process, one server a
 *    node) that the nodes share: tokens the servers say they generated /
 *    (fleet ceiling x wall time from the submit request to the last row);
 *    and what the framework costs in CPU per LLM call and per hop: the
 *    nodes' and the nats-server's own CPU time (/proc) over the job, over
 *    the requests the fleet's servers counted and the hops the nodes
 *    counted (the fleet's own CPU left out: it stands for the GPUs).
 *
 * The job sizes and concurrencies that are so many per node (tasks, tasks in
 * flight, fleet servers) scale with N from their values for three nodes, so
 * each node gets the same load whatever N; with N = 3 they are as before.
 *
 * Prints the figures and writes bench/results/cluster.json (the cluster's
 * figures under `natsCluster`).
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import type { JobStatus } from "../src/cluster/types.ts";
import { type JoinProcess, metric, spawnJoin } from "../test/support/join-process.ts";
import { tempDir } from "../test/support/files.ts";
import { startNatsCluster, startNatsServer } from "../test/support/nats-server.ts";
import { describeSide, measureSideBySide } from "./cluster-side.ts";
import { gauge, startFleet } from "./fleet.ts";
import { latencyQuantile } from "./hop-latency.ts";
import { machineInfo } from "./machine.ts";
import { matrixdCommand, procStatus, repoRoot } from "./proc.ts";
import { freePort } from "../src/util/net.ts";
import { describeMillion, measureMillion } from "./million.ts";

const { values: f } = parseArgs({
  args: process.argv.slice(2),
  options: {
    quick: { type: "boolean" },
    only: { type: "string" },
    nodes: { type: "string" },
    "nats-cluster": { type: "boolean" },
    rounds: { type: "string" },
    "side-slots": { type: "string" },
    seeds: { type: "string" },
    out: { type: "string" },
    help: { type: "boolean", short: "h" },
  },
});
if (f.help) {
  console.log(`usage: bun bench/cluster.ts [--quick] [--nodes N] [--only dummy,nats,coral,side] [--nats-cluster] [--out DIR]
  --nodes N        matrixd join processes of every section (1 to 64, default 3); tasks, tasks in flight
                   and fleet servers that are so many per node scale with N from their values for 3
  --only           sections: dummy (hops/s), nats (every hop through NATS), coral (a shared fleet;
                   also CPU per LLM call and per hop, nodes + nats-server, and calls per core-second),
                   side (the same coral-dummy job through \`matrixd run\` and the N nodes, in turns),
                   million (one streamed job of --seeds coral-dummy seeds, its rows handed to a follower;
                   only when named: writes DIR/million.json and million.md)
  --rounds N       jobs of each mode in the side-by-side section (default 3; quick 1)
  --side-slots N   slots of each role on each node there (default: the job's concurrency, as matrixd run)
  --seeds S        seeds of the million section (default 1000000; quick 20000)
  --nats-cluster   measure also on a 3-server NATS cluster with 3 replicas (after one nats-server)
  writes DIR/cluster.json (default bench/results)`);
  process.exit(0);
}
const quick = f.quick === true;

/** The --nodes value: a whole number from 1 to 64, else the benchmark stops here saying so. */
function nodesOption(text: string | undefined): number {
  if (text === undefined) return 3;
  const n = Number(text);
  if (!/^\s*\d+\s*$/.test(text) || n < 1 || n > 64) {
    process.stderr.write(`bench/cluster.ts: --nodes takes a whole number from 1 to 64, not ${JSON.stringify(text)}\n`);
    process.exit(2);
  }
  return n;
}
const nodeCount = nodesOption(f.nodes);
/** A figure of the plan that is so many per node, given for three nodes: scaled to N (itself for N = 3). */
const perNodes = (forThree: number) => Math.max(1, Math.round((forThree * nodeCount) / 3));
const only = new Set((f.only ?? "dummy,nats,coral,side").split(","));
const withCluster = f["nats-cluster"] === true;
const plan = quick
  ? {
      dummy: perNodes(3000),
      dummyConcurrency: perNodes(3072),
      latency: { tasks: 200, concurrency: 12 },
      remote: perNodes(600),
      remoteConcurrency: perNodes(1536),
      coral: perNodes(200),
      coralConcurrency: perNodes(256),
      fleet: { servers: perNodes(3), slots: 16, decodeTps: 20_000, flags: { "agree-rate": 0.3 } },
      side: { tasks: 3000, concurrency: 1024, rounds: 1 },
      millionConcurrency: perNodes(3072),
    }
  : {
      dummy: perNodes(60_000),
      dummyConcurrency: perNodes(3072),
      latency: { tasks: 1000, concurrency: 12 },
      remote: perNodes(6000),
      remoteConcurrency: perNodes(1536),
      coral: perNodes(6000),
      coralConcurrency: perNodes(512),
      fleet: { servers: perNodes(3), slots: 64, decodeTps: 12_000, flags: { "agree-rate": 0.3 } },
      side: { tasks: 20_000, concurrency: 4096, rounds: 3 },
      millionConcurrency: perNodes(3072),
    };

const root = repoRoot();
const matrixd = matrixdCommand(root);
const tmp = tempDir("matrixd-bench-cluster-");
const log = (s: string) => process.stderr.write(`${s}\n`);

function coralDummySeeds(n: number): Record<string, unknown>[] {
  return Array.from({ length: n }, (_, i) => ({ id: `d${i}`, question: `What is ${i} + 1?`, options: [String(i + 1), String(i + 2), String(i)], answer: "A" }));
}

/** `n` seeds of the shipped coral set (cycled, with new ids, past its end). */
function coralSeeds(n: number): unknown[] {
  const text = readFileSync(join(root, "configs/seeds/coral.jsonl"), "utf8");
  const all = text.split("\n").filter((l) => l.trim().length > 0);
  const out: unknown[] = [];
  for (let i = 0; out.length < n; i++) {
    const seed = JSON.parse(all[i % all.length] as string) as Record<string, unknown>;
    if (i >= all.length) seed.id = `${seed.id}-r${Math.floor(i / all.length)}`;
    out.push(seed);
  }
  return out;
}

interface JobRun {
  wallS: number;
  rows: number;
  lastFinished: number;
}

/** Submit, wait for the end, and time it from the submit request to the last row's end (status and rows asked of other nodes than the submit's, when there are). */
async function runJob(
  nodes: JoinProcess[],
  workflow: string,
  seeds: unknown[],
  config: Record<string, unknown>,
  onStatus?: (st: JobStatus) => Promise<void>,
): Promise<JobRun> {
  const t0 = Date.now();
  const { id } = await nodes[0]!.submit(workflow, seeds, config);
  for (;;) {
    const st = await nodes[1 % nodes.length]!.job(id);
    await onStatus?.(st);
    if (st.state !== "running") break;
    await Bun.sleep(200);
  }
  const rows = await nodes[2 % nodes.length]!.results(id);
  const lastFinished = Math.max(...rows.map((r) => r.timings.finished as number));
  return { wallS: (lastFinished - t0) / 1000, rows: rows.length, lastFinished };
}

/** Where the nodes find NATS: one server, or every server of a cluster, with the replicas of matrixd's streams. */
interface NatsSetup {
  /** prefix of the node names */
  tag: string;
  urls: string[];
  replicas: number;
  /** the nats-server processes now (for their CPU time) */
  pids(): number[];
}

async function startNodes(nats: NatsSetup, tag: string, config: Record<string, unknown>, args: string[] = []): Promise<JoinProcess[]> {
  // Each node lists every server, starting with a different one.
  const urls = (i: number) => [...nats.urls.slice(i % nats.urls.length), ...nats.urls.slice(0, i % nats.urls.length)].join(",");
  return Promise.all(
    Array.from({ length: nodeCount }, (_, k) => k + 1).map((i) =>
      spawnJoin({
        name: `${nats.tag}${tag}${i}`,
        nats: urls(i - 1),
        dir: tmp.dir,
        config: { log: { level: "warn" }, nats: { replicas: nats.replicas }, ...config },
        args,
        command: matrixd,
      }),
    ),
  );
}

async function stopNodes(nodes: JoinProcess[]): Promise<void> {
  await Promise.all(nodes.map((n) => n.term(30_000)));
}

/** Requests running and waiting over the fleet, from its servers' /metrics. */
async function fleetLoad(urls: string[]): Promise<{ running: number; waiting: number }> {
  const texts = await Promise.all(urls.map(async (u) => (await fetch(`${u.replace(/\/v1$/, "")}/metrics`)).text()));
  return {
    running: texts.reduce((s, t) => s + gauge(t, "vllm:num_requests_running"), 0),
    waiting: texts.reduce((s, t) => s + gauge(t, "vllm:num_requests_waiting"), 0),
  };
}

const cpuOf = (nodes: JoinProcess[]) => nodes.map((n) => procStatus(n.proc.pid));
const round = (x: number, d = 1) => Math.round(x * 10 ** d) / 10 ** d;
/** CPU seconds of the nats-server processes so far, summed. */
const natsCpuOf = (nats: NatsSetup) => nats.pids().reduce((s, pid) => s + procStatus(pid).cpuS, 0);
/** Hops the nodes ran (on their node and through NATS), summed over their /metrics texts. */
const hopsOf = (texts: string[]) => texts.reduce((s, t) => s + metric(t, "matrixd_hops_total", 'route="local"') + metric(t, "matrixd_hops_total", 'route="nats"'), 0);
/** Microseconds of CPU per unit of work, or null when there was none. */
const microsPer = (cpuS: number, count: number) => (count > 0 ? round((cpuS * 1e6) / count, 1) : null);

/** The processes whose command line holds `arg` as one of its arguments (the servers of a NATS cluster, by their config file). */
function pidsWithArg(arg: string): number[] {
  const pids: number[] = [];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      if (readFileSync(`/proc/${name}/cmdline`, "utf8").split("\0").includes(arg)) pids.push(Number(name));
    } catch {
      // gone meanwhile
    }
  }
  return pids;
}

/** The sections on one NATS setup: their figures by name. */
async function measureOn(nats: NatsSetup): Promise<Record<string, unknown>> {
  const figures: Record<string, unknown> = {};
  // 1. coral-dummy, local first
  if (only.has("dummy")) {
    log(`coral-dummy: ${plan.dummy} tasks on ${nodeCount} nodes over NATS (local first)...`);
    const nodes = await startNodes(nats, "d", { defaultSlots: 1024 });
    const cpu0 = cpuOf(nodes);
    const natsCpu0 = natsCpuOf(nats);
    const dummy = await runJob(nodes, "coral-dummy", coralDummySeeds(plan.dummy), { concurrency: plan.dummyConcurrency });
    const texts = await Promise.all(nodes.map((n) => n.metrics()));
    const cpu1 = cpuOf(nodes);
    const natsCpuS = natsCpuOf(nats) - natsCpu0;
    const nodesCpuS = cpu1.reduce((s, c, i) => s + c.cpuS - (cpu0[i]?.cpuS ?? 0), 0);
    const perNode = texts.map((t) => metric(t, "matrixd_hops_total", 'route="local"') + metric(t, "matrixd_hops_total", 'route="nats"'));
    const hops = perNode.reduce((a, b) => a + b, 0);
    figures.coralDummy = {
      nodes: nodes.length,
      tasks: dummy.rows,
      wallS: round(dummy.wallS, 2),
      hops,
      hopsThroughNats: texts.reduce((s, t) => s + metric(t, "matrixd_hops_total", 'route="nats"'), 0),
      hopsPerSecondPerNode: perNode.map((h) => Math.round(h / dummy.wallS)),
      meanHopsPerSecondPerNode: Math.round(hops / dummy.wallS / nodes.length),
      clusterHopsPerSecond: Math.round(hops / dummy.wallS),
      cpuSecondsPerNode: cpu1.map((c, i) => round(c.cpuS - (cpu0[i]?.cpuS ?? 0))),
      natsCpuS: round(natsCpuS),
      /** the nodes' and the nats-server's CPU over the job, per hop */
      cpuMicrosPerHop: microsPer(nodesCpuS + natsCpuS, hops),
      peakRssMiBPerNode: cpu1.map((c) => round(c.hwmBytes / 2 ** 20)),
    };
    log(`  ${JSON.stringify(figures.coralDummy)}`);
    await stopNodes(nodes);
  }

  // 2. every hop through NATS: the latency a hop adds (light load), then hops/s under load
  if (only.has("nats")) {
    const nodes = await startNodes(nats, "r", { defaultSlots: 1024, localFirst: false });
    log(`coral-dummy: ${plan.latency.tasks} tasks, ${plan.latency.concurrency} in flight, every hop through NATS...`);
    await runJob(nodes, "coral-dummy", coralDummySeeds(plan.latency.tasks), { concurrency: plan.latency.concurrency });
    const light = await Promise.all(nodes.map((n) => n.metrics()));
    const lightHops = light.reduce((s, t) => s + metric(t, "matrixd_hop_latency_seconds_count"), 0);
    log(`coral-dummy: ${plan.remote} tasks, ${plan.remoteConcurrency} in flight, every hop through NATS...`);
    const cpu0 = cpuOf(nodes);
    const natsCpu0 = natsCpuOf(nats);
    const before = light.reduce((s, t) => s + metric(t, "matrixd_hops_total", 'route="nats"'), 0);
    const remote = await runJob(nodes, "coral-dummy", coralDummySeeds(plan.remote), { concurrency: plan.remoteConcurrency });
    const texts = await Promise.all(nodes.map((n) => n.metrics()));
    const cpu1 = cpuOf(nodes);
    const natsCpuS = natsCpuOf(nats) - natsCpu0;
    const nodesCpuS = cpu1.reduce((s, c, i) => s + c.cpuS - (cpu0[i]?.cpuS ?? 0), 0);
    const rHops = texts.reduce((s, t) => s + metric(t, "matrixd_hops_total", 'route="nats"'), 0) - before;
    figures.hopThroughNats = {
      nodes: nodes.length,
      light: {
        tasks: plan.latency.tasks,
        inFlight: plan.latency.concurrency,
        hops: lightHops,
        latencyP50Ms: round(latencyQuantile(light, 0.5), 2),
        latencyP99Ms: round(latencyQuantile(light, 0.99), 2),
        latencyMeanMs: round((light.reduce((s, t) => s + metric(t, "matrixd_hop_latency_seconds_sum"), 0) * 1000) / Math.max(1, lightHops), 2),
      },
      loaded: {
        tasks: remote.rows,
        inFlight: plan.remoteConcurrency,
        wallS: round(remote.wallS, 2),
        hops: rHops,
        hopsPerSecondPerNode: Math.round(rHops / remote.wallS / nodes.length),
        cpuSecondsPerNode: cpu1.map((c, i) => round(c.cpuS - (cpu0[i]?.cpuS ?? 0))),
        natsCpuS: round(natsCpuS),
        /** the nodes' and the nats-server's CPU over the job, per hop */
        cpuMicrosPerHop: microsPer(nodesCpuS + natsCpuS, rHops),
      },
    };
    log(`  ${JSON.stringify(figures.hopThroughNats)}`);
    await stopNodes(nodes);
  }

  // 3. coral on a shared sim fleet
  if (only.has("coral")) {
    log(`coral: ${plan.coral} tasks on ${nodeCount} nodes sharing a fleet of ${plan.fleet.servers} sim servers...`);
    const fleet = await startFleet(matrixd, plan.fleet);
    try {
      const nodes = await startNodes(nats, "c", {}, fleet.urls.flatMap((u) => ["--llm", u]));
      const hops0 = hopsOf(await Promise.all(nodes.map((n) => n.metrics())));
      const before = await fleet.counters();
      const cpu0 = cpuOf(nodes);
      const natsCpu0 = natsCpuOf(nats);
      const t0 = Date.now();
      // While seeds are still waiting for admission the job is in its steady state: sample the fleet until then.
      let steady: { t: number; tokens: number } | undefined;
      const samples: { running: number; waiting: number }[] = [];
      const coral = await runJob(nodes, "coral", coralSeeds(plan.coral), { concurrency: plan.coralConcurrency, seed: 1 }, async (st) => {
        if (steady !== undefined) return;
        if (st.queued === 0 && st.ok + st.failed > 0) {
          steady = { t: Date.now(), tokens: (await fleet.counters()).generationTokens - before.generationTokens };
        } else samples.push(await fleetLoad(fleet.urls));
      });
      const after = await fleet.counters();
      const cpu1 = cpuOf(nodes);
      const natsCpuS = natsCpuOf(nats) - natsCpu0;
      const tokens = after.generationTokens - before.generationTokens;
      const wallS = (coral.lastFinished - t0) / 1000;
      const texts = await Promise.all(nodes.map((n) => n.metrics()));
      // What the framework costs per LLM call: the nodes' and the nats-server's CPU from the submit to the rows read
      // back, over the requests the fleet's servers counted (the sim fleet's own CPU is not the framework's).
      const llmCalls = after.requests - before.requests;
      const hops = hopsOf(texts) - hops0;
      const nodesCpuS = cpu1.reduce((s, c, i) => s + c.cpuS - (cpu0[i]?.cpuS ?? 0), 0);
      const cpuMicrosPerCall = microsPer(nodesCpuS + natsCpuS, llmCalls);
      figures.coral = {
        nodes: nodes.length,
        tasks: coral.rows,
        wallS: round(wallS, 2),
        fleetCeilingTps: Math.round(fleet.ceilingTps),
        generatedTokens: tokens,
        tokensPerSecond: Math.round(tokens / wallS),
        utilization: round(tokens / (fleet.ceilingTps * wallS), 3),
        /** from the submit request until every seed was admitted (the job's tail, its last tasks finishing, left out) */
        steadyUtilization: steady ? round(steady.tokens / (fleet.ceilingTps * ((steady.t - t0) / 1000)), 3) : null,
        steadyS: steady ? round((steady.t - t0) / 1000, 1) : null,
        /** requests the servers ran and queued, on average, while seeds waited (sampled) */
        steadyRunning: round(samples.reduce((a, x) => a + x.running, 0) / Math.max(1, samples.length), 1),
        steadyWaiting: round(samples.reduce((a, x) => a + x.waiting, 0) / Math.max(1, samples.length), 1),
        fleetSlots: plan.fleet.servers * plan.fleet.slots,
        /** share of the fleet's slots busy over the run, from the servers' own running-seconds counter */
        slotBusyShare: round((after.runningSeconds - before.runningSeconds) / (plan.fleet.servers * wallS), 3),
        hopsThroughNats: texts.reduce((s, t) => s + metric(t, "matrixd_hops_total", 'route="nats"'), 0),
        cpuSecondsPerNode: cpu1.map((c, i) => round(c.cpuS - (cpu0[i]?.cpuS ?? 0))),
        natsCpuS: round(natsCpuS, 2),
        /** LLM requests the fleet's servers counted over the job */
        llmCalls,
        /** generated tokens per call: with calls/s, the fleet a given rate needs */
        tokensPerCall: llmCalls > 0 ? round(tokens / llmCalls, 1) : null,
        hops,
        /** CPU of the nodes and the nats-server per LLM call, then each part alone */
        cpuMicrosPerCall,
        nodesCpuMicrosPerCall: microsPer(nodesCpuS, llmCalls),
        natsCpuMicrosPerCall: microsPer(natsCpuS, llmCalls),
        cpuMicrosPerHop: microsPer(nodesCpuS + natsCpuS, hops),
        /** the LLM calls one core's worth of matrixd over NATS (nodes + nats-server) drives per second */
        callsPerCoreSecond: cpuMicrosPerCall ? Math.round(1e6 / cpuMicrosPerCall) : null,
      };
      log(`  ${JSON.stringify(figures.coral)}`);
      await stopNodes(nodes);
    } finally {
      await fleet.stop();
    }
  }
  return figures;
}

const results: Record<string, unknown> = { machine: machineInfo(root), quick, nodes: nodeCount, plan };

/** The figures of an earlier file with this run's sections put in, each new one carrying this run's machine and node count. */
function mergeSections(old: Record<string, unknown>, now: Record<string, unknown>): Record<string, unknown> {
  const merged = { ...old };
  for (const [k, v] of Object.entries(now)) {
    if (k === "machine" || k === "quick" || k === "nodes" || k === "plan") continue;
    merged[k] = v !== null && typeof v === "object" && !Array.isArray(v) ? { machine: now.machine, quick: now.quick, nodes: now.nodes, ...(v as object) } : v;
  }
  return merged;
}
if (only.has("million")) {
  const seeds = f.seeds === undefined ? (quick ? 20_000 : 1_000_000) : Number(f.seeds);
  const million = await measureMillion(
    {
      matrixd,
      dir: tmp.dir,
      startNodes: (url, config) => startNodes({ tag: "", urls: [url], replicas: 1, pids: () => [] }, "m", config),
      stopNodes,
      log,
    },
    { seeds, plainSeeds: Math.min(seeds, quick ? 5000 : 50_000), concurrency: plan.millionConcurrency, nodes: nodeCount },
  );
  const dir = f.out ?? join(root, "bench", "results");
  mkdirSync(dir, { recursive: true });
  const file = { machine: machineInfo(root), quick, nodes: nodeCount, ...million };
  writeFileSync(join(dir, "million.json"), `${JSON.stringify(file, null, 2)}\n`);
  const m = machineInfo(root);
  const text = [`# ${seeds.toLocaleString("en-US")} seeds through ${nodeCount === 3 ? "three nodes" : nodeCount === 1 ? "one node" : `${nodeCount} nodes`}`, "", `${m.date}, ${m.cpu}, ${m.cores} cores (shared), ${m.ramGiB} GiB, commit ${m.commit}`, "", "```", ...describeMillion(million), "```", ""];
  writeFileSync(join(dir, "million.md"), text.join("\n"));
  console.log(describeMillion(million).join("\n"));
  only.delete("million");
  if (only.size === 0) {
    tmp.remove();
    process.exit(0);
  }
}
try {
  log("one nats-server:");
  const monitorPort = await freePort();
  const single = await startNatsServer({ args: ["-m", String(monitorPort)] });
  try {
    const nats: NatsSetup = { tag: "", urls: [single.url], replicas: 1, pids: () => (single.pid === undefined ? [] : [single.pid]) };
    Object.assign(results, await measureOn(nats));
    if (only.has("side")) {
      const ctx = {
        matrixd,
        dir: tmp.dir,
        monitor: `http://127.0.0.1:${monitorPort}`,
        startNodes: (config: Record<string, unknown>) => startNodes(nats, "s", config),
        stopNodes,
        log,
      };
      const rounds = f.rounds === undefined ? plan.side.rounds : Number(f.rounds);
      const slots = f["side-slots"] === undefined ? undefined : Number(f["side-slots"]);
      results.sideBySide = await measureSideBySide(ctx, { ...plan.side, rounds, ...(slots ? { slots } : {}) }, single.pid);
    }
  } finally {
    await single.close();
  }
  if (withCluster) {
    log("a 3-server NATS cluster, replicas 3:");
    const cluster = await startNatsCluster({ size: 3 });
    try {
      // The cluster's servers by their config files, for their CPU time.
      const pids = () => cluster.servers.flatMap((m) => pidsWithArg(m.configPath));
      results.natsCluster = { servers: 3, replicas: 3, ...(await measureOn({ tag: "k", urls: cluster.urls, replicas: 3, pids })) };
    } finally {
      await cluster.close();
    }
  }
} finally {
  tmp.remove();
}

const out = f.out ?? join(root, "bench", "results");
mkdirSync(out, { recursive: true });
// A run of some sections only (--only) keeps the other sections' figures of the file, each with the machine it ran on.
const file = join(out, "cluster.json");
const written = f.only !== undefined && existsSync(file) ? mergeSections(JSON.parse(readFileSync(file, "utf8")), results) : results;
writeFileSync(file, `${JSON.stringify(written, null, 2)}\n`);
const lines: string[] = [];
/** The figures of one NATS setup, as lines. */
function describeFigures(title: string, r: Record<string, unknown>): void {
  lines.push(title);
  const d = r.coralDummy as Record<string, number> | undefined;
  if (d) lines.push(`  coral-dummy hops/s per node (local first):  ${d.meanHopsPerSecondPerNode} (per node ${JSON.stringify(d.hopsPerSecondPerNode)}; ${d.hops} hops, ${d.hopsThroughNats} through NATS)`);
  if (d) lines.push(`  coral-dummy CPU per hop, nodes + nats-server: ${d.cpuMicrosPerHop} µs (local first)`);
  const h = r.hopThroughNats as { light: Record<string, number>; loaded: Record<string, number> } | undefined;
  if (h) {
    lines.push(`  latency a hop through NATS adds:           p50 ${h.light.latencyP50Ms} ms, p99 ${h.light.latencyP99Ms} ms (${h.light.inFlight} tasks in flight)`);
    lines.push(`  every hop through NATS: hops/s per node     ${h.loaded.hopsPerSecondPerNode} (${h.loaded.inFlight} tasks in flight)`);
    lines.push(`  every hop through NATS: CPU per hop          ${h.loaded.cpuMicrosPerHop} µs, nodes + nats-server`);
  }
  const c = r.coral as Record<string, number> | undefined;
  if (c) {
    lines.push(`  coral utilization of the fleet, whole job:  ${c.utilization} (${c.tokensPerSecond} tokens/s of ${c.fleetCeilingTps}; slots busy ${c.slotBusyShare}; ${c.wallS} s)`);
    lines.push(`  coral utilization while seeds wait:        ${c.steadyUtilization} (first ${c.steadyS} s; servers ran ${c.steadyRunning} of ${c.fleetSlots} slots, ${c.steadyWaiting} waiting)`);
    lines.push(`  coral CPU per LLM call, nodes + nats-server: ${c.cpuMicrosPerCall} µs (nodes ${c.nodesCpuMicrosPerCall}, nats-server ${c.natsCpuMicrosPerCall}): ${c.callsPerCoreSecond} calls per core-second`);
    lines.push(`  coral CPU per hop, nodes + nats-server:      ${c.cpuMicrosPerHop} µs (${c.llmCalls} LLM calls, ${c.tokensPerCall} tokens generated each; ${c.hops} hops)`);
  }
}
const cores = (results.machine as { cores: number }).cores;
describeFigures(`cluster of ${nodeCount} matrixd join process${nodeCount === 1 ? "" : "es"}, one nats-server (${cores} cores)`, results);
if (results.sideBySide) lines.push(...describeSide(results.sideBySide as Record<string, unknown>));
if (results.natsCluster) describeFigures("the same on a 3-server NATS cluster, streams and buckets with 3 replicas", results.natsCluster as Record<string, unknown>);
lines.push(`written: ${join(out, "cluster.json")}`);
console.log(lines.join("\n"));
