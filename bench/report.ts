/**
 * The benchmark's outputs: the results object (written as JSON), the Markdown
 * report, the SVG chart of utilization per mode, and the table printed at
 * the end.
 */
import type { FleetSettings } from "./fleet.ts";
import type { MachineInfo } from "./machine.ts";
import { MODE_TITLES, type ModeResult, type Priority } from "./modes.ts";
import type { ScaleResults } from "./scale.ts";

export interface BenchResults {
  scenario: string;
  quick: boolean;
  machine: MachineInfo;
  fleet: FleetSettings & { ceilingTps: number };
  endpointConcurrency: number;
  fetchLimit: number | null;
  /** tasks of the side-by-side run and of each sweep point (seed lines x trials) */
  tasks: number;
  sweepTasks: number;
  /** tasks per seed line */
  trials?: number;
  /** the workflow's options, the same in every mode */
  options?: Record<string, unknown>;
  /** the matrixd mode's request priority policy */
  priority?: Priority;
  /** the environment service every mode opened (driver, capacity), or null */
  envs?: { driver: string; capacity: number } | null;
  /** the side-by-side run, matrixd first */
  modes: ModeResult[];
  /** every sweep point of the baselines */
  sweep: ModeResult[];
  scale: ScaleResults | undefined;
  warnings: string[];
}

/**
 * Quality must not depend on the mode: warn when a mode's metric differs from
 * the first mode's by more than three standard errors (or when rows are missing).
 */
export function qualityWarnings(modes: ModeResult[]): string[] {
  const out: string[] = [];
  const ref = modes[0];
  for (const m of modes) {
    if (m.distinct !== m.seeds) out.push(`${m.mode}: ${m.distinct} distinct rows for ${m.seeds} seeds`);
    if (m.exitCode !== 0) out.push(`${m.mode}: exited ${m.exitCode}`);
    if (!ref || m === ref || m.quality === null || ref.quality === null) continue;
    const n1 = ref.qualityN;
    const n2 = m.qualityN;
    const p = (ref.quality * n1 + m.quality * n2) / Math.max(1, n1 + n2);
    const se = Math.sqrt(Math.max(p * (1 - p), 1e-12) * (1 / Math.max(1, n1) + 1 / Math.max(1, n2)));
    const diff = m.quality - ref.quality;
    if (Math.abs(diff) > 3 * se) {
      out.push(
        `${m.mode}: ${m.qualityName} ${m.quality.toFixed(4)} differs from ${ref.mode}'s ${ref.quality.toFixed(4)} by more than noise (3 x ${se.toFixed(4)})`,
      );
    }
  }
  return out;
}

const f0 = (x: number) => (Number.isFinite(x) ? x.toFixed(0) : "-");
const f1 = (x: number) => (Number.isFinite(x) ? x.toFixed(1) : "-");
const f2 = (x: number) => (Number.isFinite(x) ? x.toFixed(2) : "-");
const f3 = (x: number) => (Number.isFinite(x) ? x.toFixed(3) : "-");

function modeRows(r: BenchResults): string[][] {
  const baselines = r.modes.filter((m) => m.mode !== "matrixd");
  const head = [
    "mode",
    "setting",
    "tokens/s",
    "prompt tokens/s",
    "tasks/s",
    "utilization",
    "util. to 90%",
    ...baselines.map((b) => `x ${b.mode}`),
    "wall s",
    "drain s",
    "bound s",
    "wall / bound",
    "prefill share",
    "p50 s",
    "p99 s",
    "peak RSS MiB",
    "CPU s",
    "CPU µs/call",
    "hops/s",
    r.modes[0]?.qualityName ?? "quality",
    "rows",
  ];
  const rows = r.modes.map((m) => [
    MODE_TITLES[m.mode],
    m.label,
    f0(m.tokensPerS),
    f0(m.promptTokens / m.wallS),
    f1(m.tasksPerS),
    f3(m.utilization),
    f3(m.utilization90),
    ...baselines.map((b) => f2(m.tokensPerS / b.tokensPerS)),
    f1(m.wallS),
    f1(m.drainS),
    f1(m.boundS),
    f2(m.wallS / m.boundS),
    f3(m.prefillS / m.wallS),
    f1(m.latencyP50S),
    f1(m.latencyP99S),
    m.redisRssMiB === undefined ? f0(m.peakRssMiB) : `${f0(m.peakRssMiB)} + redis ${f0(m.redisRssMiB)}`,
    m.redisCpuS === undefined ? f1(m.cpuS) : `${f1(m.cpuS)} (redis ${f1(m.redisCpuS)})`,
    f0(m.cpuMicrosPerCall),
    f0(m.hopsPerS),
    m.quality === null ? "-" : f3(m.quality),
    `${m.distinct}/${m.seeds}`,
  ]);
  return [head, ...rows];
}

