import { countWords, normal, uniform } from "./hash.ts";
import { FNV_OFFSET, Rng, fnv1a, fnvInt, hex32, mix32 } from "../util/hash.ts";
import type { ResolvedSimOptions } from "./options.ts";
import { type ChatBody, type SimMessage, maxTokensOf, messageText, stopsOf } from "./request.ts";
import type { OutputConstraint, Skill, SkillAnswer, SkillInput } from "./skills/types.ts";
import { FILLER_WORDS } from "./words.ts";

/**
 * From a validated request to the answer the simulated model will give:
 * hashes (content and prompt prefixes), prompt tokens, the skill's answer,
 * the answer's length in tokens and its finish reason. Done once per
 * request, before it is queued; decoding only reveals it token by token.
 */

const SALT_LEN = 1;
const SALT_FILLER = 2;
const SALT_CALL_ID = 3;
const SALT_THINK_LEN = 4;
const SALT_THINK_TEXT = 5;
const LANE_B = 0x6c62272e;

/** A request with its hashes and token counts. */
export interface PreparedRequest {
  body: ChatBody;
  texts: string[];
  /** hash of messages, model, tools and seed: drives every choice */
  hash: number;
  promptTokens: number;
  /** prefixKeys[k] identifies messages[0..k] (inclusive) */
  prefixKeys: number[];
  /** prefixTokens[k] = prompt tokens of messages[0..k] */
  prefixTokens: number[];
  /** chain state after the last message, to extend with the answer */
  chainA: number;
  chainB: number;
}

/** The answer, fixed before decoding starts. */
export interface Composed {
  /** null for a tool call */
  text: string | null;
  toolCall: { id: string; name: string; arguments: string } | undefined;
  /** a reasoning model's thinking, decoded before the answer; null when there is none */
  reasoning: string | null;
  /** decode steps of the thinking (its word count), included in `tokens` */
  reasoningTokens: number;
  /** decode steps; the word count of the thinking plus that of the text (of name + arguments for a tool call) */
  tokens: number;
  finishReason: "stop" | "length" | "tool_calls";
  /** the request's stop string that ended the text, or null */
  stopSequence: string | null;
  skill: string;
}

/**
 * What the server made of the request beyond its messages: the output
 * constraint it honours (each kind reads its own fields), and whether the
 * tools are out of play (llama.cpp when their grammar fails to build).
 */
export interface AnswerView {
  constraint?: OutputConstraint;
  toolsOff?: boolean;
}

function messageHash(m: SimMessage, text: string, seed: number): number {
  let h = fnv1a(m.role, seed);
  h = fnv1a(text, fnvInt(0, h));
  if (m.tool_call_id) h = fnv1a(m.tool_call_id, fnvInt(1, h));
  if (m.tool_calls) for (const c of m.tool_calls) h = fnv1a(c.function.arguments, fnv1a(c.function.name, fnvInt(2, h)));
  return h;
}

function prefixKey(a: number, b: number): number {
  return a * 2097152 + (b >>> 11);
}

/** Hashes and counts a request; `model` is the served model name. */
export function prepareRequest(body: ChatBody, model: string): PreparedRequest {
  const n = body.messages.length;
  const texts = new Array<string>(n);
  const prefixKeys = new Array<number>(n);
  const prefixTokens = new Array<number>(n);
  let a = FNV_OFFSET;
  let b = LANE_B;
  let tokens = 0;
  for (let i = 0; i < n; i++) {
    const m = body.messages[i]!;
    const text = messageText(m);
    texts[i] = text;
    a = messageHash(m, text, a);
    b = mix32(b ^ messageHash(m, text, b));
    tokens += countWords(text);
    if (m.tool_calls) for (const c of m.tool_calls) tokens += 1 + countWords(c.function.arguments);
    prefixKeys[i] = prefixKey(a, b);
    prefixTokens[i] = tokens;
  }
  let h = fnv1a(model, fnvInt(0x5eed, a));
  if (body.tools && body.tools.length > 0) h = fnv1a(JSON.stringify(body.tools), h);
  if (body.seed != null) h = fnvInt(body.seed | 0, fnvInt(Math.floor(body.seed / 4294967296) | 0, h));
  return { body, texts, hash: mix32(h), promptTokens: tokens, prefixKeys, prefixTokens, chainA: a, chainB: b };
}

/** The prefix key of the request's messages followed by this answer, as a client would send it back. */
export function answerPrefixKey(p: PreparedRequest, c: Composed): number {
  const m: SimMessage = {
    role: "assistant",
    content: c.text,
    tool_calls: c.toolCall
      ? [{ id: c.toolCall.id, type: "function", function: { name: c.toolCall.name, arguments: c.toolCall.arguments } }]
      : undefined,
  };
  const text = c.text ?? "";
  const a = messageHash(m, text, p.chainA);
  const b = mix32(p.chainB ^ messageHash(m, text, p.chainB));
  return prefixKey(a, b);
}

