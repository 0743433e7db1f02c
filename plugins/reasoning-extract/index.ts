import { z } from "zod";
import { describe, LlmError } from "../../src/errors.ts";
import { type AnsweredCalls, chatJson, recordingClient, StructuredReplyError } from "../../src/llm/structured.ts";
import { defineWorkflow, llmRole, type Role, type TurnInput } from "../../src/plugin/api.ts";
import { fnv1a } from "../../src/util/hash.ts";
import { type DocSeed, DocSeedSchema, drop, type ExtractVars, extractMetrics, extractOutput, nextStage, pass } from "./flow.ts";
import { guessLanguage, isEnglishTag } from "./lang.ts";
import {
  excerpt,
  FILTER_SYSTEM,
  overallScore,
  parseQuestion,
  parseYesNo,
  QUESTION_SYSTEM,
  SCORE_SYSTEM,
  SCORES_RESPONSE_FORMAT,
  ScoresSchema,
  stageMessages,
} from "./prompts.ts";

export const ReasoningExtractConfigSchema = z.strictObject({
  /** the small model that answers Yes/No; unset asks any endpoint */
  filterModel: z.string().optional(),
  /** the large model that scores documents */
  scoreModel: z.string().optional(),
  /** the large model that writes questions */
  questionModel: z.string().optional(),
  /** least mean criterion score (1 to 5) a document needs to go on to the question stage */
  threshold: z.number().min(1).max(5).default(3.5),
  filterMaxTokens: z.number().int().positive().default(8),
  scoreMaxTokens: z.number().int().positive().default(512),
  questionMaxTokens: z.number().int().positive().default(2048),
  /** characters of the document shown to the LLM stages */
  maxDocChars: z.number().int().min(1000).default(24_000),
  /** documents with fewer words stop at the lang-filter */
  minWords: z.number().int().nonnegative().default(50),
  /** extra tries of the score stage when its reply is not valid JSON or out of range */
  scoreRetries: z.number().int().nonnegative().default(2),
  temperature: z.number().min(0).max(2).default(0.3),
});
export type ReasoningExtractConfig = z.infer<typeof ReasoningExtractConfigSchema>;
type StageRole = Role<DocSeed, ExtractVars, ReasoningExtractConfig>;

/** A per-request seed, so the same document at the same stage gets the same sampled reply. */
function requestSeed(stateId: string, trial: number, stage: string): number {
  return fnv1a(`${stateId}:${trial}:${stage}`);
}

const langFilter: StageRole = {
  kind: "cpu",
  async run(state, ctx) {
    const seed = state.seed;
    const words = seed.text.split(/\s+/).filter((w) => w.length > 0).length;
    const guess = guessLanguage(seed.text);
    const detected = { detected: guess.lang };
    const note = (verdict: string) => [{ text: `${verdict} (text looks ${guess.lang}; en/de/fr/es hits ${Object.values(guess.hits).join("/")})` }];
    if (seed.lang !== undefined && seed.lang.trim() !== "" && !isEnglishTag(seed.lang)) {
      return { turns: note("drop"), vars: drop("lang-filter", `language tag is "${seed.lang}"`, detected) };
    }
    // "unknown" is too little evidence to overrule the tag; a clear other language is not.
    if (guess.lang !== "en" && guess.lang !== "unknown") {
      return { turns: note("drop"), vars: drop("lang-filter", `text looks like ${guess.lang}, not English`, detected) };
    }
    if (words < ctx.config.minWords) {
      return { turns: note("drop"), vars: drop("lang-filter", `too short (${words} words)`, detected) };
    }
    return { turns: note("pass"), vars: pass(state, detected) };
  },
};

const filter: StageRole = llmRole({
  model: (c) => c.filterModel,
  request: (state, ctx) => ({
    messages: stageMessages(FILTER_SYSTEM, excerpt(state.seed.text, ctx.config.maxDocChars)),
    max_tokens: ctx.config.filterMaxTokens,
    temperature: 0,
    seed: requestSeed(state.id, state.trial, "filter"),
  }),
  text: (res) => res.text.trim(),
  record: (res, state) => {
    const verdict = parseYesNo(res.text);
    if (verdict === undefined) return drop("filter", `the filter answered neither Yes nor No: ${JSON.stringify(res.text.slice(0, 80))}`);
    if (!verdict) return drop("filter", "the filter found no advanced reasoning");
    return pass(state);
  },
});

