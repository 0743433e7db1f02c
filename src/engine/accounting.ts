import { z } from "zod";
import { label, type PromWriter } from "../metrics/text.ts";
import type { Budget } from "../protocol/job.ts";

/**
 * Token accounting: requests, prompt and completion tokens of the LLM calls
 * the engine's agents make, by job, role, model and endpoint (per task they
 * are on each row's turns), with an optional price per model giving cost,
 * and per-job budgets after which a job admits no new tasks.
 */

/** Price of a model in dollars per million tokens. */
export const PriceSchema = z.strictObject({
  prompt: z.number().min(0),
  completion: z.number().min(0),
});
export type Price = z.infer<typeof PriceSchema>;

/** Prices by model name (config `prices: { model: { prompt, completion } }`). */
export const PricesSchema = z.record(z.string().min(1), PriceSchema);
export type Prices = z.infer<typeof PricesSchema>;


/** Counters of one slice (a job, a role, a model, an endpoint). */
export interface UsageTotals {
  requests: number;
  promptTokens: number;
  completionTokens: number;
  /** dollars, from the prices of the models used (0 for a model without a price) */
  cost: number;
}

/** One LLM call as the engine saw it answered. */
export interface UsageRecord {
  usage: { prompt: number; completion: number };
  model: string;
  endpoint: string;
}

/** The accounts of one job, as plain data (summaries, status, JSON). */
export interface AccountingReport {
  job: string;
  total: UsageTotals;
  byRole: Record<string, UsageTotals>;
  byModel: Record<string, UsageTotals>;
  byEndpoint: Record<string, UsageTotals>;
  /** models used that have no price (their calls count no cost) */
  unpriced: string[];
  budget?: Budget;
  /** why the job stopped admitting tasks, once its budget is reached */
  budgetReached?: string;
}

/** One (job, role, model, endpoint) cell. */
interface Cell extends UsageTotals {
  job: string;
  role: string;
  model: string;
  endpoint: string;
}

function zero(): UsageTotals {
  return { requests: 0, promptTokens: 0, completionTokens: 0, cost: 0 };
}

function addTo(t: UsageTotals, prompt: number, completion: number, cost: number): void {
  t.requests++;
  t.promptTokens += prompt;
  t.completionTokens += completion;
  t.cost += cost;
}

/**
 * The accounts of a node: fed by the engine with each answered LLM call,
 * read by summaries, status and `/metrics`.
 *
 * @example
 * ```ts
 * const acct = new Accounting({ "llama-3-8b": { prompt: 0.05, completion: 0.25 } });
 * acct.setBudget("job-1", { tokens: 1_000_000 });
 * acct.add("job-1", "teacher", { usage: { prompt: 900, completion: 120 }, model: "llama-3-8b", endpoint: "http://gpu1:8000/v1" });
 * acct.report("job-1").byRole.teacher; // { requests: 1, promptTokens: 900, completionTokens: 120, cost: 0.000075 }
 * acct.budgetReached("job-1"); // undefined until 1M tokens
 * ```
 */
export class Accounting {
  readonly #cells = new Map<string, Cell>();
  readonly #jobs = new Map<string, UsageTotals>();
  readonly #budgets = new Map<string, Budget>();
  readonly #reached = new Map<string, string>();
  readonly #prices: Prices;

  constructor(prices: Prices = {}) {
    this.#prices = prices;
  }

  /** Give a job a budget (replacing any earlier one). */
  setBudget(job: string, budget: Budget | undefined): void {
    if (budget) this.#budgets.set(job, budget);
    else this.#budgets.delete(job);
    this.#reached.delete(job);
    this.#check(job);
  }