/** Output length drawn from the lognormal (median lenMedian, sigma lenSigma), before caps. */
export function drawLength(hash: number, o: ResolvedSimOptions): number {
  const n = Math.round(o.lenMedian * Math.exp(o.lenSigma * normal(hash, SALT_LEN)));
  return Number.isFinite(n) ? Math.max(1, n) : o.maxLen;
}

const DOTTED = FILLER_WORDS.map((w) => w + ".");

/** `n` words of filler reasoning, deterministic from `hash`. */
export function fillerText(hash: number, n: number): string {
  if (n <= 0) return "";
  const rng = new Rng(hash ^ SALT_FILLER);
  const words = new Array<string>(n);
  let left = 5 + rng.below(10);
  for (let i = 0; i < n; i++) {
    const k = rng.below(FILLER_WORDS.length);
    if (--left === 0 || i === n - 1) {
      words[i] = DOTTED[k]!;
      left = 5 + rng.below(10);
    } else words[i] = FILLER_WORDS[k]!;
  }
  return words.join(" ");
}

/** The first `n` words of `text`, with what separates them. */
export function firstWords(text: string, n: number): string {
  const ends = wordEnds(text);
  return n >= ends.length ? text : text.slice(0, ends[n - 1] ?? 0);
}

/** End offset of each whitespace-separated word of `text`. */
export function wordEnds(text: string): Uint32Array {
  const out = new Uint32Array(countWords(text));
  const re = /\S+/g;
  let i = 0;
  for (let m = re.exec(text); m; m = re.exec(text)) out[i++] = m.index + m[0].length;
  return out;
}

/** Thinking words of a reasoning model for this request: 12 to 51, deterministic. */
function thinkingLength(hash: number): number {
  return 12 + Math.floor(uniform(hash, SALT_THINK_LEN) * 40);
}

/**
 * Answers a prepared request with the first skill that matches (else filler
 * text). With `o.reasoning`, thinking words come first; they take decode
 * steps and count against the request's output cap like any other token.
 */
export function composeAnswer(p: PreparedRequest, o: ResolvedSimOptions, skills: readonly Skill[], view: AnswerView = {}): Composed {
  const body = view.toolsOff && p.body.tools ? { ...p.body, tools: undefined, tool_choice: undefined } : p.body;
  const input: SkillInput = { body, options: o, hash: p.hash, texts: p.texts, constraint: view.constraint };
  let answer: SkillAnswer = { kind: "text", final: "" };
  let skill = "generic";
  for (const s of skills) {
    const a = s.answer(input);
    if (a) {
      answer = a;
      skill = s.name;
      break;
    }
  }
  let cap = Math.min(maxTokensOf(p.body) ?? Infinity, o.maxLen);
  let reasoning: string | null = null;
  let thought = 0;
  if (o.reasoning) {
    thought = Math.min(thinkingLength(p.hash), cap);
    reasoning = fillerText(mix32(p.hash ^ SALT_THINK_TEXT), thought);
    cap -= thought;
    if (cap <= 0) {
      return { text: "", toolCall: undefined, reasoning, reasoningTokens: thought, tokens: thought, finishReason: "length", stopSequence: null, skill };
    }
  }
  if (answer.kind === "tool") {
    const toolCall = { id: `call_${hex32(mix32(p.hash ^ SALT_CALL_ID))}`, name: answer.name, arguments: answer.arguments };
    const tokens = thought + 1 + countWords(answer.arguments);
    return { text: null, toolCall, reasoning, reasoningTokens: thought, tokens, finishReason: "tool_calls", stopSequence: null, skill };
  }
  let text: string;
  let finishReason: Composed["finishReason"] = "stop";
  let stopSequence: string | null = null;
  if (answer.kind === "exact") {
    text = answer.text;
    if (countWords(text) > cap) {
      text = firstWords(text, cap);
      finishReason = "length";
    }
  } else {
    const drawn = drawLength(p.hash, o);
    const n = Math.min(drawn, cap);
    if (drawn > cap) finishReason = "length";
    const f = countWords(answer.final);
    if (f === 0) text = fillerText(p.hash, n);
    else if (n > f) text = fillerText(p.hash, n - f) + "\n" + answer.final;
    else text = answer.final;
  }
  const stops = stopsOf(p.body);
  if (stops.length > 0) {
    let cut = -1;
    let hit: string | null = null;
    for (const s of stops) {
      const i = text.indexOf(s);
      if (i >= 0 && (cut < 0 || i < cut)) {
        cut = i;
        hit = s;
      }
    }
    if (cut >= 0) {
      text = text.slice(0, cut);
      finishReason = "stop";
      stopSequence = hit;
    }
  }
  const tokens = thought + Math.max(1, countWords(text));
  return { text, toolCall: undefined, reasoning, reasoningTokens: thought, tokens, finishReason, stopSequence, skill };
}
