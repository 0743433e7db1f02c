/**
 * The server kinds section (`matrixd bench kinds [--quick]`): against one
 * 8-slot sim-llm server of each kind (vllm, sglang, llamacpp, tgi, openai),
 * does `matrixd run` keep the slots busy with a short server queue, whatever
 * its `--concurrency`? Each (kind, concurrency) cell gets a fresh server in
 * its own process and a coral run as a separate process; the server is read
 * from outside every 250 ms (its /metrics and /health), never through the
 * LLM client's code. Writes DIR/kinds.json and DIR/kinds.md and prints the
 * table.
 */
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, readSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import type { Subprocess } from "bun";
import { readUrls } from "./fleet.ts";
import { type MachineInfo, machineInfo } from "./machine.ts";
import { bunCommand, matrixdCommand, measure, type ProcResult, repoRoot, stopAll, track } from "./proc.ts";
import { markdownTable, textTable } from "./report.ts";

export const KINDS_HELP = `matrixd bench kinds: does matrixd keep one server's slots busy, whatever --concurrency, for every server kind

usage: matrixd bench kinds [--quick] [options]

  --quick              2 kinds x 2 concurrencies x 20 tasks (a smoke test)
  --kinds LIST         server kinds, comma-separated (default vllm,sglang,llamacpp,tgi,openai)
  --concurrency LIST   matrixd run --concurrency values, comma-separated (default 8,64,1024)
  --tasks N            coral seed lines per run (default 300; quick 20)
  --slots N            slots of the server (default 8)
  --decode-tps T       ceiling of the server, tokens/s (default 10000; quick 20000)
  --seeds FILE         seed file (default configs/seeds/coral.jsonl)
  --out DIR            where results go (default bench/results)
  --keep               keep the temporary folder (datasets) and print its path

Each (kind, concurrency) starts 'matrixd sim-llm --kind K --slots N', runs
'matrixd run --workflow coral --llm URL --concurrency C' as its own process, and
samples the server's /metrics and /health every 250 ms while it runs.
Writes DIR/kinds.json and DIR/kinds.md, and prints the table.`;

/** The server kinds, in the order of the table. */
export const SERVER_KINDS = ["vllm", "sglang", "llamacpp", "tgi", "openai"] as const;
export type Kind = (typeof SERVER_KINDS)[number];

/** The series of one kind's /metrics the section reads. */
interface KindSeries {
  running: string[];
  waiting: string[];
  generated: string[];
  /** its end-to-end request latency histogram, seconds, or null */
  latency: string | null;
}

/**
 * Each kind's own series, with the names of the real servers: vLLM, SGLang,
 * llama.cpp (requests processing / deferred), TGI (batch size / queue size,
 * request duration). A hosted API publishes none.
 */
export const KIND_SERIES: Record<Kind, KindSeries> = {
  vllm: {
    running: ["vllm:num_requests_running"],
    waiting: ["vllm:num_requests_waiting"],
    generated: ["vllm:generation_tokens_total"],
    latency: "vllm:e2e_request_latency_seconds",
  },
  sglang: {
    running: ["sglang:num_running_reqs"],
    waiting: ["sglang:num_queue_reqs"],
    generated: ["sglang:generation_tokens_total"],
    latency: "sglang:e2e_request_latency_seconds",
  },
  llamacpp: {
    running: ["llamacpp:requests_processing"],
    waiting: ["llamacpp:requests_deferred"],
    generated: ["llamacpp:tokens_predicted_total"],
    latency: null,
  },
  tgi: { running: ["tgi_batch_current_size"], waiting: ["tgi_queue_size"], generated: ["tgi_request_generated_tokens_sum"], latency: "tgi_request_duration" },
  openai: { running: [], waiting: [], generated: [], latency: null },
};

/** Series of the sim that every kind publishes, tried after the kind's own. */
const SIM_RUNNING = ["sim:num_requests_running", "sim:running"];
const SIM_WAITING = ["sim:num_requests_waiting", "sim:waiting"];
const SIM_GENERATED = ["sim:generation_tokens_total"];
/** Requests waiting for an HTTP thread (llama.cpp's pool), before the server sees them. */
const SIM_HTTP_WAITING = "sim:http_waiting";

