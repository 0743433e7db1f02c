import { z } from "zod";
import { numeric } from "../../src/engine/metrics.ts";
import type { Metric, Role, StepResult, TaskView } from "../../src/plugin/api.ts";

/** A multiple-choice question: options in order A, B, C... and the gold letter. */
export const CoralSeedSchema = z.looseObject({
  id: z.union([z.string(), z.number()]).optional(),
  question: z.string().min(1),
  options: z.array(z.string()).min(2).max(10),
  answer: z.string().regex(/^[A-J]$/, "must be one option letter, A to J"),
});
export type CoralSeed = z.infer<typeof CoralSeedSchema>;

export type Speaker = "teacher" | "student";

/** What the dialogue keeps between steps. */
export interface CoralVars {
  /** dialogue turns so far (teacher and student) */
  turn: number;
  /** who spoke last */
  speaker: Speaker;
  /** the latest extracted answer of each speaker; null is "not sure" */
  answers: { teacher: string | null; student: string | null };
  /** the agreed letter, once both agree */
  agreed?: string;
}

/** A coral task as its roles see it. */
export type CoralState = TaskView<CoralSeed, CoralVars>;

export const LETTERS = "ABCDEFGHIJ";

export function startVars(): { next: string; vars: CoralVars } {
  return { next: "teacher", vars: { turn: 0, speaker: "teacher", answers: { teacher: null, student: null } } };
}

/** teacher, extractor, matcher, student, extractor, matcher, ... until agreement or the turn limit. */
export function nextRole(state: CoralState, maxTurns: number, ran: string): string | null {
  const v = state.vars;
  switch (ran) {
    case "teacher":
    case "student":
      return "extractor";
    case "extractor":
      return "matcher";
    case "matcher":
      if (v.agreed !== undefined || v.turn >= maxTurns) return null;
      return v.speaker === "teacher" ? "student" : "teacher";
    default:
      throw new Error(`unknown role "${ran}"`);
  }
}

/** The matcher: compare the two latest extracted answers. */
export function match(v: CoralVars): Partial<CoralVars> | undefined {
  const { teacher, student } = v.answers;
  if (teacher !== null && teacher === student) return { agreed: teacher };
  return undefined;
}

/** The matcher role (no LLM), the same in coral and coral-dummy. */
export function matcherRole<C>(): Role<CoralSeed, CoralVars, C> {
  return {
    kind: "cpu",
    async run(state): Promise<StepResult<CoralVars>> {
      return { vars: match(state.vars) };
    },
  };
}

export function coralOutput(state: CoralState): { output: unknown; metrics: Record<string, unknown> } {
  const v = state.vars;
  const gold = state.seed.answer;
  const agreed = v.agreed ?? null;
  const agreement = agreed !== null;
  const dialogue = state.history
    .filter((t) => t.role === "teacher" || t.role === "student")
    .map((t) => ({ speaker: t.role, text: t.text }));
  const metrics = { agreement, agreement_correctness: agreement && agreed === gold, turns: v.turn };
  return { output: { dialogue, answer: agreed, gold, ...metrics }, metrics };
}

export const coralMetrics: Metric[] = [
  { name: "agreement_correctness", of: (m, status) => (status === "ok" ? numeric(m, "agreement_correctness") : undefined) },
  { name: "agreement", of: (m, status) => (status === "ok" ? numeric(m, "agreement") : undefined) },
  { name: "turns", of: (m, status) => (status === "ok" ? numeric(m, "turns") : undefined) },
];
