import { z } from "zod";
import { defineWorkflow, llmRole, type Role } from "../../src/plugin/api.ts";
import { fnv1a } from "../../src/util/hash.ts";
import {
  type CoralSeed,
  CoralSeedSchema,
  type CoralVars,
  coralMetrics,
  coralOutput,
  matcherRole,
  nextRole,
  type Speaker,
  startVars,
} from "./flow.ts";
import { dialogueMessages, extractMessages, parseExtracted } from "./prompts.ts";

export const CoralConfigSchema = z.strictObject({
  /** dialogue turns (teacher and student together) before giving up on agreement */
  maxTurns: z.number().int().min(2).max(200).default(20),
  /** model names; unset asks any endpoint */
  teacherModel: z.string().optional(),
  studentModel: z.string().optional(),
  extractorModel: z.string().optional(),
  maxTokens: z.number().int().positive().default(1024),
  temperature: z.number().min(0).max(2).default(0.7),
});
export type CoralConfig = z.infer<typeof CoralConfigSchema>;
type CoralRole = Role<CoralSeed, CoralVars, CoralConfig>;

function speakerRole(speaker: Speaker): CoralRole {
  return llmRole({
    model: (c) => (speaker === "teacher" ? c.teacherModel : c.studentModel),
    request: (state, ctx) => ({
      messages: dialogueMessages(state, speaker),
      max_tokens: ctx.config.maxTokens,
      temperature: ctx.config.temperature,
      seed: fnv1a(`${state.id}:${state.trial}:${state.vars.turn}`),
    }),
    record: (_res, state) => ({ turn: state.vars.turn + 1, speaker }),
  });
}

const extractor: CoralRole = llmRole({
  model: (c) => c.extractorModel,
  request: (state) => {
    const last = state.history.findLast((t) => t.role === state.vars.speaker);
    if (!last) return { fail: `no ${state.vars.speaker} turn to extract an answer from` };
    return { messages: extractMessages(last.text), max_tokens: 8, temperature: 0 };
  },
  text: (res) => res.text.trim(),
  record: (res, state) => {
    const { answers, speaker } = state.vars;
    const letter = parseExtracted(res.text, state.seed.options.length);
    return { answers: { ...answers, [speaker]: letter } };
  },
});

const matcher = matcherRole<CoralConfig>();

/** Collaborative reasoning dialogue: a teacher and a student talk until they agree on an answer. */
export const coral = defineWorkflow<CoralSeed, CoralVars, CoralConfig>({
  name: "coral",
  description: "teacher and student discuss a multiple-choice question until they agree",
  seedSchema: CoralSeedSchema,
  configSchema: CoralConfigSchema,
  roles: { teacher: speakerRole("teacher"), student: speakerRole("student"), extractor, matcher },
  start: () => startVars(),
  next: (state, config, ran) => nextRole(state, config.maxTurns, ran),
  output: (state) => coralOutput(state),
  maxSteps: (c) => c.maxTurns * 3 + 10,
  metrics: coralMetrics,
});
