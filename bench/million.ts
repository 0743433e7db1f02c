/**
 * The million-seed section of the cluster figures (`bun bench/cluster.ts
 * --only million [--seeds S] [--nodes N] [--quick]`): N `matrixd join`
 * processes (3 by default) on their own nats-server run one coral-dummy job
 * of S seeds (1,000,000 by default), its concurrency 1,024 a node, submitted as one streamed request whose seed lines are made as
 * they are sent, while `matrixd results --follow` writes the dataset and
 * the job drops from NATS the rows written (purgeRows "followed"). Then a
 * smaller plain job (rows kept) gives NATS disk per task without the
 * setting. Reports wall time, tasks/s, peak RSS of each node (VmHWM), the
 * nats-server store's size (peak and end) per task, and checks the
 * dataset holds each task once.
 */
import { closeSync, openSync, readdirSync, readSync, statSync } from "node:fs";
import { join } from "node:path";
import type { JoinProcess } from "../test/support/join-process.ts";
import { startNatsServer } from "../test/support/nats-server.ts";
import { procStatus } from "./proc.ts";

export interface MillionContext {
  matrixd: string[];
  dir: string;
  startNodes: (natsUrl: string, config: Record<string, unknown>) => Promise<JoinProcess[]>;
  stopNodes: (nodes: JoinProcess[]) => Promise<void>;
  log: (s: string) => void;
}

export interface MillionPlan {
  seeds: number;
  /** seeds of the plain job (rows kept), for the disk per task without the setting */
  plainSeeds: number;
  concurrency: number;
  /** `matrixd join` processes the context starts */
  nodes: number;
}

const round = (x: number, d = 1) => Math.round(x * 10 ** d) / 10 ** d;
const MiB = 2 ** 20;

/** Bytes under a folder (files only, recursively). */
export function folderBytes(dir: string): number {
  let sum = 0;
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return 0;
  }
  for (const name of names) {
    const p = join(dir, name);
    try {
      const st = statSync(p);
      sum += st.isDirectory() ? folderBytes(p) : st.size;
    } catch {
      // removed meanwhile
    }
  }
  return sum;
}

/** A streamed NDJSON body of `n` coral-dummy seeds, made a chunk at a time as the request is sent. */
function seedLines(n: number): ReadableStream<Uint8Array> {
  const enc = new TextEncoder();
  let i = 0;
  return new ReadableStream<Uint8Array>({
    pull(ctl) {
      if (i >= n) {
        ctl.close();
        return;
      }
      let chunk = "";
      for (const end = Math.min(n, i + 2000); i < end; i++) chunk += `{"id":"d${i}","question":"What is ${i} + 1?","options":["${i + 1}","${i + 2}","${i}"],"answer":"A"}\n`;
      ctl.enqueue(enc.encode(chunk));
    },
  });
}

async function submitStreamed(url: string, n: number, config: Record<string, unknown>): Promise<string> {
  const q = `workflow=coral-dummy&config=${encodeURIComponent(JSON.stringify(config))}`;
  const res = await fetch(`${url}/v1/jobs?${q}`, {
    method: "POST",
    headers: { "Content-Type": "application/x-ndjson" },
    body: seedLines(n),
    duplex: "half",
  } as RequestInit);
  if (res.status !== 201) throw new Error(`submit: ${res.status} ${await res.text()}`);
  return ((await res.json()) as { id: string }).id;
}

/** Lines of a dataset file and how many distinct task ids `d0`..`d{n-1}` they hold (read in chunks, ids as bits). */
function checkDataset(path: string, n: number): { lines: number; distinct: number; other: number } {
  const seen = new Uint8Array(Math.ceil(n / 8));
  const fd = openSync(path, "r");
  const buf = Buffer.allocUnsafe(8 * MiB);
  let carry = Buffer.alloc(0);
  let lines = 0;
  let distinct = 0;
  let other = 0;
  const head = Buffer.from('{"id":"d');
  try {
    for (;;) {
      const got = readSync(fd, buf, 0, buf.length, null);
      if (got === 0) break;
      const data = carry.length ? Buffer.concat([carry, buf.subarray(0, got)]) : buf.subarray(0, got);
      let start = 0;
      for (let nl = data.indexOf(10, start); nl !== -1; nl = data.indexOf(10, start)) {
        lines++;
        let id = -1;
        if (data.subarray(start, start + head.length).equals(head)) {
          id = 0;
          let k = start + head.length;
          while (data[k] !== undefined && (data[k] as number) >= 48 && (data[k] as number) <= 57) id = id * 10 + (data[k++] as number) - 48;
          if (data[k] !== 34) id = -1;
        }
        if (id >= 0 && id < n) {
          const bit = 1 << (id & 7);
          if (((seen[id >> 3] as number) & bit) === 0) {
            seen[id >> 3] = (seen[id >> 3] as number) | bit;
            distinct++;
          }
        } else other++;
        start = nl + 1;
      }
      carry = Buffer.from(data.subarray(start));
    }
  } finally {
    closeSync(fd);
  }
  return { lines, distinct, other };
}

interface Sample {
  t: number;
  storeBytes: number;
  rows: number;
}

