import { z } from "zod";
import { numeric } from "../../src/engine/metrics.ts";
import type { Metric, Role } from "../../src/plugin/api.ts";
import type { TaskState } from "../../src/protocol/task.ts";

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

export const LETTERS = "ABCDEFGHIJ";

export function coralVars(state: Readonly<TaskState>): CoralVars {
  return state.vars as unknown as CoralVars;
}

export function startVars(): { next: string; vars: Record<string, unknown> } {
  const vars: CoralVars = { turn: 0, speaker: "teacher", answers: { teacher: null, student: null } };
  return { next: "teacher", vars: vars as unknown as Record<string, unknown> };
}

/** teacher, extractor, matcher, student, extractor, matcher, ... until agreement or the turn limit. */
export function nextRole(state: Readonly<TaskState>, maxTurns: number, ran: string): string | null {
  const v = coralVars(state);
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
export function match(v: CoralVars): Record<string, unknown> | undefined {
  const { teacher, student } = v.answers;
  if (teacher !== null && teacher === student) return { agreed: teacher };
  return undefined;
}

/** The matcher role (no LLM), the same in coral and coral-dummy. */
export function matcherRole<C>(): Role<C> {
  return {
    kind: "cpu",
    async run(state) {
      return { vars: match(coralVars(state)) };
    },
  };
}

export function coralOutput(state: Readonly<TaskState>): { output: unknown; metrics: Record<string, unknown> } {
  const v = coralVars(state);
  const gold = (state.seed as CoralSeed).answer;
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