type Answered = AnsweredCalls;

/**
 * The one turn of the score stage: the last reply, carrying the tokens and
 * the count of every try, the refused ones too (the row's usage and the run's
 * totals are summed from turns).
 */
function scoreTurn(spent: Answered): TurnInput {
  return { text: spent.last.text.trim(), llm: { ...spent.last, usage: spent.usage, attempts: spent.tries } };
}

const score: StageRole = {
  kind: "llm",
  model: (c) => c.scoreModel,
  async run(state, ctx) {
    const seed = state.seed;
    const { client, callError, answered } = recordingClient(ctx.llm);
    const req = {
      model: ctx.config.scoreModel,
      messages: stageMessages(SCORE_SYSTEM, excerpt(seed.text, ctx.config.maxDocChars)),
      max_tokens: ctx.config.scoreMaxTokens,
      temperature: ctx.config.temperature,
      seed: requestSeed(state.id, state.trial, "score"),
      response_format: SCORES_RESPONSE_FORMAT,
    };
    let got;
    try {
      got = await chatJson(client, req, ScoresSchema, { retries: ctx.config.scoreRetries });
    } catch (err) {
      if (err instanceof StructuredReplyError) {
        const spent = { usage: err.usage, tries: err.tries, last: err.result };
        return { turns: [scoreTurn(spent)], vars: drop("score", `no valid scores: ${err.message}`, { scoreTries: err.tries }) };
      }
      const spent = answered();
      // An outage after refused replies fails the task as a thrown LlmError
      // would, with a turn so the row keeps their tokens. On shutdown the
      // error goes up: the task then gets no row and runs again elsewhere.
      if (err === callError() && err instanceof LlmError && spent && !ctx.signal.aborted) {
        return { turns: [scoreTurn(spent)], fail: describe(err) };
      }
      throw err;
    }
    const overall = overallScore(got.value);
    const turns = [scoreTurn({ usage: got.usage, tries: got.tries, last: got.result })];
    const vars = { scores: got.value, overall, scoreTries: got.tries };
    if (overall < ctx.config.threshold) {
      return { turns, vars: drop("score", `score ${overall} is below the threshold ${ctx.config.threshold}`, vars) };
    }
    return { turns, vars: pass(state, vars) };
  },
};

const question: StageRole = llmRole({
  model: (c) => c.questionModel,
  request: (state, ctx) => ({
    messages: stageMessages(QUESTION_SYSTEM, excerpt(state.seed.text, ctx.config.maxDocChars)),
    max_tokens: ctx.config.questionMaxTokens,
    temperature: ctx.config.temperature,
    seed: requestSeed(state.id, state.trial, "question"),
  }),
  record: (res, state) => {
    const parsed = parseQuestion(res.text);
    if (!parsed.ok) return drop("question", parsed.reason);
    return pass(state, { question: parsed.question, reference: parsed.reference, answer: parsed.answer });
  },
});

/**
 * Web-document reasoning extraction: a language check, a small-model Yes/No
 * filter, large-model scores with a threshold, and a self-contained question
 * with a boxed reference answer. Most documents stop early; a stopped
 * document is an ok row that names the stage and the reason.
 */
export const reasoningExtract = defineWorkflow<DocSeed, ExtractVars, ReasoningExtractConfig>({
  name: "reasoning-extract",
  description: "filters web documents for reasoning and turns the best into questions with boxed answers",
  seedSchema: DocSeedSchema,
  configSchema: ReasoningExtractConfigSchema,
  roles: { "lang-filter": langFilter, filter, score, question },
  start: () => ({ next: "lang-filter", vars: { passed: 0 } }),
  next: (state, _config, ran) => nextStage(state, ran),
  output: (state) => extractOutput(state),
  maxSteps: () => 10,
  metrics: extractMetrics,
});
