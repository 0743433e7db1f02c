import { z } from "zod";
import { defineWorkflow, type Role } from "../../src/plugin/api.ts";
import { fnv1a } from "../../src/util/hash.ts";
import {
  type CoralSeed,
  CoralSeedSchema,
  coralMetrics,
  coralOutput,
  coralVars,
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

function speakerRole(speaker: Speaker): Role<CoralConfig> {
  return {
    kind: "llm",
    model: (c) => (speaker === "teacher" ? c.teacherModel : c.studentModel),
    async run(state, ctx) {
      const v = coralVars(state);
      const model = speaker === "teacher" ? ctx.config.teacherModel : ctx.config.studentModel;
      const res = await ctx.llm.chat({
        model,
        messages: dialogueMessages(state, speaker),
        max_tokens: ctx.config.maxTokens,
        temperature: ctx.config.temperature,
        seed: fnv1a(`${state.id}:${state.trial}:${v.turn}`),
      });
      return { turns: [{ text: res.text, llm: res }], vars: { turn: v.turn + 1, speaker } };
    },
  };
}

const extractor: Role<CoralConfig> = {
  kind: "llm",
  model: (c) => c.extractorModel,
  async run(state, ctx) {
    const v = coralVars(state);
    const last = state.history.findLast((t) => t.role === v.speaker);
    if (!last) return { fail: `no ${v.speaker} turn to extract an answer from` };
    const res = await ctx.llm.chat({
      model: ctx.config.extractorModel,
      messages: extractMessages(last.text),
      max_tokens: 8,
      temperature: 0,
    });
    const letter = parseExtracted(res.text, (state.seed as CoralSeed).options.length);
    return {
      turns: [{ text: res.text.trim(), llm: res }],
      vars: { answers: { ...v.answers, [v.speaker]: letter } },
    };
  },
};

const matcher = matcherRole<CoralConfig>();

/** Collaborative reasoning dialogue: a teacher and a student talk until they agree on an answer. */
export const coral = defineWorkflow<CoralSeed, CoralConfig>({
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
