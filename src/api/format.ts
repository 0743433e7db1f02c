import type { JobStatus } from "../protocol/job.ts";
import type { Member } from "../protocol/member.ts";

function n(x: number): string {
  return Math.round(x).toLocaleString("en-US");
}

function rate(r: number): string {
  return r >= 100 ? r.toFixed(0) : r.toFixed(1);
}

/** 1.2k, 3.4M: token counts at a glance. */
export function short(x: number): string {
  if (x >= 1e9) return `${(x / 1e9).toFixed(1)}G`;
  if (x >= 1e6) return `${(x / 1e6).toFixed(1)}M`;
  if (x >= 1e4) return `${(x / 1e3).toFixed(1)}k`;
  return String(Math.round(x));
}

/** 42s, 3m07s, 2h05m, 3d. */
export function duration(ms: number): string {
  if (!Number.isFinite(ms)) return "?";
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
  return `${Math.floor(s / 86400)}d`;
}

function metricsText(m: Record<string, number | null> | undefined): string {
  return Object.entries(m ?? {})
    .map(([k, v]) => `${k} ${v === null ? "-" : v.toFixed(3)}`)
    .join(", ");
}

/**
 * One progress line of a job, every figure labelled: rows done of total,
 * counts, rate, tokens, share done, ETA (or, when `unchangedMs` says no
 * figure moved for a while, how long since the last change), elapsed.
 */
export function formatJobProgress(j: JobStatus, now = Date.now(), unchangedMs = 0): string {
  const done = j.ok + j.failed;
  const pct = j.total > 0 ? ((100 * done) / j.total).toFixed(1) : "100.0";
  const left = j.total - done;
  const eta =
    j.state !== "running" ? "" : unchangedMs > 0 ? `, no change for ${duration(unchangedMs)}` : `, ETA ${j.rate > 0 ? duration((1000 * left) / j.rate) : "?"}`;
  return (
    `done ${n(done)}/${n(j.total)} (ok ${n(j.ok)}, failed ${n(j.failed)}), running ${n(j.running)}, queued ${n(j.queued)} | ` +
    `${rate(j.rate)} rows/s, tokens ${short(j.promptTokens + j.completionTokens)} | ${pct}% done${eta}, elapsed ${duration(now - j.createdAt)}`
  );
}

/** A few lines about one job: state, counts, rate, tokens, metrics. */
export function formatJob(j: JobStatus, now = Date.now()): string {
  const done = j.ok + j.failed;
  const lines = [
    `job ${j.id} (${j.workflow}): ${j.state}${j.reason ? ` (${j.reason})` : ""}, accepted by ${j.acceptedBy} ${duration(now - j.createdAt)} ago`,
    `  rows ${n(done)}/${n(j.total)} (${j.total > 0 ? ((100 * done) / j.total).toFixed(1) : "100.0"}%): ok ${n(j.ok)}, failed ${n(j.failed)}; running ${n(j.running)}, queued ${n(j.queued)}`,
    `  ${rate(j.rate)} rows/s; tokens ${n(j.promptTokens + j.completionTokens)} (prompt ${n(j.promptTokens)}, completion ${n(j.completionTokens)})`,
  ];
  if (j.budget) {
    const limit = [j.budget.tokens !== undefined ? `${n(j.budget.tokens)} tokens` : "", j.budget.cost !== undefined ? `$${j.budget.cost}` : ""].filter(Boolean).join(" or ");
    const used = j.spent ? `; used ${n(j.spent.tokens)} tokens${j.spent.cost > 0 ? `, $${j.spent.cost.toFixed(4)}` : ""}` : "";
    lines.push(`  budget ${limit}${used}${j.budgetReached ? `: ${j.budgetReached}, no new tasks` : ""}`);
  }
  if (j.retry) lines.push(`  failed tasks run again: ${j.retry.tasks.toLocaleString("en-US")} in round ${j.retry.round}`);
  const m = metricsText(j.metrics);
  if (m) lines.push(`  ${m}`);
  return lines.join("\n");
}

