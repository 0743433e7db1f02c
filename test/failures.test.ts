import { describe, expect, test } from "bun:test";
import { addFailedTask, failureReason, MAX_REASONS, mergeFailures, OTHER_REASONS, topFailures } from "../src/engine/failures.ts";
import { addRow, addTally, emptyTally } from "../src/engine/metrics.ts";
import { JobTallySchema, type FailureTally } from "../src/protocol/job.ts";

describe("failures", () => {
  test("failures - one reason for the same error of every task, whatever its numbers, ids, ports and quoted values", () => {
    const a = failureReason("connection refused after 7 attempts to http://127.0.0.1:4312/v1", "t-1");
    const b = failureReason("connection refused after 12 attempts to http://127.0.0.1:39001/v1/chat?x=1", "t-2");
    expect(a).toBe("connection refused after N attempts to http://127.0.0.1:N/v1");
    expect(b).toBe("connection refused after N attempts to http://127.0.0.1:N/v1/chat");
    expect(failureReason('step timed out after 120000ms on task s-3fa2b9c01d77 (seed "what is 2+2?")')).toBe(
      failureReason('step timed out after 90ms on task s-0011aa22bb33 (seed "how far is the moon?")'),
    );
    expect(failureReason("task job-1:a9 failed", "job-1:a9")).toBe("task <task> failed");
    expect(failureReason("request 1b4e28ba-2fa1-11d2-883f-0016d3cca427 refused")).toBe("request <id> refused");
    // a field's name stays: it is what the reason is about
    expect(failureReason('seed line 12: "question" must be a string')).toBe('seed line N: "question" must be a string');
    expect(failureReason('model "gpt-4o" is not served')).toBe('model "…" is not served');
    expect(failureReason("LLM request failed after 1 attempt: http://127.0.0.1:4312/v1 answered 429 Too Many Requests")).toBe(
      "LLM request failed after N attempt: http://127.0.0.1:N/v1 answered 429 Too Many Requests",
    );
    expect(failureReason("first line 3\n  at stack 44")).toBe("first line N");
    expect(failureReason("")).toBe("no error given");
    expect(failureReason("x".repeat(500)).length).toBeLessThanOrEqual(200);
  });

  test("failures - a tally keeps at most MAX_REASONS reasons, counts the rest under other reasons, with one example each", () => {
    const t: FailureTally = {};
    for (let i = 0; i < 1000; i++) addFailedTask(t, `task-${i}`, `connection refused after ${i % 7} attempts to http://127.0.0.1:${4000 + i}/v1`);
    for (let k = 0; k < 30; k++) addFailedTask(t, `x-${k}`, `reason kind ${String.fromCharCode(97 + (k % 26))}${String.fromCharCode(97 + Math.floor(k / 26))} broke`);
    expect(Object.keys(t).length).toBe(MAX_REASONS + 1);
    const top = topFailures(t);
    expect(top.length).toBe(10);
    expect(top[0]).toEqual({ reason: "connection refused after N attempts to http://127.0.0.1:N/v1", count: 1000, task: "task-0", error: "connection refused after 0 attempts to http://127.0.0.1:4000/v1" });
    expect(t[OTHER_REASONS]?.count).toBe(30 - (MAX_REASONS - 1));
    const total = Object.values(t).reduce((s, f) => s + f.count, 0);
    expect(total).toBe(1030);
    // counts are sorted most first
    for (let i = 1; i < top.length; i++) expect(top[i - 1]!.count).toBeGreaterThanOrEqual(top[i]!.count);
  });

  test("failures - tallies of several nodes add up by reason and stay bounded; the tally schema keeps them", () => {
    const a = emptyTally();
    const b = emptyTally();
    for (let i = 0; i < 5; i++) addRow(a, { status: "failed", id: `a${i}`, error: `LLM answered 503 after ${i} tries` }, []);
    addRow(a, { status: "ok", id: "ok1" }, []);
    for (let i = 0; i < 3; i++) addRow(b, { status: "failed", id: `b${i}`, error: `LLM answered 503 after ${i + 9} tries` }, []);
    addRow(b, { status: "failed", id: "b9", error: "no env driver" }, []);
    const sum = emptyTally();
    addTally(sum, JobTallySchema.parse(JSON.parse(JSON.stringify(a))));
    addTally(sum, b);
    expect(sum.failed).toBe(9);
    expect(topFailures(sum.failures)).toEqual([
      { reason: "LLM answered 503 after N tries", count: 8, task: "a0", error: "LLM answered 503 after 0 tries" },
      { reason: "no env driver", count: 1, task: "b9", error: "no env driver" },
    ]);
    expect(emptyTally().failures).toBeUndefined();
    const many: FailureTally = {};
    for (let n = 0; n < 3; n++) {
      const other: FailureTally = {};
      for (let k = 0; k < 15; k++) addFailedTask(other, `n${n}-${k}`, `kind ${String.fromCharCode(97 + n)}${String.fromCharCode(97 + k)}`);
      mergeFailures(many, other);
    }
    expect(Object.keys(many).length).toBe(MAX_REASONS + 1);
    expect(Object.values(many).reduce((s, f) => s + f.count, 0)).toBe(45);
  });
});
