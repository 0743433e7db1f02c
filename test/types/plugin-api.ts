/**
 * Type checks of the plugin API, run by `tsc --noEmit -p .` (nothing here
 * runs): each `@ts-expect-error` line must fail to compile, so a change that
 * loses a workflow's seed, variables or config types fails the check.
 */
import { z } from "zod";
import type { EnvService } from "../../src/env/types.ts";
import { type AnyWorkflow, defineWorkflow, llmRole, type Role, type StepResult } from "../../src/plugin/api.ts";

const Seed = z.looseObject({ topic: z.string() });
const Config = z.strictObject({ rounds: z.number().default(2), model: z.string().optional() });
type Seed = z.infer<typeof Seed>;
type Config = z.infer<typeof Config>;
interface Vars {
  drafts: number;
  draft?: string;
}

const writer: Role<Seed, Vars, Config> = llmRole({
  model: (c) => c.model,
  request: (state, ctx) => ({ messages: [{ role: "user", content: state.seed.topic }], max_tokens: ctx.config.rounds }),
  record: (res, state) => ({ draft: res.text, drafts: state.vars.drafts + 1 }),
});

export const typed = defineWorkflow<Seed, Vars, Config>({
  name: "typed",
  description: "type checks",
  seedSchema: Seed,
  configSchema: Config,
  roles: {
    writer,
    check: {
      kind: "env",
      async run(state, ctx): Promise<StepResult<Vars>> {
        const env: EnvService | undefined = ctx.services.env;
        // @ts-expect-error the seed has no field "title"
        const title: string = state.seed.title;
        // @ts-expect-error drafts is a number
        const drafts: string = state.vars.drafts;
        // @ts-expect-error the config has no field "turns"
        void ctx.config.turns;
        void [env, title, drafts];
        // a key set to undefined is removed
        return { vars: { draft: undefined } };
      },
    },
    wrongVars: {
      kind: "cpu",
      // @ts-expect-error drafts is a number
      async run() {
        return { vars: { drafts: "two" } };
      },
    },
    unknownVar: {
      kind: "cpu",
      // @ts-expect-error the workflow has no variable "draftz"
      async run() {
        return { vars: { draftz: "x" } };
      },
    },
  },
  start: () => ({ next: "writer", vars: { drafts: 0 } }),
  next: (state, config) => (state.vars.drafts < config.rounds ? "writer" : null),
  output: (state) => ({ output: { text: state.vars.draft ?? null }, metrics: {} }),
});

// @ts-expect-error start must give the variables' required fields
defineWorkflow<Seed, Vars, Config>({ ...typed, start: () => ({ next: "writer", vars: {} }) });

llmRole<Seed, Vars, Config>({
  request: (state) => ({ messages: [{ role: "user", content: state.seed.topic }] }),
  // @ts-expect-error record gives the variables, typed
  record: (res) => ({ drafts: res.text }),
});

// Inferred from the schemas and from what start returns.
defineWorkflow({
  name: "inferred",
  description: "type checks",
  seedSchema: Seed,
  configSchema: Config,
  roles: {
    a: {
      kind: "cpu",
      async run(state, ctx) {
        // @ts-expect-error n is a number
        const n: string = state.vars.n;
        void n;
        return { turns: [{ text: `${state.seed.topic} ${ctx.config.rounds}` }], vars: { n: state.vars.n + 1 } };
      },
    },
  },
  start: () => ({ next: "a", vars: { n: 0 } }),
  next: (state) => (state.vars.n < 3 ? "a" : null),
  output: (state) => ({ output: state.vars.n, metrics: {} }),
});

// The engine holds any workflow with its types erased.
export const erased: AnyWorkflow = typed;