function sweepRows(r: BenchResults): string[][] {
  const head = ["mode", "setting", "tokens/s", "utilization", "util. to 90%", "tasks/s", "p50 s", "p99 s", "rows", "chosen"];
  const chosen = new Set(r.modes.map((m) => `${m.mode} ${m.label}`));
  return [
    head,
    ...r.sweep.map((m) => [
      MODE_TITLES[m.mode],
      m.label,
      f0(m.tokensPerS),
      f3(m.utilization),
      f3(m.utilization90),
      f1(m.tasksPerS),
      f1(m.latencyP50S),
      f1(m.latencyP99S),
      `${m.distinct}/${m.seeds}`,
      chosen.has(`${m.mode} ${m.label}`) ? "yes" : "",
    ]),
  ];
}

function scaleRows(s: ScaleResults): string[][] {
  return [["figure", "value", "goal", "met"], ...s.figures.map((x) => [x.name, x.value, x.goal ?? "", x.met === undefined ? "" : x.met ? "yes" : "no"])];
}

/** A Markdown table; the first row is the head. */
export function markdownTable(rows: string[][]): string {
  const [head, ...body] = rows;
  if (!head) return "";
  return [`| ${head.join(" | ")} |`, `|${head.map(() => "---").join("|")}|`, ...body.map((r) => `| ${r.join(" | ")} |`)].join("\n");
}

/** A plain-text table with padded columns; the first row is the head. */
export function textTable(rows: string[][]): string {
  const widths = rows[0]?.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? "").length))) ?? [];
  return rows.map((r) => r.map((c, i) => c.padEnd(widths[i] ?? 0)).join("  ").trimEnd()).join("\n");
}

/** "4 x 64 slots", or "3 x 32 slots (small 1, large 2)" when the servers serve models by name. */
export function fleetLabel(fl: FleetSettings): string {
  const models = fl.models ? ` (${Object.entries(fl.models).map(([m, n]) => `${m} ${n}`).join(", ")})` : "";
  return `${fl.servers} x ${fl.slots} slots${models}`;
}

function setupLine(r: BenchResults): string {
  const m = r.machine;
  const fl = r.fleet;
  const trials = (r.trials ?? 1) > 1 ? ` (${r.trials} trials of each seed)` : "";
  const envs = r.envs ? `; ${r.envs.capacity} ${r.envs.driver} environments per mode` : "";
  return (
    `${r.scenario}, ${r.tasks} tasks${trials}; fleet ${fleetLabel(fl)}, ceiling ${f0(fl.ceilingTps)} tokens/s${envs}; ` +
    `LLM client cap ${r.endpointConcurrency} per endpoint${r.fetchLimit ? `, BUN_CONFIG_MAX_HTTP_REQUESTS=${r.fetchLimit}` : ""}. ` +
    `${m.date.slice(0, 10)}, ${m.cpu}, ${m.cores} cores, ${m.ramGiB} GiB, commit ${m.commit}${m.dirty ? " (+ local changes)" : ""}`
  );
}

export function renderTable(r: BenchResults): string {
  const parts = [setupLine(r), "", textTable(modeRows(r))];
  if (r.scale) parts.push("", textTable(scaleRows(r.scale)));
  return parts.join("\n");
}

