import { afterEach, describe, expect, test } from "bun:test";
import { Accounting } from "../src/engine/accounting.ts";
import { BudgetSchema } from "../src/protocol/job.ts";
import { PromWriter } from "../src/metrics/text.ts";
import { type LlmClientImpl, QUEUE_FACTOR, createLlmClient, llmCapacity } from "../src/llm/index.ts";

const call = (prompt: number, completion: number, model = "big", endpoint = "http://a:1/v1") => ({
  usage: { prompt, completion },
  model,
  endpoint,
});

describe("llm accounting", () => {
  test("llm accounting - counts by job, role, model and endpoint, with cost from prices", () => {
    const a = new Accounting({ big: { prompt: 1, completion: 4 } });
    a.add("j1", "teacher", call(1000, 100));
    a.add("j1", "teacher", call(2000, 200, "big", "http://b:1/v1"));
    a.add("j1", "extractor", call(500, 1, "small"));
    a.add("j2", "teacher", call(7, 7));
    const r = a.report("j1");
    expect(r.total).toEqual({ requests: 3, promptTokens: 3500, completionTokens: 301, cost: (3000 * 1 + 300 * 4) / 1e6 });
    expect(r.byRole.teacher?.requests).toBe(2);
    expect(r.byRole.extractor?.promptTokens).toBe(500);
    expect(r.byModel.small?.cost).toBe(0);
    expect(r.byEndpoint["http://b:1/v1"]?.completionTokens).toBe(200);
    expect(r.unpriced).toEqual(["small"]);
    expect(a.total("j2").requests).toBe(1);
    expect(a.jobs().sort()).toEqual(["j1", "j2"]);
  });

  test("llm accounting - a budget of tokens or dollars is reached once and says how far", () => {
    const a = new Accounting({ big: { prompt: 10, completion: 10 } });
    a.setBudget("t", { tokens: 1000 });
    a.setBudget("c", { cost: 0.01 });
    a.add("t", "r", call(600, 300));
    expect(a.budgetReached("t")).toBeUndefined();
    a.add("t", "r", call(100, 50));
    expect(a.budgetReached("t")).toBe("budget reached: 1,050 tokens of 1,000");
    a.add("c", "r", call(999, 0));
    expect(a.budgetReached("c")).toBeUndefined();
    a.add("c", "r", call(1, 0));
    expect(a.budgetReached("c")).toBe("budget reached: $0.0100 of $0.01");
    expect(a.report("t").budgetReached).toBe("budget reached: 1,050 tokens of 1,000");
    expect(BudgetSchema.safeParse({}).success).toBe(false);
    expect(BudgetSchema.safeParse({ tokens: 0 }).success).toBe(false);
  });

  test("llm accounting - Prometheus text with labels escaped", () => {
    const a = new Accounting({ big: { prompt: 1, completion: 1 } });
    a.setBudget("j", { tokens: 10 });
    a.add("j", 'we"ird', call(3, 4));
    a.add("gone", "r", call(1, 1));
    const text = a.prometheus(new PromWriter('node="n"'), (job) => job !== "gone").text();
    expect(text).toContain("# TYPE matrixd_llm_requests_total counter");
    expect(text).toContain('matrixd_llm_prompt_tokens_total{node="n",job_id="j",role="we\\"ird",model="big",endpoint="http://a:1/v1"} 3');
    expect(text).toContain('matrixd_llm_completion_tokens_total{node="n",job_id="j",role="we\\"ird",model="big",endpoint="http://a:1/v1"} 4');
    expect(text).toContain("matrixd_llm_cost_dollars_total{");
    expect(text).toContain('matrixd_job_budget_reached{node="n",job_id="j"} 0');
    expect(text).not.toContain("job=");
    expect(text).not.toContain('"gone"');
    expect(new Accounting().prometheus(new PromWriter()).text()).not.toContain("cost_dollars");
  });
});

describe("llm capacity", () => {
  const clients: LlmClientImpl[] = [];
  afterEach(async () => {
    await Promise.all(clients.splice(0).map((c) => c.close()));
  });

  test("llm capacity - sums what the endpoints serving a model can run, plus a queue", () => {
    const c = createLlmClient({
      endpoints: [
        { url: "http://a:1", models: ["x"], maxConcurrency: 64 },
        { url: "http://b:1", models: ["x", "y"], maxConcurrency: 32 },
        { url: "http://c:1", models: ["y"], maxConcurrency: 256 },
      ],
    });
    clients.push(c);
    expect(llmCapacity(c, "x")).toBe(Math.ceil(96 * QUEUE_FACTOR));
    expect(llmCapacity(c, "y", 1)).toBe(288);
    expect(llmCapacity(c, undefined, 1)).toBe(352);
    // the servers' own slots, when their metrics say, bound what they run
    c.reportLoad("http://c:1/v1", { running: 0, waiting: 0, slots: 16 });
    expect(llmCapacity(c, "y", 1)).toBe(48);
    // an endpoint reported down does not count while another is up
    c.setHealth("http://b:1/v1", false);
    expect(llmCapacity(c, "y", 1)).toBe(16);
    expect(llmCapacity(c, "nothing")).toBe(1);
  });
});
