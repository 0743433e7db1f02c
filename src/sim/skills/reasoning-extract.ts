import { pick, uniform } from "../hash.ts";
import { type Skill, type SkillInput } from "./types.ts";

/**
 * The reasoning-extract workflow's three LLM stages. Each answer follows
 * from the document's features (how densely it uses reasoning markers), so
 * reasoning pages pass more often, and from the request hash, so the same
 * request always gets the same answer:
 * - filter: `Yes` or `No`;
 * - score: a JSON object of four 1-5 criteria, now and then malformed
 *   (cut off, out of range, a field missing, prose) so that structured
 *   output retries run;
 * - question: `Question: ... Answer: ... \boxed{N}`, sometimes with no box
 *   or a question that points at "the document", which the workflow drops.
 * Each stage is recognised by the first sentence of its system prompt
 * (plugins/reasoning-extract/prompts.ts).
 */

export const FILTER_MARK = "Does the text below show advanced reasoning?";
export const SCORE_MARK = "Score the document below on these criteria.";
export const QUESTION_MARK = "From the document below, write one self-contained question";

const SALT_FILTER = 501;
const SALT_BAD_JSON = 502;
const SALT_BAD_KIND = 503;
const SALT_CRITERION = 510;
const SALT_NO_BOX = 520;
const SALT_POINTS = 521;
const SALT_NO_QUESTION = 522;
const SALT_FENCE = 523;

/** Share of score replies that are not valid. */
const BAD_JSON_RATE = 0.18;
const NO_BOX_RATE = 0.12;
const POINTS_AT_DOC_RATE = 0.05;
const NO_QUESTION_RATE = 0.03;

const MARKERS =
  /\b(?:therefore|thus|hence|because|since|implies|follows|suppose|assume|lemma|theorem|proof|qed|contradiction|substituting|induction|step \d+)\b|=/gi;

/** The document: the first user message (a retry appends feedback after it). */
function documentOf(input: SkillInput): string {
  const i = input.body.messages.findIndex((m) => m.role === "user");
  return i < 0 ? "" : (input.texts[i] ?? "");
}

/** Reasoning markers per 100 words of the first pages of a text. */
export function reasoningDensity(text: string): number {
  const sample = text.length > 20_000 ? text.slice(0, 20_000) : text;
  const words = sample.split(/\s+/).filter((w) => w.length > 0).length;
  if (words === 0) return 0;
  const markers = sample.match(MARKERS)?.length ?? 0;
  return (markers * 100) / words;
}

function systemIncludes(input: SkillInput, mark: string): boolean {
  const i = input.body.messages.findIndex((m) => m.role === "system" || m.role === "developer");
  return i >= 0 && (input.texts[i] ?? "").includes(mark);
}

/** Chance that the filter says Yes: a few percent for plain pages, most for dense arguments. */
export function filterYesChance(density: number): number {
  return Math.min(0.95, 0.03 + 0.11 * density);
}

export const reasoningFilterSkill: Skill = {
  name: "reasoning-filter",
  answer(input) {
    if (!systemIncludes(input, FILTER_MARK)) return undefined;
    const yes = uniform(input.hash, SALT_FILTER) < filterYesChance(reasoningDensity(documentOf(input)));
    return { kind: "exact", text: yes ? "Yes" : "No" };
  },
};

const CRITERIA = ["reasoning_depth", "problem_complexity", "technical_correctness", "educational_value"] as const;

/** One criterion: centred on what the density suggests, give or take one. */
function criterion(input: SkillInput, density: number, k: number): number {
  const centre = 1.4 + density * 0.45;
  const noise = uniform(input.hash, SALT_CRITERION + k) * 2.4 - 1.2;
  return Math.max(1, Math.min(5, Math.round(centre + noise)));
}

export const reasoningScoreSkill: Skill = {
  name: "reasoning-score",
  answer(input) {
    if (!systemIncludes(input, SCORE_MARK)) return undefined;
    const h = input.hash;
    const density = reasoningDensity(documentOf(input));
    const scores: Record<string, unknown> = {};
    CRITERIA.forEach((c, k) => {
      scores[c] = criterion(input, density, k);
    });
    scores.justification = density > 4 ? "the page works through several connected steps" : "the page states things more than it argues them";
    if (uniform(h, SALT_BAD_JSON) < BAD_JSON_RATE) {
      const json = JSON.stringify(scores, null, 1);
      switch (pick(h, SALT_BAD_KIND, 4)) {
        case 0:
          return { kind: "exact", text: json.slice(0, Math.floor(json.length / 2)) };
        case 1:
          return { kind: "exact", text: JSON.stringify({ ...scores, reasoning_depth: 7 }, null, 1) };
        case 2: {
          const { educational_value: _dropped, ...rest } = scores;
          return { kind: "exact", text: JSON.stringify(rest, null, 1) };
        }
        default:
          return { kind: "exact", text: `The document scores ${String(scores.reasoning_depth)} on reasoning depth overall.` };
      }
    }
    const json = JSON.stringify(scores, null, 1);
    return { kind: "exact", text: uniform(h, SALT_FENCE) < 0.2 ? `\`\`\`json\n${json}\n\`\`\`` : json };
  },
};

/** The last number the document states, as its conclusion; 42 when there is none. */
function lastNumber(text: string): string {
  const all = text.match(/-?\d+(?:\.\d+)?/g);
  return all?.[all.length - 1] ?? "42";
}

/** A sentence of the document that states a problem or claim, to build the question on. */
function topicOf(text: string): string {
  const m = /(?:Problem: |Theorem\. |Lemma\. |Claim: |Proposition\. |Question from a user: )([^.?]{5,160})/.exec(text);
  if (m) return (m[1] as string).trim();
  const first = text.split(/(?<=[.!?])\s+/).find((s) => s.length > 20) ?? text.slice(0, 120);
  return first.replace(/[.!?]+$/, "").slice(0, 160);
}

export const reasoningQuestionSkill: Skill = {
  name: "reasoning-question",
  answer(input) {
    if (!systemIncludes(input, QUESTION_MARK)) return undefined;
    const h = input.hash;
    const doc = documentOf(input);
    const value = lastNumber(doc);
    const topic = topicOf(doc);
    if (uniform(h, SALT_NO_QUESTION) < NO_QUESTION_RATE) return { kind: "text", final: `I could not find a good question here.` };
    const lead = uniform(h, SALT_POINTS) < POINTS_AT_DOC_RATE ? "According to the document, " : "";
    const question = `Question: ${lead}consider this: ${topic}. Working through every step, what is the final value?`;
    const box = uniform(h, SALT_NO_BOX) < NO_BOX_RATE ? `the result is ${value}.` : `the result is \\boxed{${value}}.`;
    return { kind: "text", final: `${question}\nAnswer: Following the steps one by one, ${box}` };
  },
};

/** The three stages' skills, in registry order. */
export const reasoningExtractSkills: readonly Skill[] = [reasoningFilterSkill, reasoningScoreSkill, reasoningQuestionSkill];