  /** Count one answered LLM call of a job's role. */
  add(job: string, role: string, r: UsageRecord): void {
    const prompt = r.usage.prompt;
    const completion = r.usage.completion;
    const price = this.#prices[r.model];
    const cost = price ? (prompt * price.prompt + completion * price.completion) / 1e6 : 0;
    const key = `${job}\u0000${role}\u0000${r.model}\u0000${r.endpoint}`;
    let cell = this.#cells.get(key);
    if (cell === undefined) {
      cell = { job, role, model: r.model, endpoint: r.endpoint, ...zero() };
      this.#cells.set(key, cell);
    }
    addTo(cell, prompt, completion, cost);
    let total = this.#jobs.get(job);
    if (total === undefined) {
      total = zero();
      this.#jobs.set(job, total);
    }
    addTo(total, prompt, completion, cost);
    if (this.#budgets.has(job)) this.#check(job);
  }

  /** A job's totals (zeros for a job with no call yet). */
  total(job: string): UsageTotals {
    return { ...(this.#jobs.get(job) ?? zero()) };
  }

  /**
   * Why the job may admit no more tasks, e.g. `budget reached: 1,000,412
   * tokens of 1,000,000`; undefined while it is within its budget.
   */
  budgetReached(job: string): string | undefined {
    return this.#reached.get(job);
  }

  /** The jobs with calls counted. */
  jobs(): string[] {
    return [...this.#jobs.keys()];
  }

  /** One job's accounts by role, model and endpoint. */
  report(job: string): AccountingReport {
    const byRole: Record<string, UsageTotals> = {};
    const byModel: Record<string, UsageTotals> = {};
    const byEndpoint: Record<string, UsageTotals> = {};
    const unpriced = new Set<string>();
    for (const c of this.#cells.values()) {
      if (c.job !== job) continue;
      merge((byRole[c.role] ??= zero()), c);
      merge((byModel[c.model] ??= zero()), c);
      merge((byEndpoint[c.endpoint] ??= zero()), c);
      if (!this.#prices[c.model]) unpriced.add(c.model);
    }
    const out: AccountingReport = { job, total: this.total(job), byRole, byModel, byEndpoint, unpriced: [...unpriced].sort() };
    const budget = this.#budgets.get(job);
    if (budget) out.budget = budget;
    const reached = this.#reached.get(job);
    if (reached) out.budgetReached = reached;
    return out;
  }

  /**
   * Prometheus text of every cell: `matrixd_llm_requests_total`,
   * `matrixd_llm_prompt_tokens_total`, `matrixd_llm_completion_tokens_total`
   * and, with prices, `matrixd_llm_cost_dollars_total`, labelled by job,
   * role, model and endpoint; `matrixd_job_budget_reached` per job with a
   * budget.
   */
  /**
   * The accounts as Prometheus families, written into `w` (whose base
   * labels name the node): by job (`job_id`), role, model and endpoint;
   * `shown` leaves out the jobs whose series have gone (ended long ago).
   */
  prometheus(w: PromWriter, shown: (job: string) => boolean = () => true): PromWriter {
    const cells = [...this.#cells.values()].filter((c) => shown(c.job));
    const rows = cells.map((c) => [`${label("job_id", c.job)},${label("role", c.role)},${label("model", c.model)},${label("endpoint", c.endpoint)}`, c] as const);
    const family = (name: string, help: string, value: (c: Cell) => number) => w.many(name, "counter", help, rows.map(([l, c]) => [l, value(c)]));
    family("matrixd_llm_requests_total", "LLM calls answered.", (c) => c.requests);
    family("matrixd_llm_prompt_tokens_total", "Prompt tokens of the LLM calls answered.", (c) => c.promptTokens);
    family("matrixd_llm_completion_tokens_total", "Completion tokens of the LLM calls answered.", (c) => c.completionTokens);
    if (Object.keys(this.#prices).length > 0) {
      family("matrixd_llm_cost_dollars_total", "Cost of the LLM calls answered, from the configured prices.", (c) => c.cost);
    }
    const budgets = [...this.#budgets.keys()].filter(shown);
    if (budgets.length > 0) {
      w.many("matrixd_job_budget_reached", "gauge", "1 once the job's budget is reached (no new tasks).", budgets.map((j) => [label("job_id", j), this.#reached.has(j) ? 1 : 0]));
    }
    return w;
  }

  #check(job: string): void {
    if (this.#reached.has(job)) return;
    const budget = this.#budgets.get(job);
    if (!budget) return;
    const t = this.#jobs.get(job) ?? zero();
    const tokens = t.promptTokens + t.completionTokens;
    if (budget.tokens !== undefined && tokens >= budget.tokens) {
      this.#reached.set(job, `budget reached: ${n(tokens)} tokens of ${n(budget.tokens)}`);
    } else if (budget.cost !== undefined && t.cost >= budget.cost) {
      this.#reached.set(job, `budget reached: $${t.cost.toFixed(4)} of $${budget.cost}`);
    }
  }
}

function merge(into: UsageTotals, c: UsageTotals): void {
  into.requests += c.requests;
  into.promptTokens += c.promptTokens;
  into.completionTokens += c.completionTokens;
  into.cost += c.cost;
}

function n(x: number): string {
  return x.toLocaleString("en-US");
}
