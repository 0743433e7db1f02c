import { z } from "zod";
import { defineWorkflow, type Role } from "../../src/plugin/api.ts";
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
} from "../coral/flow.ts";

export const CoralDummyConfigSchema = z.strictObject({
  /** bytes of each LLM-role turn, give or take 20% */
  textBytes: z.number().int().positive().default(1024),
  /** dialogue turns after which the matcher sees agreement */
  agreeAfter: z.number().int().min(1).default(4),
  maxTurns: z.number().int().min(2).max(200).default(20),
});
export type CoralDummyConfig = z.infer<typeof CoralDummyConfigSchema>;
type DummyRole = Role<CoralSeed, CoralVars, CoralDummyConfig>;

const WORDS = "the of and to in is that it for as with on by this be are from at or an was which we can".split(" ");
/** One long text made once; turns are slices of it, so a step allocates only the slice. */
const CORPUS = (() => {
  let s = "";
  for (let i = 0; s.length < 1 << 16; i++) s += `${WORDS[(i * 7919) % WORDS.length]} `;
  return s;
})();

function speakerRole(speaker: Speaker): DummyRole {
  return {
    kind: "llm",
    async run(state, ctx) {
      const n = Math.max(1, Math.round(ctx.config.textBytes * (0.8 + 0.4 * ctx.random())));
      const start = Math.floor(ctx.random() * (CORPUS.length - n));
      return { turns: [{ text: CORPUS.slice(start, start + n) }], vars: { turn: state.vars.turn + 1, speaker } };
    },
  };
}

const extractor: DummyRole = {
  kind: "llm",
  async run(state, ctx) {
    const v = state.vars;
    // Disagree until `agreeAfter` turns, then both name the gold answer.
    const letter = v.turn >= ctx.config.agreeAfter ? state.seed.answer : v.speaker === "teacher" ? "A" : "B";
    return { turns: [{ text: letter }], vars: { answers: { ...v.answers, [v.speaker]: letter } } };
  },
};

const matcher = matcherRole<CoralDummyConfig>();

/** The coral dialogue with no LLM: measures what the framework itself costs per hop. */
export const coralDummy = defineWorkflow<CoralSeed, CoralVars, CoralDummyConfig>({
  name: "coral-dummy",
  description: "coral's dialogue with instant fixed-size turns and no LLM (framework overhead)",
  seedSchema: CoralSeedSchema,
  configSchema: CoralDummyConfigSchema,
  roles: { teacher: speakerRole("teacher"), student: speakerRole("student"), extractor, matcher },
  start: () => startVars(),
  next: (state, config, ran) => nextRole(state, config.maxTurns, ran),
  output: (state) => coralOutput(state),
  maxSteps: (c) => c.maxTurns * 3 + 10,
  metrics: coralMetrics,
});
