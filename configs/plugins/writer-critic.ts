import type { Infer, PluginApi } from "../../src/plugin/api.ts";

/**
 * A writer drafts an answer, a critic judges it, and the draft is revised
 * until the critic approves or the rounds run out: the TypeScript twin of
 * configs/workflows/writer-critic.yaml, giving the same rows. The file
 * imports only types (erased when it loads), so it runs from anywhere, the
 * compiled binary included:
 *
 *   matrixd run --plugin writer-critic.ts --workflow writer-critic \
 *     --seeds configs/seeds/writer-critic.jsonl --out wc.jsonl --llm sim
 */
export default ({ z, defineWorkflow, llmRole }: PluginApi) => {
  const Seed = z.looseObject({ question: z.string().min(1) });
  const Options = z.strictObject({
    /** revisions at most */
    maxRounds: z.number().int().min(0).default(3),
    /** unset asks any endpoint */
    model: z.string().nullable().default(null),
    maxTokens: z.number().int().positive().default(512),
  });
  /** What the critic answers, as JSON (the server is asked for this schema). */
  const Verdict = z.object({ ok: z.boolean(), critique: z.string().optional() });
  type Seed = Infer<typeof Seed>;
  type Options = Infer<typeof Options>;
  interface Vars {
    rounds: number;
    draft?: string;
    verdict?: Infer<typeof Verdict>;
    critique?: string;
  }

  return defineWorkflow<Seed, Vars, Options>({
    name: "writer-critic",
    description: "a writer answers a question in two sentences; a critic approves or asks for a revision",
    seedSchema: Seed,
    configSchema: Options,
    roles: {
      writer: llmRole({
        model: (o) => o.model ?? undefined,
        request: ({ seed, vars }, ctx) => ({
          messages: [
            { role: "system", content: "You answer questions in two sentences." },
            { role: "user", content: vars.critique ? `${seed.question} Critique: ${vars.critique}` : seed.question },
          ],
          max_tokens: ctx.config.maxTokens,
          temperature: 0.7,
        }),
        record: (res) => ({ draft: res.text }),
      }),
      critic: llmRole({
        model: (o) => o.model ?? undefined,
        request: ({ vars }) => ({
          messages: [{ role: "user", content: `Is this answer right? ${vars.draft}` }],
          response_format: { type: "json_schema", json_schema: { name: "verdict", schema: z.toJSONSchema(Verdict) } },
        }),
        text: (res) => res.text.trim(),
        // A reply that is no verdict throws: the step is tried again, then the task fails saying why.
        record: (res) => ({ verdict: Verdict.parse(JSON.parse(res.text)) }),
      }),
      revise: {
        kind: "cpu",
        async run({ vars }) {
          return { vars: { rounds: vars.rounds + 1, critique: vars.verdict?.critique ?? "be more precise" } };
        },
      },
    },
    start: () => ({ next: "writer", vars: { rounds: 0 } }),
    next: ({ vars }, options, ran) => {
      if (ran === "writer") return "critic";
      if (ran === "revise") return "writer";
      return vars.verdict?.ok || vars.rounds >= options.maxRounds ? null : "revise";
    },
    output: ({ vars }) => ({
      output: { answer: vars.draft, rounds: vars.rounds, approved: vars.verdict?.ok },
      metrics: { approved: vars.verdict?.ok, rounds: vars.rounds },
    }),
    metrics: [
      { name: "approved", of: (m, status) => (status === "ok" && typeof m.approved === "boolean" ? Number(m.approved) : undefined) },
      { name: "rounds", of: (m, status) => (status === "ok" && typeof m.rounds === "number" ? m.rounds : undefined) },
    ],
    maxSteps: () => 30,
  });
};
