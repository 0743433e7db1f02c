import { describe, expect, test } from "bun:test";
import { addRow, addTally, emptyTally } from "../src/engine/metrics.ts";
import { addToTimeline, sumTimelines, TIMELINE_BASE_MS, TIMELINE_MAX_BUCKETS } from "../src/engine/timeline.ts";
import type { Timeline } from "../src/protocol/job.ts";
import { JobTallySchema } from "../src/protocol/job.ts";

const T0 = 1_700_000_000_000;

function total(t: Timeline): { ok: number; failed: number; tokens: number } {
  const sum = (a: number[]) => a.reduce((x, y) => x + y, 0);
  return { ok: sum(t.ok), failed: sum(t.failed), tokens: sum(t.tokens) };
}

describe("engine timeline", () => {
  test("timeline - rows land in the bucket of the time they were stored", () => {
    let t: Timeline | undefined;
    t = addToTimeline(t, T0 + 100, true, 10);
    t = addToTimeline(t, T0 + 900, false, 5);
    t = addToTimeline(t, T0 + 2500, true, 7);
    expect(t.width).toBe(TIMELINE_BASE_MS);
    expect(t.start).toBe(T0);
    expect(t.ok).toEqual([1, 0, 1]);
    expect(t.failed).toEqual([1, 0, 0]);
    expect(t.tokens).toEqual([15, 0, 7]);
    // A late row from before the start grows the timeline backwards.
    t = addToTimeline(t, T0 - 1500, true, 1);
    expect(t.start).toBe(T0 - 2000);
    expect(t.ok).toEqual([1, 0, 1, 0, 1]);
  });

  test("timeline - a long job coarsens its buckets and keeps every row", () => {
    let t: Timeline | undefined;
    const n = 3000;
    for (let i = 0; i < n; i++) t = addToTimeline(t, T0 + i * 1000, i % 10 !== 0, 2);
    if (!t) throw new Error("no timeline");
    expect(t.ok.length).toBeLessThanOrEqual(TIMELINE_MAX_BUCKETS);
    expect(t.width).toBe(16 * TIMELINE_BASE_MS);
    expect(t.start % t.width).toBe(0);
    expect(total(t)).toEqual({ ok: n - n / 10, failed: n / 10, tokens: 2 * n });
  });

  test("timeline - summing two nodes' timelines re-bins to the wider width", () => {
    let a: Timeline | undefined;
    let b: Timeline | undefined;
    for (let i = 0; i < 10; i++) a = addToTimeline(a, T0 + i * 1000, true, 1);
    for (let i = 0; i < 600; i++) b = addToTimeline(b, T0 + 5000 + i * 1000, false, 3);
    if (!a || !b) throw new Error("no timeline");
    expect(b.width).toBe(4000);
    const s = sumTimelines(a, b);
    if (!s) throw new Error("no sum");
    expect(s.width).toBe(4000);
    expect(s.start).toBe(Math.floor(T0 / 4000) * 4000);
    expect(total(s)).toEqual({ ok: 10, failed: 600, tokens: 10 + 1800 });
    // The first bucket holds a's rows of its 4 s.
    const firstOk = Math.floor((T0 + 4000) / 4000) * 4000 - T0;
    expect(s.ok[0]).toBe(Math.ceil(firstOk / 1000));
    // The inputs are left as they were.
    expect(a.width).toBe(1000);
    expect(sumTimelines(undefined, undefined)).toBeUndefined();
  });

  test("timeline - tallies carry it through addRow, addTally and their schema", () => {
    const n1 = emptyTally();
    const n2 = emptyTally();
    addRow(n1, { status: "ok", usage: { prompt: 3, completion: 4 }, timings: { finished: T0 + 10 } }, []);
    addRow(n2, { status: "failed", timings: { finished: T0 + 1010 } }, []);
    addRow(n2, { status: "ok" }, []);
    const sum = emptyTally();
    addTally(sum, n1);
    addTally(sum, n2);
    expect(sum.timeline).toEqual({ start: T0, width: 1000, ok: [1, 0], failed: [0, 1], tokens: [7, 0] });
    expect(JobTallySchema.parse(JSON.parse(JSON.stringify(sum)))).toEqual(sum);
  });
});
