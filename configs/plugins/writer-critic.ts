import type { Infer, PluginApi } from "../../src/plugin/api.ts";

/**
 * A writer drafts a paragraph on the seed's topic; a critic approves it or
 * says what to change, and the writer writes it again, for at most `rounds`
 * drafts. The file imports only types (erased when it loads), so it runs
 * from anywhere, the compiled binary included:
 *
 *   matrixd run --plugin writer-critic.ts --workflow writer-critic \
 *     --seeds configs/seeds/writer-critic.jsonl --out wc.jsonl --llm sim
 */
export default ({ z, defineWorkflow, llmRole }: PluginApi) => {
  const Seed = z.looseObject({ topic: z.string().min(1) });
  const Config = z.strictObject({
    /** drafts at most, the first included */
    rounds: z.number().int().min(1).max(10).default(3),
    writerModel: z.string().optional(),
    criticModel: z.string().optional(),
    maxTokens: z.number().int().positive().default(512),
  });
  /** What the critic answers, as JSON (the server is asked for this schema). */
  const Verdict = z.object({ approved: z.boolean(), notes: z.string() });
  type Seed = Infer<typeof Seed>;
  type Config = Infer<typeof Config>;
  interface Vars {
    drafts: number;
    draft?: string;
    approved: boolean;
    notes?: string;
  }

  function verdictOf(text: string): Infer<typeof Verdict> {
    try {
      const v = Verdict.safeParse(JSON.parse(text));
      if (v.success) return v.data;
    } catch {
      // not JSON: no approval
    }
    return { approved: false, notes: "the critic's answer was no verdict" };
  }

  return defineWorkflow<Seed, Vars, Config>({
    name: "writer-critic",
    description: "a writer drafts a paragraph on a topic, a critic approves it or asks for another draft",
    seedSchema: Seed,
    configSchema: Config,
    roles: {
      writer: llmRole({
        model: (c) => c.writerModel,
        request: ({ seed, vars }, ctx) => ({
          messages: [
            { role: "system", content: "You are a writer. Write one short paragraph on the topic you are given." },
            {
              role: "user",
              content: vars.draft === undefined
                ? `Topic: ${seed.topic}`
                : `Topic: ${seed.topic}\n\nYour last draft:\n${vars.draft}\n\nThe critic says: ${vars.notes}\n\nWrite the paragraph again.`,
            },
          ],
          max_tokens: ctx.config.maxTokens,
        }),
        record: (res, { vars }) => ({ draft: res.text, drafts: vars.drafts + 1 }),
      }),
      critic: llmRole({
        model: (c) => c.criticModel,
        request: ({ seed, vars }) => ({
          messages: [
            { role: "system", content: "You are a critic. Approve the paragraph, or say in one sentence what to change." },
            { role: "user", content: `Topic: ${seed.topic}\n\n${vars.draft}` },
          ],
          response_format: { type: "json_schema", json_schema: { name: "verdict", schema: z.toJSONSchema(Verdict) } },
          max_tokens: 256,
          temperature: 0,
        }),
        record: (res) => verdictOf(res.text),
      }),
    },
    start: () => ({ next: "writer", vars: { drafts: 0, approved: false } }),
    next: ({ vars }, config, ran) => {
      if (ran === "writer") return "critic";
      return vars.approved || vars.drafts >= config.rounds ? null : "writer";
    },
    output: ({ seed, vars }) => ({
      output: { topic: seed.topic, text: vars.draft ?? null, approved: vars.approved, drafts: vars.drafts },
      metrics: { approved: vars.approved, drafts: vars.drafts },
    }),
    metrics: [
      { name: "approved", of: (m, status) => (status === "ok" ? Number(m.approved === true) : undefined) },
      { name: "drafts", of: (m, status) => (status === "ok" && typeof m.drafts === "number" ? m.drafts : undefined) },
    ],
  });
};
