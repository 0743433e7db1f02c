import { pick, uniform } from "../hash.ts";
import { solveWhatIs } from "./arith.ts";
import { lastTextOfRole, type Skill, type SkillInput } from "./types.ts";

/**
 * The coral workflow's two LLM roles: the dialogue turns of teacher and
 * student, who each end with `Answer: (X)` or `Answer: not sure`, and the
 * extractor that reads a turn's final answer back.
 */

const SALT_AGREE = 101;
const SALT_UNSURE = 102;
const SALT_CORRECT = 103;
const SALT_WRONG = 104;

/** One option line of a question block: `(B) 42`. */
export interface QuestionOption {
  letter: string;
  text: string;
}

/** A multiple-choice question as the dialogue prompt states it. */
export interface QuestionBlock {
  question: string;
  options: QuestionOption[];
}

const OPTION_LINE = /^\s*\(([A-J])\)\s?(.*)$/;

/**
 * Finds a `Question:` line followed by at least two option lines
 * `(A) text` ... `(J) text` (blank lines between them allowed).
 */
export function parseQuestionBlock(text: string): QuestionBlock | undefined {
  let at = text.indexOf("Question:");
  while (at >= 0) {
    let lineStart = at;
    while (lineStart > 0 && (text[lineStart - 1] === " " || text[lineStart - 1] === "\t")) lineStart--;
    if (lineStart === 0 || text[lineStart - 1] === "\n") {
      const block = parseFrom(text.slice(at + "Question:".length));
      if (block) return block;
    }
    at = text.indexOf("Question:", at + 1);
  }
  return undefined;
}

function parseFrom(rest: string): QuestionBlock | undefined {
  const lines = rest.split("\n");
  let question = lines[0]?.trim() ?? "";
  const options: QuestionOption[] = [];
  for (let i = 1; i < lines.length && options.length < 10; i++) {
    const line = lines[i]!;
    const m = OPTION_LINE.exec(line);
    if (m) {
      if (!options.some((o) => o.letter === m[1])) options.push({ letter: m[1]!, text: m[2]!.trim() });
      continue;
    }
    if (line.trim() === "") continue;
    if (options.length > 0) break;
    question += " " + line.trim();
  }
  return options.length >= 2 ? { question, options } : undefined;
}

/** The letter of the last `Answer: (X)` in a text, if any. */
export function lastAnswerLetter(text: string): string | undefined {
  const re = /Answer:\s*\(([A-J])\)/g;
  let letter: string | undefined;
  for (let m = re.exec(text); m; m = re.exec(text)) letter = m[1];
  return letter;
}

/** The teacher's and student's turns in a multiple-choice dialogue. */
export const coralDialogueSkill: Skill = {
  name: "coral-dialogue",
  answer(input: SkillInput) {
    let block: QuestionBlock | undefined;
    for (const t of input.texts) {
      if (t.includes("Question:")) block = parseQuestionBlock(t);
      if (block) break;
    }
    if (!block) return undefined;
    return { kind: "text", final: `Answer: ${decide(input, block)}` };
  },
};

function decide(input: SkillInput, block: QuestionBlock): string {
  const { options, hash: h } = input;
  const peerText = lastTextOfRole(input, "user");
  const peer = peerText === undefined ? undefined : lastAnswerLetter(peerText);
  const peerValid = peer !== undefined && block.options.some((o) => o.letter === peer);
  if (peerValid && uniform(h, SALT_AGREE) < options.agreeRate) return `(${peer})`;
  if (uniform(h, SALT_UNSURE) < options.unsureRate) return "not sure";
  const value = solveWhatIs(block.question);
  const correct = value === undefined ? undefined : block.options.find((o) => o.text === String(value));
  if (correct && uniform(h, SALT_CORRECT) < options.accuracy) return `(${correct.letter})`;
  const wrong = correct ? block.options.filter((o) => o !== correct) : block.options;
  const chosen = wrong[pick(h, SALT_WRONG, wrong.length)] ?? block.options[0]!;
  return `(${chosen.letter})`;
}

/** Reads a speaker's final answer back: `B`, or `not sure`. */
export const coralExtractSkill: Skill = {
  name: "coral-extract",
  answer(input: SkillInput) {
    const system = input.body.messages.findIndex((m) => m.role === "system" || m.role === "developer");
    if (system < 0 || !input.texts[system]!.includes("Extract the final answer")) return undefined;
    const turn = lastTextOfRole(input, "user") ?? "";
    const re = /Answer:\s*(?:\(([A-J])\)|(not sure))/gi;
    let letter: string | undefined;
    for (let m = re.exec(turn); m; m = re.exec(turn)) letter = m[1];
    return { kind: "exact", text: letter ?? "not sure" };
  },
};
