/**
 * The side-by-side section of the cluster benchmark: the same coral-dummy
 * job (same seeds, same concurrency) through `matrixd run` and through the
 * benchmark's `matrixd join` nodes (`--nodes`, 3 by default) on one
 * nats-server, taking turns (run then cluster, then cluster then run...) so
 * the machine's drift falls on both; medians of the rounds. NATS operations
 * per task come from the server's own counters (`/varz` in_msgs and
 * out_msgs, before and after each job, the submit included). CPU per hop:
 * for `matrixd run` the whole process's CPU (its start and the dataset's
 * writes included) over the hops its summary prints; for the cluster the
 * nodes' and the nats-server's CPU from the submit to the job's end over the
 * hops the nodes counted.
 */
import { loadavg } from "node:os";
import { join } from "node:path";
import type { JobStatus } from "../src/cluster/types.ts";
import { readRows, writeLines } from "../test/support/files.ts";
import { type JoinProcess, metric } from "../test/support/join-process.ts";
import { measure, procStatus } from "./proc.ts";

export interface SidePlan {
  tasks: number;
  concurrency: number;
  rounds: number;
  /** slots of each role on each node (default: the job's concurrency, as `matrixd run` gives its roles) */
  slots?: number;
}

export interface SideContext {
  matrixd: string[];
  /** a folder for the seeds and the run's dataset */
  dir: string;
  /** the nats-server's monitoring address (http://host:port) */
  monitor: string;
  startNodes(config: Record<string, unknown>): Promise<JoinProcess[]>;
  stopNodes(nodes: JoinProcess[]): Promise<void>;
  log(line: string): void;
}

/** One job of one mode. */
interface SideRun {
  tasks: number;
  /** tasks over the job's window: the first task admitted to the last row */
  tasksPerSecond: number;
  /** tasks over the whole: the process for `matrixd run`, the submit request to the last row for the cluster */
  endToEndTasksPerSecond: number;
  windowS: number;
  cpuS: number[];
  load1: number;
  hops: number;
  /** CPU microseconds per hop: the process's for `matrixd run`, the nodes' and the nats-server's for the cluster */
  cpuMicrosPerHop: number | null;
}

interface ClusterRun extends SideRun {
  hopsPerSecondPerNode: number[];
  hopsThroughNats: number;
  natsInMsgsPerTask: number;
  natsOutMsgsPerTask: number;
  natsBytesPerTask: number;
  /** the nats-server's CPU seconds over the job */
  natsCpuS: number;
  /** the two parts of cpuMicrosPerHop */
  nodesCpuMicrosPerHop: number | null;
  natsCpuMicrosPerHop: number | null;
}

interface Varz {
  in_msgs: number;
  out_msgs: number;
  in_bytes: number;
  out_bytes: number;
  cpu: number;
}

const round = (x: number, d = 1) => Math.round(x * 10 ** d) / 10 ** d;
/** Microseconds of CPU per hop, or null when there were none. */
const microsPerHop = (cpuS: number, hops: number) => (hops > 0 ? round((cpuS * 1e6) / hops, 1) : null);
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
};

function seeds(n: number): Record<string, unknown>[] {
  return Array.from({ length: n }, (_, i) => ({ id: `s${i}`, question: `What is ${i} + 1?`, options: [String(i + 1), String(i + 2), String(i)], answer: "A" }));
}

// biome-ignore lint/suspicious/noExplicitAny: rows as read back
function window(rows: any[]): number {
  let first = Number.POSITIVE_INFINITY;
  let last = 0;
  for (const r of rows) {
    first = Math.min(first, r.timings.admitted as number);
    last = Math.max(last, r.timings.finished as number);
  }
  return Math.max(1, last - first) / 1000;
}

async function varz(monitor: string): Promise<Varz> {
  return (await (await fetch(`${monitor}/varz`)).json()) as Varz;
}