/** How often the server is read while a run goes on. */
const SAMPLE_MS = 250;
/** /health must answer within this long, every sample. */
const HEALTH_LIMIT_MS = 1000;
/** A sample of /metrics that takes longer is missed. */
const METRICS_LIMIT_MS = 1000;
/** A running share at or above this counts as "full". */
const FULL_SHARE = 0.9;

/** Sizes of one run of the section. */
export interface KindsPlan {
  quick: boolean;
  kinds: Kind[];
  concurrencies: number[];
  tasks: number;
  slots: number;
  decodeTps: number;
  /** sim-llm flags beyond kind, slots and decode rate */
  simFlags: Record<string, number>;
  /** a run is killed after this long */
  timeoutMs: number;
}

/** The default plan: every kind x [8, 64, 1024] x 300 tasks, or the quick one. */
export function kindsPlan(quick: boolean): KindsPlan {
  const common = { slots: 8, simFlags: { "agree-rate": 0.3 } };
  if (quick) return { ...common, quick, kinds: ["vllm", "llamacpp"], concurrencies: [8, 64], tasks: 20, decodeTps: 20_000, timeoutMs: 120_000 };
  return { ...common, quick, kinds: [...SERVER_KINDS], concurrencies: [8, 64, 1024], tasks: 300, decodeTps: 10_000, timeoutMs: 600_000 };
}

/** What one (kind, concurrency) cell measured. */
export interface KindCell {
  kind: Kind;
  concurrency: number;
  /** tasks of the run (seed lines) */
  tasks: number;
  exitCode: number;
  /** wall time of the `matrixd run` process, s */
  wallS: number;
  slots: number;
  ceilingTps: number;
  genTokens: number;
  /** the series the tokens were read from, or "rows" (the rows' usage) */
  tokensFrom: string;
  tokensPerS: number;
  /** generated tokens / (ceiling x wall) */
  utilization: number;
  /** busy slot-seconds / (slots x wall), from sim:running_seconds_total */
  occupancy: number;
  /** mean of running/slots over the busy samples, 0..1 */
  runningShare: number;
  /** share of the busy samples with running/slots >= 0.9, 0..1 */
  runningFull: number;
  /** the gauge running was read from, or sim:running_seconds_total (the share between two samples) */
  runningFrom: string;
  /** requests waiting in the server over the busy samples; null when the kind publishes no such gauge */
  waitingMean: number | null;
  waitingMax: number | null;
  waitingFrom: string | null;
  /** requests waiting for an HTTP thread (sim:http_waiting) over the busy samples; null when absent */
  httpWaitingMean: number | null;
  httpWaitingMax: number | null;
  /** samples taken, and those counted as busy (after the first request, while at least `slots` tasks remained) */
  samples: number;
  busySamples: number;
  /** samples whose /metrics did not answer within 1 s */
  metricsMissed: number;
  /** p99 of a call: the server's histogram when the kind publishes one, else the rows' turns */
  callP99S: number;
  callP99From: "server" | "rows";
  /** p99 of the kind's e2e latency histogram, or null when it has none */
  serverCallP99S: number | null;
  serverLatencyFrom: string | null;
  /** p99 of the rows' turn `ms`, s */
  rowsCallP99S: number;
  /** every /health probe answered within 1 s */
  healthOk: boolean;
  healthProbes: number;
  /** probes without an answer within 1 s */
  healthLate: number;
  healthMaxMs: number;
  rows: number;
  distinct: number;
  failed: number;
  /** a few failure reasons */
  errors: string[];
}

/** The section's results file. */
export interface KindsResults {
  section: "kinds";
  quick: boolean;
  machine: MachineInfo;
  workflow: "coral";
  tasks: number;
  slots: number;
  decodeTps: number;
  sampleMs: number;
  kinds: Kind[];
  concurrencies: number[];
  cells: KindCell[];
  notes: string[];
}