export function renderMarkdown(r: BenchResults, svgName = "latest.svg"): string {
  const parts = [
    `# matrixd benchmark: ${r.scenario}${r.quick ? " (quick)" : ""}`,
    "",
    setupLine(r),
    "",
    "Utilization = tokens generated (read from the sim servers' /metrics) / (fleet ceiling x wall time of the mode's process). " +
      "Util. to 90% is the same over the time until 90% of the mode's tokens were generated (the fleet's counters read every 0.5 s): " +
      `the bulk of the job, without the drain at its end, when only the longest tasks are left (p99 task latency ${f1(r.modes[0]?.latencyP99S ?? Number.NaN)} s here). ` +
      "Drain = the time from 90% of the mode's tokens to its end. Bound = a lower bound on the wall time of this work on this fleet, from the run itself: " +
      "the longer of (its generated tokens / the fleet ceiling + the prefill time of the prompt tokens the servers computed, per server) and " +
      "(its longest task's generated tokens / the speed of one sequence on an idle server), since a task's calls run one after the other; tools and " +
      "per-request costs only add to it, so wall / bound is how far the mode is from the best possible schedule, at most. Prefill share = that prefill " +
      "time / wall time: the part of the ceiling no schedule can turn into generated tokens. matrixd sends each request its task's priority (the oldest task first, in its own queue and, the servers scheduling by " +
      "priority as vLLM does with --scheduling-policy priority, in theirs); matrixd, no priority, sends none and queues in arrival order, as the baselines do. " +
      "CPU µs/call = the CPU time of the mode's process(es) / the LLM requests the servers got. " +
      "The ratios (x mode) are of tokens/s over the whole run. Latency is from a task's first step to its row. Peak RSS and CPU seconds are of the mode's own process " +
      "(for the job queue, redis-server's are shown beside). Hops/s counts steps (one hop each). " +
      "Tokens/s are generated tokens; prompt tokens/s, the prompt tokens the servers were sent, the same way.",
    "",
    markdownTable(modeRows(r)),
    "",
    `![utilization per mode](${svgName})`,
    "",
    `## Sweep (${r.sweepTasks} tasks each; each mode's setting with the most tokens/s is chosen)`,
    "",
    r.sweep.length ? markdownTable(sweepRows(r)) : "(no sweep)",
  ];
  if (r.scale) parts.push("", "## Scale", "", markdownTable(scaleRows(r.scale)), ...r.scale.notes.map((n) => `\n${n}`));
  if (r.warnings.length) parts.push("", "## Warnings", "", ...r.warnings.map((w) => `- ${w}`));
  return `${parts.join("\n")}\n`;
}

function esc(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

/** Horizontal bars: utilization of each mode against the fleet ceiling (1.0). */
export function renderSvg(r: BenchResults): string {
  const bars = r.modes.map((m) => ({
    label: `${MODE_TITLES[m.mode]} (${m.label})`,
    value: m.utilization,
    bulk: m.utilization90,
    matrixd: m.mode === "matrixd",
  }));
  const left = 250;
  const width = 820;
  const plotW = width - left - 70;
  const rowH = 44;
  const top = 56;
  const height = top + bars.length * rowH + 48;
  const x = (v: number) => left + Math.max(0, Math.min(1.05, v)) * plotW;
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="13">`,
    `<rect width="${width}" height="${height}" fill="#fff"/>`,
    `<text x="${left}" y="22" font-size="15" font-weight="bold">${esc(`${r.scenario}: utilization of the fleet ceiling (${f0(r.fleet.ceilingTps)} tokens/s)`)}</text>`,
    `<text x="${left}" y="40" fill="#555">${esc(`${r.tasks} tasks, ${fleetLabel(r.fleet)}, ${r.machine.date.slice(0, 10)}, ${r.machine.cores} cores`)}</text>`,
  ];
  for (const t of [0, 0.25, 0.5, 0.75, 1]) {
    const gx = x(t).toFixed(1);
    out.push(`<line x1="${gx}" y1="${top - 4}" x2="${gx}" y2="${top + bars.length * rowH}" stroke="${t === 1 ? "#333" : "#ddd"}"${t === 1 ? ' stroke-dasharray="4 3"' : ""}/>`);
    out.push(`<text x="${gx}" y="${top + bars.length * rowH + 18}" text-anchor="middle" fill="#555">${t.toFixed(2)}</text>`);
  }
  bars.forEach((b, i) => {
    const y = top + i * rowH;
    out.push(`<text x="${left - 8}" y="${y + rowH / 2 + 4}" text-anchor="end">${esc(b.label)}</text>`);
    out.push(`<rect x="${left}" y="${y + 5}" width="${(x(b.value) - left).toFixed(1)}" height="16" fill="${b.matrixd ? "#2f6fdf" : "#7d8a99"}"/>`);
    out.push(`<text x="${(x(b.value) + 6).toFixed(1)}" y="${y + 18}">${f3(b.value)}</text>`);
    if (Number.isFinite(b.bulk)) {
      out.push(`<rect x="${left}" y="${y + 23}" width="${(x(b.bulk) - left).toFixed(1)}" height="14" fill="${b.matrixd ? "#9dbcf2" : "#c9d0d8"}"/>`);
      out.push(`<text x="${(x(b.bulk) + 6).toFixed(1)}" y="${y + 35}" fill="#555">${f3(b.bulk)}</text>`);
    }
  });
  out.push(
    `<text x="${left + plotW / 2}" y="${height - 6}" text-anchor="middle" fill="#555">generated tokens / (ceiling x wall time): whole run (dark), until 90% of the tokens (light)</text>`,
  );
  out.push("</svg>");
  return `${out.join("\n")}\n`;
}