async function viaRun(ctx: SideContext, plan: SidePlan, seedsPath: string, i: number): Promise<SideRun> {
  const out = join(ctx.dir, `side-run-${i}.jsonl`);
  const load1 = loadavg()[0] ?? 0;
  const r = await measure([...ctx.matrixd, "run", "--workflow", "coral-dummy", "--seeds", seedsPath, "--out", out, "--concurrency", String(plan.concurrency)]);
  if (r.code !== 0) throw new Error(`matrixd run exited with ${r.code}: ${r.stderr.slice(-500)}`);
  const rows = readRows(out);
  const w = window(rows);
  // The hops matrixd run ran, from its summary line ("... tasks/s, 240,000 hops (...").
  const said = / ([\d,]+) hops \(/.exec(r.stdout);
  if (!said) throw new Error(`matrixd run's summary names no hops:\n${r.stdout.slice(-500)}`);
  const hops = Number((said[1] as string).replaceAll(",", ""));
  return {
    tasks: rows.length,
    tasksPerSecond: Math.round(rows.length / w),
    endToEndTasksPerSecond: Math.round(rows.length / r.wallS),
    windowS: round(w, 2),
    cpuS: [round(r.cpuS)],
    load1: round(load1, 2),
    hops,
    cpuMicrosPerHop: microsPerHop(r.cpuS, hops),
  };
}

async function viaCluster(ctx: SideContext, plan: SidePlan, nodes: JoinProcess[], natsPid: number | undefined, i: number): Promise<ClusterRun> {
  const load1 = loadavg()[0] ?? 0;
  const m0 = await Promise.all(nodes.map((n) => n.metrics()));
  const cpu0 = nodes.map((n) => procStatus(n.proc.pid).cpuS);
  const natsCpu0 = natsPid ? procStatus(natsPid).cpuS : 0;
  const v0 = await varz(ctx.monitor);
  const t0 = Date.now();
  const { id } = await nodes[0]!.submit("coral-dummy", seeds(plan.tasks), { concurrency: plan.concurrency, seed: i });
  for (;;) {
    const st: JobStatus = await nodes[1 % nodes.length]!.job(id);
    if (st.state !== "running") break;
    await Bun.sleep(100);
  }
  const v1 = await varz(ctx.monitor);
  const natsCpu1 = natsPid ? procStatus(natsPid).cpuS : 0;
  const cpu1 = nodes.map((n) => procStatus(n.proc.pid).cpuS);
  const m1 = await Promise.all(nodes.map((n) => n.metrics()));
  const rows = await nodes[2 % nodes.length]!.results(id);
  if (rows.length !== plan.tasks) throw new Error(`the cluster's job gave ${rows.length} rows for ${plan.tasks} seeds`);
  const w = window(rows);
  const last = Math.max(...rows.map((r) => r.timings.finished as number));
  const hops = (t: string) => metric(t, "matrixd_hops_total", 'route="local"') + metric(t, "matrixd_hops_total", 'route="nats"');
  const viaNats = (t: string) => metric(t, "matrixd_hops_total", 'route="nats"');
  const allHops = m1.reduce((s, t, k) => s + hops(t) - hops(m0[k] ?? ""), 0);
  const nodesCpuS = cpu1.reduce((s, c, k) => s + c - (cpu0[k] ?? 0), 0);
  const natsCpuS = natsCpu1 - natsCpu0;
  return {
    tasks: rows.length,
    tasksPerSecond: Math.round(rows.length / w),
    endToEndTasksPerSecond: Math.round(rows.length / ((last - t0) / 1000)),
    windowS: round(w, 2),
    cpuS: cpu1.map((c, k) => round(c - (cpu0[k] ?? 0))),
    load1: round(load1, 2),
    hopsPerSecondPerNode: m1.map((t, k) => Math.round((hops(t) - hops(m0[k] ?? "")) / w)),
    hopsThroughNats: m1.reduce((s, t, k) => s + viaNats(t) - viaNats(m0[k] ?? ""), 0),
    natsInMsgsPerTask: round((v1.in_msgs - v0.in_msgs) / rows.length, 2),
    natsOutMsgsPerTask: round((v1.out_msgs - v0.out_msgs) / rows.length, 2),
    natsBytesPerTask: Math.round((v1.in_bytes - v0.in_bytes + v1.out_bytes - v0.out_bytes) / rows.length),
    natsCpuS: round(natsCpuS),
    hops: allHops,
    cpuMicrosPerHop: microsPerHop(nodesCpuS + natsCpuS, allHops),
    nodesCpuMicrosPerHop: microsPerHop(nodesCpuS, allHops),
    natsCpuMicrosPerHop: microsPerHop(natsCpuS, allHops),
  };
}

/** Run the section: `plan.rounds` jobs of each mode, in turns; the figures of each job and their medians. */
export async function measureSideBySide(ctx: SideContext, plan: SidePlan, natsPid?: number): Promise<Record<string, unknown>> {
  const seedsPath = join(ctx.dir, "side-seeds.jsonl");
  writeLines(seedsPath, seeds(plan.tasks));
  // By default every role may hold the whole job on any node: the job's concurrency is the only limit, as in `matrixd run`.
  const nodes = await ctx.startNodes({ defaultSlots: plan.slots ?? plan.concurrency });
  const runs: SideRun[] = [];
  const clusters: ClusterRun[] = [];
  try {
    for (let i = 0; i < plan.rounds; i++) {
      const order = i % 2 === 0 ? ["run", "cluster"] : ["cluster", "run"];
      for (const mode of order) {
        ctx.log(`side by side, round ${i + 1}: ${plan.tasks} coral-dummy tasks, ${plan.concurrency} in flight, through ${mode === "run" ? "matrixd run" : `${nodes.length} join nodes`}...`);
        if (mode === "run") runs.push(await viaRun(ctx, plan, seedsPath, i));
        else clusters.push(await viaCluster(ctx, plan, nodes, natsPid, i));
        ctx.log(`  ${JSON.stringify(mode === "run" ? runs.at(-1) : clusters.at(-1))}`);
      }
    }
  } finally {
    await ctx.stopNodes(nodes);
  }
  const runTps = median(runs.map((r) => r.tasksPerSecond));
  const clusterTps = median(clusters.map((r) => r.tasksPerSecond));
  const medianOf = (xs: (number | null)[]) => {
    const known = xs.filter((x): x is number => x !== null);
    return known.length ? median(known) : null;
  };
  return {
    nodes: nodes.length,
    tasks: plan.tasks,
    concurrency: plan.concurrency,
    slotsPerRole: plan.slots ?? plan.concurrency,
    rounds: plan.rounds,
    runTasksPerSecond: runTps,
    clusterTasksPerSecond: clusterTps,
    ratio: round(clusterTps / runTps, 3),
    runEndToEndTasksPerSecond: median(runs.map((r) => r.endToEndTasksPerSecond)),
    clusterEndToEndTasksPerSecond: median(clusters.map((r) => r.endToEndTasksPerSecond)),
    clusterHopsPerSecondPerNode: nodes.map((_, k) => median(clusters.map((r) => r.hopsPerSecondPerNode[k] ?? 0))),
    natsInMsgsPerTask: median(clusters.map((r) => r.natsInMsgsPerTask)),
    natsOutMsgsPerTask: median(clusters.map((r) => r.natsOutMsgsPerTask)),
    natsBytesPerTask: median(clusters.map((r) => r.natsBytesPerTask)),
    runCpuMicrosPerHop: medianOf(runs.map((r) => r.cpuMicrosPerHop)),
    /** the nodes and the nats-server together, then each part */
    clusterCpuMicrosPerHop: medianOf(clusters.map((r) => r.cpuMicrosPerHop)),
    clusterNodesCpuMicrosPerHop: medianOf(clusters.map((r) => r.nodesCpuMicrosPerHop)),
    clusterNatsCpuMicrosPerHop: medianOf(clusters.map((r) => r.natsCpuMicrosPerHop)),
    runs,
    clusters,
  };
}

/** The section's lines of the printed report. */
export function describeSide(s: Record<string, unknown>): string[] {
  const n = (k: string) => (s[k] as number).toLocaleString("en-US");
  return [
    `  side by side, coral-dummy, ${n("tasks")} tasks, ${n("concurrency")} in flight (median of ${s.rounds}):`,
    `    matrixd run ${n("runTasksPerSecond")} tasks/s, ${s.nodes} join nodes ${n("clusterTasksPerSecond")} tasks/s: ratio ${s.ratio}`,
    `    end to end (process / submit to last row): ${n("runEndToEndTasksPerSecond")} / ${n("clusterEndToEndTasksPerSecond")} tasks/s`,
    `    cluster hops/s per node ${JSON.stringify(s.clusterHopsPerSecondPerNode)}; NATS messages per task: ${s.natsInMsgsPerTask} in, ${s.natsOutMsgsPerTask} out (${n("natsBytesPerTask")} bytes)`,
    `    CPU per hop: matrixd run ${s.runCpuMicrosPerHop} µs, ${s.nodes} join nodes + nats-server ${s.clusterCpuMicrosPerHop} µs (nodes ${s.clusterNodesCpuMicrosPerHop}, nats-server ${s.clusterNatsCpuMicrosPerHop})`,
  ];
}
