import { z } from "zod";
import type { ChatMessage } from "../../src/llm/types.ts";
import { excerpt, lastBoxed } from "../../src/util/text.ts";

/**
 * The three LLM stages' prompts and the parsers of their replies. The first
 * sentence of each system prompt is also what the simulated model keys on
 * (src/sim/skills/reasoning-extract.ts), so change both together.
 */

export const FILTER_SYSTEM =
  "Does the text below show advanced reasoning? " +
  "Advanced reasoning means multi-step arguments, derivations, proofs, quantitative problem solving or careful causal explanation; " +
  "stories, news, listings, advertising and boilerplate do not count. Answer with one word: Yes or No.";

export const SCORE_SYSTEM =
  "Score the document below on these criteria. " +
  "Each criterion is an integer from 1 (poor) to 5 (excellent): " +
  "reasoning_depth (how many connected reasoning steps it contains), " +
  "problem_complexity (how hard the problems or questions it treats are), " +
  "technical_correctness (whether its statements and steps are right), " +
  "educational_value (how much a student would learn from it). " +
  'Reply with only a JSON object: {"reasoning_depth": n, "problem_complexity": n, "technical_correctness": n, "educational_value": n, "justification": "one sentence"}.';

export const QUESTION_SYSTEM =
  "From the document below, write one self-contained question that needs several reasoning steps to answer. " +
  "A reader who has not seen the document must be able to answer it: state every fact and number it needs, " +
  "and do not mention the document, the text or the author. " +
  "Then write a reference answer that works the question out and ends with the final answer in \\boxed{...}. " +
  "Reply in exactly this form:\nQuestion: <the question>\nAnswer: <the reference answer, ending with \\boxed{final answer}>";

/** One criterion score. */
const Criterion = z.number().int().min(1).max(5);

/** The score stage's reply: checked field by field, out-of-range values refused. */
export const ScoresSchema = z.object({
  reasoning_depth: Criterion,
  problem_complexity: Criterion,
  technical_correctness: Criterion,
  educational_value: Criterion,
  justification: z.string().max(2000).optional(),
});
export type Scores = z.infer<typeof ScoresSchema>;

export const CRITERIA = ["reasoning_depth", "problem_complexity", "technical_correctness", "educational_value"] as const;

/** The JSON schema sent as `response_format`, so servers with guided decoding keep to it. */
export const SCORES_RESPONSE_FORMAT = {
  type: "json_schema",
  json_schema: { name: "document_scores", schema: z.toJSONSchema(ScoresSchema) },
} as const;

/** The mean of the criteria, rounded to two decimals. */
export function overallScore(s: Scores): number {
  const sum = CRITERIA.reduce((acc, k) => acc + s[k], 0);
  return Math.round((sum / CRITERIA.length) * 100) / 100;
}

/** The document as the prompts show it: cut at a word boundary past `maxChars` (`excerpt`), since a small filter model's context is short and the opening pages are what tells whether a document reasons. */
export { excerpt };

/** Messages of one stage: its instructions, then the document. */
export function stageMessages(system: string, doc: string): ChatMessage[] {
  return [
    { role: "system", content: system },
    { role: "user", content: doc },
  ];
}

/** The filter's verdict: true for Yes, false for No, undefined when the reply is neither. */
export function parseYesNo(reply: string): boolean | undefined {
  const first = /^[\s*"'`(]*(yes|no)\b/i.exec(reply);
  if (first) return (first[1] as string).toLowerCase() === "yes";
  // A model that explains first puts its verdict last.
  const all = [...reply.matchAll(/\b(yes|no)\b/gi)];
  const last = all[all.length - 1];
  return last ? (last[1] as string).toLowerCase() === "yes" : undefined;
}

/** What the question stage produced, or why it is not usable. */
export type QuestionReply =
  | { ok: true; question: string; reference: string; answer: string }
  | { ok: false; reason: string };

export { lastBoxed };

// Phrases that tie a question to a page the reader never sees.
const NOT_SELF_CONTAINED = /\b(the|this|above|given) (document|text|passage|article|author)\b|\baccording to the\b/i;

/**
 * Reads `Question: ... Answer: ... \boxed{...}` from the question stage's
 * reply; the last `Question:` counts, since a model may think aloud first.
 */
export function parseQuestion(reply: string): QuestionReply {
  const q = reply.lastIndexOf("Question:");
  if (q < 0) return { ok: false, reason: "no question in the reply" };
  const a = reply.indexOf("Answer:", q);
  const question = reply.slice(q + "Question:".length, a < 0 ? undefined : a).trim();
  if (question.length === 0) return { ok: false, reason: "the question is empty" };
  if (a < 0) return { ok: false, reason: "no reference answer in the reply" };
  const reference = reply.slice(a + "Answer:".length).trim();
  const answer = lastBoxed(reference);
  if (answer === undefined || answer.length === 0) return { ok: false, reason: "no \\boxed{} final answer in the reply" };
  if (NOT_SELF_CONTAINED.test(question)) return { ok: false, reason: "the question is not self-contained (it refers to the document)" };
  return { ok: true, question, reference, answer };
}
