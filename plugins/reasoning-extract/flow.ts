import { z } from "zod";
import { numeric } from "../../src/engine/metrics.ts";
import type { Metric, TaskView } from "../../src/plugin/api.ts";
import type { Scores } from "./prompts.ts";

/** A web document as crawled: its text, where it came from, and the crawler's language tag. */
export const DocSeedSchema = z.looseObject({
  id: z.union([z.string(), z.number()]).optional(),
  text: z.string(),
  url: z.string().optional(),
  /** the crawler's language tag; the text is checked as well */
  lang: z.string().optional(),
});
export type DocSeed = z.infer<typeof DocSeedSchema>;

/** The stages, in order; a document stops at the first it does not pass. */
export const STAGES = ["lang-filter", "filter", "score", "question"] as const;
export type Stage = (typeof STAGES)[number];

/** What the task keeps between stages. */
export interface ExtractVars {
  /** stages passed so far, 0 to 4 */
  passed: number;
  /** set when a stage dropped the document */
  stopped?: { stage: Stage; reason: string };
  /** the language the text check found */
  detected?: string;
  scores?: Scores;
  overall?: number;
  /** calls the score stage made, 1 when its first reply was valid */
  scoreTries?: number;
  question?: string;
  reference?: string;
  answer?: string;
}

/** A document's task as the stages see it. */
export type ExtractState = TaskView<DocSeed, ExtractVars>;

/** Variables that record a passed stage. */
export function pass(state: ExtractState, more: Partial<ExtractVars> = {}): Partial<ExtractVars> {
  return { ...more, passed: state.vars.passed + 1 };
}

/** Variables that record a dropped document. */
export function drop(stage: Stage, reason: string, more: Partial<ExtractVars> = {}): Partial<ExtractVars> {
  return { ...more, stopped: { stage, reason } };
}

/** The stage after `ran`, or null when the document was dropped or every stage passed. */
export function nextStage(state: ExtractState, ran: string): string | null {
  const i = STAGES.indexOf(ran as Stage);
  if (i < 0) throw new Error(`unknown role "${ran}"`);
  if (state.vars.stopped) return null;
  return STAGES[i + 1] ?? null;
}

/** Metric key of a stage: `lang_filter`, `filter`... */
function key(stage: Stage): string {
  return stage.replace("-", "_");
}

/**
 * The row: the question and answer with the scores, or where and why the
 * document stopped. Metrics say, per stage, whether the document reached it
 * and whether it passed.
 */
export function extractOutput(state: ExtractState): { output: unknown; metrics: Record<string, unknown> } {
  const v = state.vars;
  const seed = state.seed;
  const metrics: Record<string, unknown> = { stages_passed: v.passed, yield: v.passed === STAGES.length };
  // A document that is not dropped passes every stage it reaches; only ok rows count in the means.
  STAGES.forEach((stage, i) => {
    const reached = v.passed >= i;
    metrics[`reached_${key(stage)}`] = reached;
    if (reached) metrics[`passed_${key(stage)}`] = v.passed > i;
  });
  if (v.scoreTries !== undefined) metrics.score_tries = v.scoreTries;
  const output = {
    url: seed.url ?? null,
    stopped_at: v.stopped?.stage ?? null,
    reason: v.stopped?.reason ?? null,
    detected_lang: v.detected ?? null,
    scores: v.scores ?? null,
    overall: v.overall ?? null,
    question: v.question ?? null,
    reference: v.reference ?? null,
    answer: v.answer ?? null,
  };
  return { output, metrics };
}

/** Mean over ok rows of a boolean or number metric; other rows are left out. */
function okMean(name: string, field = name): Metric {
  return { name, of: (m, status) => (status === "ok" ? numeric(m, field) : undefined) };
}

/**
 * The funnel: end-to-end yield first, then for each stage the share of
 * documents that reached it and the share of those that passed it.
 */
export const extractMetrics: Metric[] = [
  okMean("yield"),
  ...STAGES.flatMap((stage) => [okMean(`${key(stage)}.reached`, `reached_${key(stage)}`), okMean(`${key(stage)}.passed`, `passed_${key(stage)}`)]),
  okMean("score_tries"),
];
