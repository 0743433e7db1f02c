import type { Timeline } from "../protocol/job.ts";

/** The narrowest bucket, ms. Every width is this times a power of two. */
export const TIMELINE_BASE_MS = 1000;
/** A timeline past this many buckets doubles its width (a job of an hour has 15 s buckets). */
export const TIMELINE_MAX_BUCKETS = 240;

/** A timeline of one row stored at `at` (epoch ms). */
function single(at: number, width: number): Timeline {
  return { start: Math.floor(at / width) * width, width, ok: [0], failed: [0], tokens: [0] };
}

/** The timeline re-binned to `width` (a multiple of its own by a power of two): buckets added up, start aligned. */
function rebin(t: Timeline, width: number): Timeline {
  if (width === t.width) return t;
  const start = Math.floor(t.start / width) * width;
  const span = t.start + t.ok.length * t.width - start;
  const n = Math.max(1, Math.ceil(span / width));
  const out: Timeline = { start, width, ok: new Array(n).fill(0), failed: new Array(n).fill(0), tokens: new Array(n).fill(0) };
  for (let i = 0; i < t.ok.length; i++) {
    const j = Math.floor((t.start + i * t.width - start) / width);
    out.ok[j] = (out.ok[j] ?? 0) + (t.ok[i] ?? 0);
    out.failed[j] = (out.failed[j] ?? 0) + (t.failed[i] ?? 0);
    out.tokens[j] = (out.tokens[j] ?? 0) + (t.tokens[i] ?? 0);
  }
  return out;
}

/** The timeline grown (and coarsened as need be) to cover [from, to): its buckets padded with zeros. */
function cover(t: Timeline, from: number, to: number): Timeline {
  const lo = Math.min(from, t.start);
  const hi = Math.max(to, t.start + t.ok.length * t.width);
  let width = t.width;
  const reach = (w: number) => Math.ceil(hi / w) - Math.floor(lo / w);
  while (reach(width) > TIMELINE_MAX_BUCKETS) width *= 2;
  const r = rebin(t, width);
  const start = Math.min(r.start, Math.floor(from / width) * width);
  const end = Math.max(r.start + r.ok.length * width, Math.ceil(to / width) * width);
  const before = (r.start - start) / width;
  const after = (end - (r.start + r.ok.length * width)) / width;
  if (before === 0 && after === 0) return r;
  const pad = (a: number[]) => [...new Array(before).fill(0), ...a, ...new Array(after).fill(0)];
  return { start, width, ok: pad(r.ok), failed: pad(r.failed), tokens: pad(r.tokens) };
}

/**
 * Count one row stored at `at` (epoch ms) into a timeline (a new one when
 * there is none); returns the timeline, which may be a new object when it
 * had to grow or coarsen.
 */
export function addToTimeline(t: Timeline | undefined, at: number, ok: boolean, tokens: number): Timeline {
  const out = t ? cover(t, at, at + 1) : single(at, TIMELINE_BASE_MS);
  const i = Math.floor((at - out.start) / out.width);
  if (ok) out.ok[i] = (out.ok[i] ?? 0) + 1;
  else out.failed[i] = (out.failed[i] ?? 0) + 1;
  out.tokens[i] = (out.tokens[i] ?? 0) + tokens;
  return out;
}

/** Two timelines added up, at the wider width of the two (or coarser, to stay within the bucket limit). */
export function sumTimelines(a: Timeline | undefined, b: Timeline | undefined): Timeline | undefined {
  if (!a || !b) return a ? copy(a) : b ? copy(b) : undefined;
  const from = Math.min(a.start, b.start);
  const to = Math.max(a.start + a.ok.length * a.width, b.start + b.ok.length * b.width);
  const base = a.width >= b.width ? a : b;
  const out = copy(cover(base, from, to));
  const other = rebin(base === a ? b : a, out.width);
  const offset = (other.start - out.start) / out.width;
  for (let i = 0; i < other.ok.length; i++) {
    const j = offset + i;
    out.ok[j] = (out.ok[j] ?? 0) + (other.ok[i] ?? 0);
    out.failed[j] = (out.failed[j] ?? 0) + (other.failed[i] ?? 0);
    out.tokens[j] = (out.tokens[j] ?? 0) + (other.tokens[i] ?? 0);
  }
  return out;
}

function copy(t: Timeline): Timeline {
  return { start: t.start, width: t.width, ok: [...t.ok], failed: [...t.failed], tokens: [...t.tokens] };
}
