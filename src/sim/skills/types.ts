import type { ResolvedSimOptions } from "../options.ts";
import type { ChatBody } from "../request.ts";

/**
 * A constraint on the answer's form that the server enforces (structured
 * output). Each server kind reads it from its own request fields; the skills
 * only see the result, so a field a kind ignores constrains nothing.
 */
export type OutputConstraint =
  | { type: "json_schema"; schema: Record<string, unknown> }
  | { type: "json_object" }
  | { type: "regex"; pattern: string }
  | { type: "choice"; choices: string[] };

/** What a skill sees of one request; computed once per request. */
export interface SkillInput {
  body: ChatBody;
  options: ResolvedSimOptions;
  /** hash of the request content (messages, model, tools, seed) */
  hash: number;
  /** the text of each message, in order */
  texts: readonly string[];
  /** the output constraint the server enforces, if any */
  constraint?: OutputConstraint;
}

/**
 * A skill's answer:
 * - `text`: filler reasoning up to the drawn length, then `final` as the
 *   last line (alone when the length is too short for both; `""` = none);
 * - `exact`: this text and nothing else, whatever the drawn length;
 * - `tool`: one tool call (`arguments` need not be valid JSON: skills may
 *   answer badly on purpose).
 */
export type SkillAnswer =
  | { kind: "text"; final: string }
  | { kind: "exact"; text: string }
  | { kind: "tool"; name: string; arguments: string };

/**
 * One kind of request the simulated model knows how to answer. The first
 * skill in the registry whose `answer` returns something wins; answers must
 * depend only on the input, so that the same request gets the same answer.
 */
export interface Skill {
  name: string;
  answer(input: SkillInput): SkillAnswer | undefined;
}

/** Index of the last message with this role, or -1. */
export function lastIndexOfRole(input: SkillInput, role: string): number {
  const ms = input.body.messages;
  for (let i = ms.length - 1; i >= 0; i--) if (ms[i]?.role === role) return i;
  return -1;
}

/** Text of the last message with this role, or undefined. */
export function lastTextOfRole(input: SkillInput, role: string): string | undefined {
  const i = lastIndexOfRole(input, role);
  return i < 0 ? undefined : input.texts[i];
}
