import type { ChatMessage } from "../../src/llm/types.ts";
import { type CoralSeed, type CoralState, LETTERS, type Speaker } from "./flow.ts";

const SYSTEM: Record<Speaker, string> = {
  teacher:
    "You are a teacher working through a multiple-choice question together with a student. " +
    "Reason step by step, respond to what the student said last, correct mistakes and stay open to being corrected. " +
    "End your message with your current answer on its own line as `Answer: (X)`, or `Answer: not sure`.",
  student:
    "You are a student working through a multiple-choice question together with a teacher. " +
    "Reason step by step, respond to what the teacher said last, say when you disagree and why. " +
    "End your message with your current answer on its own line as `Answer: (X)`, or `Answer: not sure`.",
};

export const EXTRACT_SYSTEM =
  "Extract the final answer from the message below. Reply with the option letter only (for example `B`), " +
  "or `not sure` if the message does not commit to a single option.";

export function questionBlock(seed: CoralSeed): string {
  const opts = seed.options.map((o, i) => `(${LETTERS[i]}) ${o}`).join("\n");
  return `Question: ${seed.question}\nOptions:\n${opts}`;
}

/** The dialogue from one speaker's side: its own turns as assistant, the other's as user. */
export function dialogueMessages(state: CoralState, speaker: Speaker): ChatMessage[] {
  const messages: ChatMessage[] = [
    { role: "system", content: SYSTEM[speaker] },
    { role: "user", content: questionBlock(state.seed) },
  ];
  for (const t of state.history) {
    if (t.role !== "teacher" && t.role !== "student") continue;
    messages.push({ role: t.role === speaker ? "assistant" : "user", content: t.text });
  }
  return messages;
}

export function extractMessages(text: string): ChatMessage[] {
  return [
    { role: "system", content: EXTRACT_SYSTEM },
    { role: "user", content: text },
  ];
}

/** The letter an extractor reply names, or null for "not sure" or anything else. */
export function parseExtracted(reply: string, options: number): string | null {
  const m = /^\s*\(?([A-J])\)?\s*\.?\s*$/i.exec(reply) ?? /\banswer\s*(?:is|:)?\s*\(?([A-J])\)?/i.exec(reply);
  if (!m) return null;
  const letter = (m[1] as string).toUpperCase();
  return LETTERS.indexOf(letter) < options ? letter : null;
}