/** Columns padded to their widest cell; a cell with newlines spans several lines; the last column is not padded. */
export function table(head: readonly string[], rows: readonly (readonly string[])[]): string {
  const split = rows.map((r) => head.map((_, i) => (r[i] ?? "").split("\n")));
  const widths = head.map((h, i) => Math.max(h.length, ...split.flatMap((r) => (r[i] as string[]).map((l) => l.length))));
  const line = (cells: readonly string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] as number)))
      .join("  ")
      .trimEnd();
  const out = [line(head)];
  for (const r of split) {
    const height = Math.max(...r.map((c) => c.length));
    for (let k = 0; k < height; k++) out.push(line(r.map((c) => c[k] ?? "")));
  }
  return out.join("\n");
}

/**
 * The members table: node, state, slot groups and roles (busy/slots
 * +queued), LLM endpoints (in flight/limit), version, age. With `active`
 * (the workflows of live jobs), only their roles are listed; the other
 * workflows are counted on one line.
 */
export function membersTable(members: readonly Member[], now = Date.now(), active?: ReadonlySet<string>): string {
  const rows = [...members]
    .sort((a, b) => a.node.localeCompare(b.node))
    .map((m) => {
      // One line per workflow: "coral: extractor 0/64, matcher 0/64, ..."
      const byWorkflow = new Map<string, string[]>();
      const idle = new Set<string>();
      for (const [key, r] of Object.entries(m.roles).sort(([a], [b]) => a.localeCompare(b))) {
        const dot = key.indexOf(".");
        const wf = dot > 0 ? key.slice(0, dot) : "";
        const role = dot > 0 ? key.slice(dot + 1) : key;
        if (active && wf && !active.has(wf)) {
          idle.add(wf);
          continue;
        }
        const list = byWorkflow.get(wf) ?? [];
        list.push(`${role} ${r.busy}/${r.slots}${r.queued ? ` +${r.queued}` : ""}`);
        byWorkflow.set(wf, list);
      }
      const lines = Object.entries(m.groups ?? {}).map(([g, v]) => `${g} slots (shared): ${v.busy}/${v.slots}`);
      for (const [wf, list] of [...byWorkflow].sort(([a], [b]) => a.localeCompare(b))) lines.push(wf ? `${wf}: ${list.join(", ")}` : list.join(", "));
      if (idle.size > 0) lines.push(`${idle.size} workflow${idle.size === 1 ? "" : "s"} with no live job`);
      const roles = lines.join("\n");
      const llm = m.services.llm
        .map((e) => `${e.url.replace(/^https?:\/\//, "")} ${e.inFlight}/${e.limit}${e.waiting ? ` +${e.waiting}` : ""}${e.healthy ? "" : " DOWN"}`)
        .join("\n");
      return [m.node, m.state, m.version, duration(now - m.startedAt), `${duration(now - m.seenAt)} ago`, roles || "-", llm || "-"];
    });
  return table(["NODE", "STATE", "VERSION", "UP", "SEEN", "ROLES (busy/slots +queued)", "LLM (in flight/limit +waiting)"], rows);
}

/** The jobs table, newest first. */
export function jobsTable(jobs: readonly JobStatus[], now = Date.now()): string {
  const rows = [...jobs]
    .sort((a, b) => b.createdAt - a.createdAt)
    .map((j) => [
      j.id,
      j.workflow,
      j.state,
      `${n(j.ok + j.failed)}/${n(j.total)}`,
      n(j.ok),
      n(j.failed),
      n(j.running),
      n(j.queued),
      rate(j.rate),
      short(j.promptTokens + j.completionTokens),
      duration(now - j.createdAt),
    ]);
  return table(["JOB", "WORKFLOW", "STATE", "ROWS", "OK", "FAILED", "RUNNING", "QUEUED", "ROWS/S", "TOKENS", "AGE"], rows);
}
