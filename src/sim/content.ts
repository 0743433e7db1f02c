import { Rng, countWords, fnv1a, fnvInt, hex32, mix32, normal } from "./hash.ts";
import type { ResolvedSimOptions } from "./options.ts";
import { type ChatBody, type SimMessage, maxTokensOf, messageText, stopsOf } from "./request.ts";
import type { Skill, SkillAnswer, SkillInput } from "./skills/types.ts";
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
  /** decode steps; equals the word count of the text (of name + arguments for a tool call) */
  tokens: number;
  finishReason: "stop" | "length" | "tool_calls";
  skill: string;
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
  let a = 0x811c9dc5;
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

/** Answers a prepared request with the first skill that matches (else filler text). */
export function composeAnswer(p: PreparedRequest, o: ResolvedSimOptions, skills: readonly Skill[]): Composed {
  const input: SkillInput = { body: p.body, options: o, hash: p.hash, texts: p.texts };
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
  const cap = Math.min(maxTokensOf(p.body) ?? Infinity, o.maxLen);
  if (answer.kind === "tool") {
    const toolCall = { id: `call_${hex32(mix32(p.hash ^ SALT_CALL_ID))}`, name: answer.name, arguments: answer.arguments };
    return { text: null, toolCall, tokens: 1 + countWords(answer.arguments), finishReason: "tool_calls", skill };
  }
  let text: string;
  let finishReason: Composed["finishReason"] = "stop";
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
    for (const s of stops) {
      const i = text.indexOf(s);
      if (i >= 0 && (cut < 0 || i < cut)) cut = i;
    }
    if (cut >= 0) {
      text = text.slice(0, cut);
      finishReason = "stop";
    }
  }
  return { text, toolCall: undefined, tokens: Math.max(1, countWords(text)), finishReason, skill };
}