/** `matrixd bench kinds [...]`: run the section; returns the exit code. */
export async function runKinds(argv: string[]): Promise<number> {
  const { values: f } = parseArgs({
    args: argv,
    strict: true,
    options: {
      quick: { type: "boolean" },
      kinds: { type: "string" },
      concurrency: { type: "string" },
      tasks: { type: "string" },
      slots: { type: "string" },
      "decode-tps": { type: "string" },
      seeds: { type: "string" },
      out: { type: "string" },
      keep: { type: "boolean" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (f.help) {
    console.log(KINDS_HELP);
    return 0;
  }
  const plan = kindsPlan(f.quick === true);
  if (f.kinds) plan.kinds = parseKinds(f.kinds);
  if (f.concurrency) plan.concurrencies = f.concurrency.split(",").map((c) => positiveInt("concurrency", c.trim()));
  if (f.tasks) plan.tasks = positiveInt("tasks", f.tasks);
  if (f.slots) plan.slots = positiveInt("slots", f.slots);
  if (f["decode-tps"]) plan.decodeTps = positiveInt("decode-tps", f["decode-tps"]);
  const root = repoRoot();
  const outDir = resolve(f.out ?? join(root, "bench", "results"));
  const log = (line: string) => console.error(line);
  const machine = machineInfo(root);
  log(`matrixd bench kinds${plan.quick ? " (quick)" : ""}: ${machine.cpu}, ${machine.cores} cores, ${machine.ramGiB} GiB, commit ${machine.commit}`);
  const tmp = mkdtempSync(join(tmpdir(), "matrixd-bench-kinds-"));
  try {
    const seeds = writeSeeds(f.seeds ?? join(root, "configs", "seeds", "coral.jsonl"), plan.tasks, join(tmp, "seeds.jsonl"));
    if (seeds < plan.tasks) log(`  only ${seeds} seeds: the runs use them all`);
    plan.tasks = seeds;
    const cells = await runCells(kindsCommand(root, log), plan, tmp, log);
    const results = kindsResults(plan, machine, cells);
    mkdirSync(outDir, { recursive: true });
    writeFileSync(join(outDir, "kinds.json"), `${JSON.stringify(results, null, 2)}\n`);
    writeFileSync(join(outDir, "kinds.md"), renderKindsMarkdown(results));
    console.log(renderKindsTable(results));
    log(`results: ${join(outDir, "kinds.json")}, kinds.md`);
    return cells.every((c) => c.exitCode === 0 && c.rows === c.tasks && c.distinct === c.tasks) ? 0 : 1;
  } catch (err) {
    // No server or run left behind when a cell fails.
    stopAll();
    throw err;
  } finally {
    if (f.keep) log(`kept: ${tmp}`);
    else rmSync(tmp, { recursive: true, force: true });
  }
}

/**
 * The matrixd command, as the other sections pick it, unless it is a
 * compiled binary older than `sim-llm --kind`: then the CLI from source.
 */
function kindsCommand(root: string, log: (line: string) => void): string[] {
  const cmd = matrixdCommand(root);
  const help = Bun.spawnSync([...cmd, "sim-llm", "--help"], { stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  if (help.stdout.toString().includes("--kind")) return cmd;
  log(`  ${cmd.join(" ")} has no sim-llm --kind (built before it): running matrixd from source`);
  return [...bunCommand(root), join(root, "cmd", "matrixd.ts")];
}

function parseKinds(list: string): Kind[] {
  return list.split(",").map((k) => {
    const kind = k.trim() as Kind;
    if (!SERVER_KINDS.includes(kind)) throw new Error(`--kinds: unknown kind "${k}" (kinds: ${SERVER_KINDS.join(", ")})`);
    return kind;
  });
}

function positiveInt(name: string, v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new Error(`--${name} must be a whole number >= 1, got "${v}"`);
  return n;
}

/** Write the first `n` seed lines of `from` to `to`; returns how many there were. */
function writeSeeds(from: string, n: number, to: string): number {
  const lines = readFileSync(from, "utf8").split("\n").filter((l) => l.trim()).slice(0, n);
  writeFileSync(to, `${lines.join("\n")}\n`);
  return lines.length;
}

/** Every (kind, concurrency) cell, one after the other. */
async function runCells(matrixd: string[], plan: KindsPlan, tmp: string, log: (line: string) => void): Promise<KindCell[]> {
  const cells: KindCell[] = [];
  for (const kind of plan.kinds) {
    for (const concurrency of plan.concurrencies) {
      const cell = await runCell(matrixd, plan, tmp, kind, concurrency);
      log(`  ${cellLine(cell)}`);
      cells.push(cell);
    }
  }
  return cells;
}

function cellLine(c: KindCell): string {
  return (
    `${c.kind} C=${c.concurrency}: ${c.tokensPerS.toFixed(0)} tokens/s, utilization ${c.utilization.toFixed(3)}, ` +
    `running ${c.runningShare.toFixed(3)} of slots (${c.runningFull.toFixed(3)} of samples >= 90%), ` +
    `waiting ${fmtNum(c.waitingMean, 1)} (max ${fmtNum(c.waitingMax, 0)}), p99 call ${c.callP99S.toFixed(2)} s (${c.callP99From}), ` +
    `/health ${c.healthOk ? "ok" : `${c.healthLate} late`} (max ${c.healthMaxMs.toFixed(0)} ms), ${c.rows}/${c.tasks} rows, ${c.failed} failed` +
    (c.exitCode === 0 ? "" : `, exit ${c.exitCode}`)
  );
}

// ---------------------------------------------------------------------------
// One cell: a fresh server, one `matrixd run`, the server sampled meanwhile.

/** One sim-llm process serving one server. */
interface SimProc {
  base: string;
  stop(): Promise<void>;
}

/** Start `matrixd sim-llm --kind K` and wait for its "listening on" line. */
export async function startKindSim(matrixd: string[], kind: Kind, plan: Pick<KindsPlan, "slots" | "decodeTps" | "simFlags">): Promise<SimProc> {
  const args = [...matrixd, "sim-llm", "--port", "0", "--kind", kind, "--slots", String(plan.slots), "--decode-tps", String(plan.decodeTps)];
  for (const [k, v] of Object.entries(plan.simFlags)) args.push(`--${k}`, String(v));
  const proc = track(Bun.spawn(args, { stdin: "ignore", stdout: "pipe", stderr: "pipe" }));
  const stop = async () => {
    proc.kill("SIGTERM");
    const timer = setTimeout(() => proc.kill("SIGKILL"), 5000);
    await proc.exited;
    clearTimeout(timer);
  };
  try {
    return { base: await listeningOn(proc), stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** The one URL the server listens on, or what it said on stderr when it did not start. */
async function listeningOn(proc: Subprocess<"ignore", "pipe", "pipe">): Promise<string> {
  try {
    const [url] = await readUrls(proc, 1);
    if (url) return url;
  } catch {
    // said below, with the server's own words
  }
  const err = await new Response(proc.stderr).text();
  throw new Error(`sim-llm --kind did not start: ${err.trim().split("\n").slice(-2).join(" | ")}`);
}

/** Run one cell: start the server, run coral against it, sample, stop the server. */
async function runCell(matrixd: string[], plan: KindsPlan, tmp: string, kind: Kind, concurrency: number): Promise<KindCell> {
  const sim = await startKindSim(matrixd, kind, plan);
  try {
    const first = parseMetrics(await getText(`${sim.base}/metrics`, 5000));
    const out = join(tmp, `${kind}-${concurrency}.jsonl`);
    const cmd = [
      ...matrixd, "run", "--workflow", "coral", "--seeds", join(tmp, "seeds.jsonl"), "--out", out,
      "--llm", `${sim.base}/v1`, "--concurrency", String(concurrency), "--seed", "1",
    ];
    const rows = new RowCounter(out);
    let done = false;
    const run = measure(cmd, { timeoutMs: plan.timeoutMs }).finally(() => {
      done = true;
    });
    const samples = await sampleWhile(sim.base, () => done, rows, plan.timeoutMs);
    const proc = await run;
    const last = parseMetrics(await getText(`${sim.base}/metrics`, 5000));
    const ds = readRows(out);
    return cellOf({ kind, concurrency, plan, first, last, samples, proc, ds });
  } finally {
    await sim.stop();
  }
}

/** One look at the server from outside. */
interface Sample {
  /** ms since the sampling began */
  t: number;
  /** parsed /metrics, or null when it did not answer in time */
  metrics: Map<string, number> | null;
  /** ms /health took, or null when it did not answer within the limit */
  healthMs: number | null;
  /** rows in the dataset so far */
  rows: number;
}

/** Sample every SAMPLE_MS until `done()` (or the deadline); bounded by the deadline. */
async function sampleWhile(base: string, done: () => boolean, rows: RowCounter, timeoutMs: number): Promise<Sample[]> {
  const samples: Sample[] = [];
  const t0 = performance.now();
  const most = Math.ceil(timeoutMs / SAMPLE_MS) + 1;
  for (let i = 0; i < most && !done(); i++) {
    const at = performance.now();
    const [metrics, healthMs] = await Promise.all([
      getText(`${base}/metrics`, METRICS_LIMIT_MS).then(parseMetrics, () => null),
      timed(`${base}/health`, HEALTH_LIMIT_MS),
    ]);
    samples.push({ t: at - t0, metrics, healthMs, rows: rows.count() });
    await Bun.sleep(Math.max(0, SAMPLE_MS - (performance.now() - at)));
  }
  return samples;
}

/** GET a URL's text within `limitMs`, on a connection of its own (closed after). */
async function getText(url: string, limitMs: number): Promise<string> {
  const res = await fetch(url, { signal: AbortSignal.timeout(limitMs), keepalive: false, headers: { connection: "close" } });
  const text = await res.text();
  if (!res.ok) throw new Error(`${url} answered ${res.status}`);
  return text;
}

/** ms until the URL answered (any status), or null when it did not within `limitMs`. */
async function timed(url: string, limitMs: number): Promise<number | null> {
  const t0 = performance.now();
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(limitMs), keepalive: false, headers: { connection: "close" } });
    await res.arrayBuffer();
    const ms = performance.now() - t0;
    return ms <= limitMs ? ms : null;
  } catch {
    return null;
  }
}

/** Counts newline-terminated rows of a growing JSONL file, reading only what was added. */
class RowCounter {
  #offset = 0;
  #rows = 0;
  constructor(private readonly path: string) {}

  count(): number {
    if (!existsSync(this.path)) return this.#rows;
    const fd = openSync(this.path, "r");
    try {
      const buf = Buffer.alloc(1 << 16);
      for (let i = 0; i < 100_000; i++) {
        const n = readSync(fd, buf, 0, buf.length, this.#offset);
        if (n <= 0) break;
        this.#offset += n;
        for (let j = 0; j < n; j++) if (buf[j] === 10) this.#rows++;
      }
    } finally {
      closeSync(fd);
    }
    return this.#rows;
  }
}

// ---------------------------------------------------------------------------
// Reading Prometheus text and the dataset.

/** Prometheus text: each series name to its value summed over label sets (histogram buckets keyed by `name{le}`). */
export function parseMetrics(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const m = /^([A-Za-z_:][A-Za-z0-9_:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const v = Number(m[3] === "+Inf" ? Number.POSITIVE_INFINITY : m[3]);
    if (Number.isNaN(v)) continue;
    const name = m[1] as string;
    const le = /le="([^"]+)"/.exec(m[2] ?? "")?.[1];
    const key = le === undefined ? name : `${name}{${le}}`;
    out.set(key, (out.get(key) ?? 0) + v);
  }
  return out;
}

/** The first of `names` present in `m`, with its value. */
function firstOf(m: Map<string, number>, names: string[]): { name: string; value: number } | undefined {
  for (const name of names) {
    const value = m.get(name);
    if (value !== undefined) return { name, value };
  }
  return undefined;
}

/**
 * The q-quantile of a cumulative histogram in `m` (as parseMetrics keys it),
 * interpolated in its bucket like Prometheus' histogram_quantile; null when
 * the histogram is absent or empty.
 */
export function histogramQuantile(m: Map<string, number>, name: string, q: number): number | null {
  const buckets: { le: number; n: number }[] = [];
  for (const [key, n] of m) {
    if (!key.startsWith(`${name}_bucket{`)) continue;
    const le = key.slice(name.length + 8, -1);
    buckets.push({ le: le === "+Inf" ? Number.POSITIVE_INFINITY : Number(le), n });
  }
  buckets.sort((a, b) => a.le - b.le);
  const total = buckets[buckets.length - 1]?.n ?? 0;
  if (total <= 0) return null;
  const goal = q * total;
  let prev = { le: 0, n: 0 };
  for (const b of buckets) {
    if (b.n >= goal) {
      if (!Number.isFinite(b.le)) return prev.le;
      return b.n === prev.n ? b.le : prev.le + ((goal - prev.n) / (b.n - prev.n)) * (b.le - prev.le);
    }
    prev = b;
  }
  return prev.le;
}

/** What the dataset says: rows, ids, failures, turn latencies and completion tokens. */
interface RowsStats {
  rows: number;
  distinct: number;
  failed: number;
  turnMs: number[];
  completionTokens: number;
  errors: string[];
}

interface RowView {
  id?: unknown;
  status?: unknown;
  error?: unknown;
  history?: { ms?: unknown; usage?: { completion?: unknown } }[];
}

function readRows(path: string): RowsStats {
  const s: RowsStats = { rows: 0, distinct: 0, failed: 0, turnMs: [], completionTokens: 0, errors: [] };
  if (!existsSync(path)) return s;
  const ids = new Set<string>();
  for (const line of readFileSync(path, "utf8").split("\n")) {
    if (!line.trim()) continue;
    const row = JSON.parse(line) as RowView;
    s.rows++;
    ids.add(String(row.id));
    if (row.status !== "ok") {
      s.failed++;
      if (s.errors.length < 5) s.errors.push(String(row.error));
    }
    for (const turn of row.history ?? []) {
      if (typeof turn.ms === "number" && Number.isFinite(turn.ms)) s.turnMs.push(turn.ms);
      if (typeof turn.usage?.completion === "number") s.completionTokens += turn.usage.completion;
    }
  }
  s.distinct = ids.size;
  return s;
}

function quantile(sorted: number[], q: number): number {
  return sorted.length ? (sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] as number) : Number.NaN;
}

// ---------------------------------------------------------------------------
// From samples to a cell.

interface CellInput {
  kind: Kind;
  concurrency: number;
  plan: KindsPlan;
  first: Map<string, number>;
  last: Map<string, number>;
  samples: Sample[];
  proc: ProcResult;
  ds: RowsStats;
}

function cellOf(x: CellInput): KindCell {
  const { kind, plan, first, last, proc, ds } = x;
  const slots = last.get("sim:slots") ?? plan.slots;
  const ceiling = last.get("sim:ceiling_tokens_per_second") ?? Number.NaN;
  const tokens = generated(kind, first, last, ds);
  const wall = proc.wallS;
  const running = runningShares(kind, x.samples, slots, plan.tasks);
  const waiting = waitingOf(KIND_SERIES[kind].waiting.concat(SIM_WAITING), running.busy);
  const httpWaiting = waitingOf([SIM_HTTP_WAITING], running.busy);
  const latency = KIND_SERIES[kind].latency;
  const serverP99 = latency === null ? null : histogramQuantile(last, latency, 0.99);
  const rowsP99 = quantile([...ds.turnMs].sort((a, b) => a - b), 0.99) / 1000;
  const health = healthOf(x.samples);
  const runningSeconds = (last.get("sim:running_seconds_total") ?? Number.NaN) - (first.get("sim:running_seconds_total") ?? 0);
  return {
    kind,
    concurrency: x.concurrency,
    tasks: plan.tasks,
    exitCode: proc.code,
    wallS: wall,
    slots,
    ceilingTps: ceiling,
    genTokens: tokens.value,
    tokensFrom: tokens.from,
    tokensPerS: tokens.value / wall,
    utilization: tokens.value / (ceiling * wall),
    occupancy: runningSeconds / wall,
    runningShare: running.mean,
    runningFull: running.full,
    runningFrom: running.from,
    waitingMean: waiting?.mean ?? null,
    waitingMax: waiting?.max ?? null,
    waitingFrom: waiting?.from ?? null,
    httpWaitingMean: httpWaiting?.mean ?? null,
    httpWaitingMax: httpWaiting?.max ?? null,
    samples: x.samples.length,
    busySamples: running.busy.length,
    metricsMissed: x.samples.filter((s) => s.metrics === null).length,
    callP99S: serverP99 ?? rowsP99,
    callP99From: serverP99 === null ? "rows" : "server",
    serverCallP99S: serverP99,
    serverLatencyFrom: serverP99 === null ? null : latency,
    rowsCallP99S: rowsP99,
    ...health,
    rows: ds.rows,
    distinct: ds.distinct,
    failed: ds.failed,
    errors: proc.code === 0 ? ds.errors : [...ds.errors, lastLines(proc.stderr || proc.stdout)],
  };
}

/** Generated tokens: the sim's counter, else the kind's own, else the rows' completion usage. */
function generated(kind: Kind, first: Map<string, number>, last: Map<string, number>, ds: RowsStats): { value: number; from: string } {
  const names = [...SIM_GENERATED, ...KIND_SERIES[kind].generated];
  const end = firstOf(last, names);
  if (end) return { value: end.value - (first.get(end.name) ?? 0), from: end.name };
  return { value: ds.completionTokens, from: "rows" };
}

/** A busy sample with its running share. */
interface BusySample {
  share: number;
  metrics: Map<string, number>;
}

/**
 * Running as a share of the slots at each busy sample: after the server saw
 * its first request, while at least `slots` tasks had no row yet (so that
 * the slots could all be busy). Read from the kind's running gauge (or the
 * sim's); failing both, from sim:running_seconds_total between two samples.
 */
function runningShares(kind: Kind, samples: Sample[], slots: number, tasks: number): { mean: number; full: number; from: string; busy: BusySample[] } {
  const names = [...KIND_SERIES[kind].running, ...SIM_RUNNING];
  const busy: BusySample[] = [];
  let from = "sim:running_seconds_total";
  let prev: Sample | undefined;
  for (const s of samples) {
    const m = s.metrics;
    if (!m) continue;
    const started = (m.get("sim:requests_total") ?? 0) > 0;
    const gauge = firstOf(m, names);
    let share: number | undefined;
    if (gauge) {
      share = gauge.value / slots;
      from = gauge.name;
    } else if (prev?.metrics) {
      const dRun = (m.get("sim:running_seconds_total") ?? 0) - (prev.metrics.get("sim:running_seconds_total") ?? 0);
      const dt = (s.t - prev.t) / 1000;
      if (dt > 0) share = dRun / dt;
    }
    prev = s;
    if (!started || share === undefined || tasks - s.rows < slots) continue;
    busy.push({ share: Math.max(0, Math.min(1, share)), metrics: m });
  }
  const mean = busy.length ? busy.reduce((a, b) => a + b.share, 0) / busy.length : Number.NaN;
  const full = busy.length ? busy.filter((b) => b.share >= FULL_SHARE).length / busy.length : Number.NaN;
  return { mean, full, from, busy };
}

/** Mean and max over the busy samples of the first gauge of `names` present; undefined when none is. */
function waitingOf(names: string[], busy: BusySample[]): { mean: number; max: number; from: string } | undefined {
  const values: number[] = [];
  let from = "";
  for (const b of busy) {
    const w = firstOf(b.metrics, names);
    if (!w) continue;
    values.push(w.value);
    from = w.name;
  }
  if (!values.length) return undefined;
  return { mean: values.reduce((a, b) => a + b, 0) / values.length, max: Math.max(...values), from };
}

function healthOf(samples: Sample[]): Pick<KindCell, "healthOk" | "healthProbes" | "healthLate" | "healthMaxMs"> {
  const late = samples.filter((s) => s.healthMs === null).length;
  const answered = samples.map((s) => s.healthMs).filter((ms): ms is number => ms !== null);
  return {
    healthOk: late === 0 && samples.length > 0,
    healthProbes: samples.length,
    healthLate: late,
    healthMaxMs: late > 0 ? HEALTH_LIMIT_MS : answered.length ? Math.max(...answered) : Number.NaN,
  };
}

function lastLines(text: string): string {
  return text.trim().split("\n").slice(-3).join(" | ").slice(0, 500);
}

// ---------------------------------------------------------------------------
// Results and their rendering.

function kindsResults(plan: KindsPlan, machine: MachineInfo, cells: KindCell[]): KindsResults {
  return {
    section: "kinds",
    quick: plan.quick,
    machine,
    workflow: "coral",
    tasks: plan.tasks,
    slots: plan.slots,
    decodeTps: plan.decodeTps,
    sampleMs: SAMPLE_MS,
    kinds: plan.kinds,
    concurrencies: plan.concurrencies,
    cells,
    notes: NOTES,
  };
}

const NOTES = [
  "One fresh sim-llm server per cell (--kind K), one `matrixd run --workflow coral --llm URL --concurrency C` process against it; " +
    "the server's /metrics and /health read from outside every 250 ms, each on a connection of its own.",
  "Utilization = generated tokens (the server's counter) / (ceiling x wall time of the run's process, start to exit).",
  "Running/slots and waiting: the kind's own gauges (vllm:num_requests_running|waiting, sglang:num_running_reqs|num_queue_reqs, " +
    "llamacpp:requests_processing|deferred, tgi_batch_current_size|tgi_queue_size); a kind without them (openai) is read off " +
    "sim:running_seconds_total between two samples, and has no queue figure. Averaged over the samples after the server's first " +
    "request while at least `slots` tasks had no row yet (the drain at the end, when fewer tasks than slots remain, is left out).",
  "p99 call (server): from the kind's own end-to-end latency histogram (vllm:e2e_request_latency_seconds, " +
    "sglang:e2e_request_latency_seconds, tgi_request_duration; llamacpp and openai have none); p99 call (rows): " +
    "the turns' `ms` in the dataset (the client's view, its own wait for a slot included).",
  "Requests waiting for one of llama.cpp's HTTP threads are not in its deferred gauge; kinds.json has them (httpWaitingMean, " +
    "httpWaitingMax, from sim:http_waiting).",
  "/health <= 1 s: every probe (one per sample) answered within 1 s; for llamacpp, whose HTTP threads are slots + 2, this is " +
    "whether the client left a thread free.",
];

const fmtNum = (x: number | null, digits: number) => (x === null || !Number.isFinite(x) ? "-" : x.toFixed(digits));

function tableRows(r: KindsResults): string[][] {
  const head = [
    "kind", "concurrency", "tokens/s", "utilization", "running/slots", "samples >= 90%", "waiting mean", "waiting max",
    "p99 call s (server)", "p99 call s (rows)", "/health <= 1 s", "rows", "failed",
  ];
  const body = r.cells.map((c) => [
    c.kind,
    String(c.concurrency),
    fmtNum(c.tokensPerS, 0),
    fmtNum(c.utilization, 3),
    fmtNum(c.runningShare, 3),
    fmtNum(c.runningFull, 3),
    fmtNum(c.waitingMean, 2),
    fmtNum(c.waitingMax, 0),
    fmtNum(c.serverCallP99S, 2),
    fmtNum(c.rowsCallP99S, 2),
    c.healthOk ? "yes" : `no (${c.healthLate} of ${c.healthProbes} late)`,
    `${c.distinct}/${c.tasks}`,
    String(c.failed),
  ]);
  return [head, ...body];
}

function setupLine(r: KindsResults): string {
  const m = r.machine;
  return (
    `coral, ${r.tasks} tasks per run; one server per run, ${r.slots} slots, ceiling ${r.decodeTps} tokens/s. ` +
    `${m.date.slice(0, 10)}, ${m.cpu}, ${m.cores} cores, ${m.ramGiB} GiB, commit ${m.commit}${m.dirty ? " (+ local changes)" : ""}`
  );
}

/** The table as printed at the end of a run. */
export function renderKindsTable(r: KindsResults): string {
  return [setupLine(r), "", textTable(tableRows(r))].join("\n");
}

/** bench/results/kinds.md. */
export function renderKindsMarkdown(r: KindsResults): string {
  const parts = [
    `# matrixd benchmark: server kinds${r.quick ? " (quick)" : ""}`,
    "",
    setupLine(r),
    "",
    markdownTable(tableRows(r)),
    "",
    ...r.notes.flatMap((n) => [n, ""]),
  ];
  return `${parts.join("\n").trimEnd()}\n`;
}