/** Run one job to its end with the nodes' RSS and the store sampled; with `follow`, a follower writes its dataset. */
async function runOne(
  ctx: MillionContext,
  nodes: JoinProcess[],
  storeDir: string,
  n: number,
  config: Record<string, unknown>,
  follow: string | undefined,
): Promise<Record<string, unknown>> {
  const store0 = folderBytes(storeDir);
  const t0 = Date.now();
  const id = await submitStreamed(nodes[0]!.url, n, config);
  const submittedS = (Date.now() - t0) / 1000;
  ctx.log(`  job ${id}: ${n} seeds submitted in ${round(submittedS)} s`);
  const follower = follow
    ? Bun.spawn([...ctx.matrixd, "results", id, "--follow", "--out", follow, "--server", nodes[1 % nodes.length]!.url], { stdout: "ignore", stderr: "pipe" })
    : undefined;
  const followerErr = follower ? new Response(follower.stderr).text() : Promise.resolve("");
  const samples: Sample[] = [];
  let followerHwm = 0;
  let last = { state: "running", ok: 0, failed: 0 };
  for (let i = 0; ; i++) {
    await Bun.sleep(2000);
    last = await nodes[2 % nodes.length]!.job(id);
    const rows = last.ok + last.failed;
    samples.push({ t: Date.now() - t0, storeBytes: folderBytes(storeDir) - store0, rows });
    if (follower?.pid) followerHwm = Math.max(followerHwm, procStatus(follower.pid).hwmBytes);
    if (i % 15 === 0) ctx.log(`  ${round((Date.now() - t0) / 1000)} s: ${rows} rows, store +${round((samples.at(-1)?.storeBytes ?? 0) / MiB)} MiB`);
    if (last.state !== "running") break;
  }
  const doneS = (Date.now() - t0) / 1000;
  let followerCode: number | null = null;
  if (follower) {
    followerCode = await follower.exited;
    if (followerCode !== 0) ctx.log(`  follower exited ${followerCode}: ${(await followerErr).slice(-2000)}`);
  }
  const wallS = (Date.now() - t0) / 1000;
  // The store once the follower's last rows are handed over (and the nodes' writes flushed).
  await Bun.sleep(3000);
  const endBytes = folderBytes(storeDir) - store0;
  const peakBytes = Math.max(endBytes, ...samples.map((s) => s.storeBytes));
  const hwm = nodes.map((p) => procStatus(p.proc.pid).hwmBytes);
  const dataset = follow ? checkDataset(follow, n) : undefined;
  const figures: Record<string, unknown> = {
    job: id,
    tasks: n,
    state: last.state,
    ok: last.ok,
    failed: last.failed,
    submitS: round(submittedS, 1),
    /** from the submit request until the job ended (every row stored) */
    jobS: round(doneS, 1),
    /** until the follower had written the whole dataset, when there is one */
    wallS: round(wallS, 1),
    tasksPerSecond: Math.round(n / wallS),
    peakRssMiBPerNode: hwm.map((b) => round(b / MiB)),
    natsStorePeakMiB: round(peakBytes / MiB),
    natsStoreEndMiB: round(endBytes / MiB),
    natsBytesPerTaskPeak: Math.round(peakBytes / n),
    natsBytesPerTaskEnd: Math.round(endBytes / n),
  };
  if (follow) {
    figures.followerExit = followerCode;
    figures.followerPeakRssMiB = round(followerHwm / MiB);
    figures.dataset = { ...dataset, bytes: statSync(follow).size, exactlyOnePerTask: dataset?.lines === n && dataset.distinct === n && dataset.other === 0 };
  }
  return figures;
}

/** The section: the big job handed to a follower, then the plain one, each on fresh nodes and a fresh nats-server. */
export async function measureMillion(ctx: MillionContext, plan: MillionPlan): Promise<Record<string, unknown>> {
  const out: Record<string, unknown> = { nodes: plan.nodes, plan };
  for (const kind of ["followed", "plain"] as const) {
    const n = kind === "followed" ? plan.seeds : plan.plainSeeds;
    if (n <= 0) continue;
    ctx.log(`million: ${n} coral-dummy seeds on ${plan.nodes} nodes, ${kind === "followed" ? "rows handed to a follower (purgeRows followed)" : "rows kept in NATS"}...`);
    const nats = await startNatsServer();
    try {
      const nodes = await ctx.startNodes(nats.url, { defaultSlots: 1024 });
      try {
        const config = { concurrency: plan.concurrency, ...(kind === "followed" ? { purgeRows: "followed" } : {}) };
        const follow = kind === "followed" ? join(ctx.dir, "million.jsonl") : undefined;
        out[kind] = await runOne(ctx, nodes, nats.storeDir, n, config, follow);
        ctx.log(`  ${JSON.stringify(out[kind])}`);
      } finally {
        await ctx.stopNodes(nodes);
      }
    } finally {
      await nats.close();
    }
  }
  return out;
}

/** The section's figures as lines. */
export function describeMillion(r: Record<string, unknown>): string[] {
  const lines: string[] = [];
  const f = r.followed as Record<string, unknown> | undefined;
  const p = r.plain as Record<string, unknown> | undefined;
  if (f) {
    const d = f.dataset as Record<string, unknown> | undefined;
    lines.push(`  ${f.tasks} coral-dummy seeds on ${r.nodes} nodes, one streamed request, rows handed to a follower:`);
    lines.push(`    wall ${f.wallS} s (job ${f.jobS} s), ${f.tasksPerSecond} tasks/s; peak RSS per node ${JSON.stringify(f.peakRssMiBPerNode)} MiB`);
    lines.push(`    NATS store per task: peak ${f.natsBytesPerTaskPeak} B, end ${f.natsBytesPerTaskEnd} B; dataset ${d?.lines} lines, ${d?.distinct} distinct ids (exactly one per task: ${d?.exactlyOnePerTask})`);
  }
  if (p) lines.push(`  ${p.tasks} seeds, rows kept: NATS store per task ${p.natsBytesPerTaskEnd} B at the end, ${p.tasksPerSecond} tasks/s`);
  return lines;
}
