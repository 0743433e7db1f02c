import type { RunProgress } from "./run.ts";

function rate(n: number, seconds: number): string {
  const r = seconds > 0 ? n / seconds : 0;
  return r >= 100 ? r.toFixed(0) : r.toFixed(1);
}

function duration(s: number): string {
  if (!Number.isFinite(s)) return "?";
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = Math.floor(s % 60);
  return h ? `${h}h${String(m).padStart(2, "0")}m` : m ? `${m}m${String(sec).padStart(2, "0")}s` : `${sec}s`;
}

/** One progress line, every figure labelled: done, failed, in flight, tasks/s, tokens/s, share done, ETA, elapsed. */
export function formatProgress(p: RunProgress, total: number | undefined, now = Date.now()): string {
  const secs = (now - p.startedAt) / 1000;
  const thisRun = p.done - p.resumed;
  const tokens = p.stats.promptTokens + p.stats.completionTokens;
  const tps = secs > 0 ? thisRun / secs : 0;
  let eta = "";
  if (total !== undefined && total > 0) {
    const left = Math.max(0, total - p.done);
    const pct = Math.min(100, (100 * p.done) / total).toFixed(1);
    eta = `${pct}% done, ETA ${tps > 0 ? duration(left / tps) : "?"}, `;
  }
  return (
    `done ${p.done}${total !== undefined ? `/${total}` : ""} (ok ${p.ok}, failed ${p.failed}), ` +
    `in flight ${p.inFlight} | ${rate(thisRun, secs)} tasks/s, ${rate(p.stats.completionTokens, secs)} gen tok/s, ` +
    `${rate(tokens, secs)} tok/s all, ${rate(p.stats.hops, secs)} hops/s | ${eta}elapsed ${duration(secs)}`
  );
}
