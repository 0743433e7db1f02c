/**
 * A cheap language check of a document's text, so that the lang-filter does
 * not trust a crawler's `lang` field alone: scripts by character class, then
 * Latin-script languages by their most frequent function words.
 */

/** What {@link guessLanguage} can tell apart. */
export type GuessedLang = "en" | "de" | "fr" | "es" | "zh" | "other-script" | "unknown";

/** A guess and the evidence for it. */
export interface LangGuess {
  lang: GuessedLang;
  /** function-word hits per language (Latin script only) */
  hits: Record<"en" | "de" | "fr" | "es", number>;
  /** share of letters that are CJK ideographs or kana */
  cjk: number;
  /** share of letters in another non-Latin script (Cyrillic, Greek, Arabic...) */
  otherScript: number;
}

// Words frequent in one language and rare in the others; a word in two lists counts for both.
const FUNCTION_WORDS: Record<"en" | "de" | "fr" | "es", ReadonlySet<string>> = {
  en: new Set("the and of to is that it with for as was are this be on by which we from not or have an at were but they".split(" ")),
  de: new Set("der die und das ist nicht mit ein eine den zu von sich auch auf für dem wir es sind wird werden aber oder".split(" ")),
  fr: new Set("le la les et des est une un du que pour dans pas sur qui nous au avec ce sont mais ou cette il".split(" ")),
  es: new Set("el la los las y que es una un por para con del se no como más pero sus al lo son está".split(" ")),
};

/** Characters of the text looked at: a few pages are enough to tell. */
const SAMPLE_CHARS = 20_000;
/** Below this many function-word hits the text says too little to judge. */
const MIN_HITS = 4;

/**
 * Guess the language of a text from its first pages.
 *
 * @example
 * ```ts
 * guessLanguage("The cat sat on the mat and it was happy.").lang; // "en"
 * guessLanguage("Der Hund ist nicht mit dem Ball gespielt, und das ist gut.").lang; // "de"
 * ```
 */
export function guessLanguage(text: string): LangGuess {
  const sample = text.length > SAMPLE_CHARS ? text.slice(0, SAMPLE_CHARS) : text;
  let latin = 0;
  let cjk = 0;
  let other = 0;
  for (const ch of sample) {
    const c = ch.codePointAt(0) ?? 0;
    if ((c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || (c >= 0xc0 && c <= 0x24f)) latin++;
    else if ((c >= 0x4e00 && c <= 0x9fff) || (c >= 0x3040 && c <= 0x30ff) || (c >= 0x3400 && c <= 0x4dbf)) cjk++;
    else if (c >= 0x370 && /\p{L}/u.test(ch)) other++;
  }
  const letters = latin + cjk + other;
  const hits = { en: 0, de: 0, fr: 0, es: 0 };
  for (const word of sample.toLowerCase().split(/[^\p{L}]+/u)) {
    if (word.length === 0) continue;
    for (const lang of ["en", "de", "fr", "es"] as const) if (FUNCTION_WORDS[lang].has(word)) hits[lang]++;
  }
  const cjkShare = letters ? cjk / letters : 0;
  const otherShare = letters ? other / letters : 0;
  const guess = (lang: GuessedLang): LangGuess => ({ lang, hits, cjk: cjkShare, otherScript: otherShare });
  if (cjkShare > 0.3) return guess("zh");
  if (otherShare > 0.3) return guess("other-script");
  const ranked = (Object.entries(hits) as ["en" | "de" | "fr" | "es", number][]).sort((a, b) => b[1] - a[1]);
  const [best, second] = ranked as [["en" | "de" | "fr" | "es", number], ["en" | "de" | "fr" | "es", number]];
  if (best[1] < MIN_HITS) return guess("unknown");
  // Shared words (la, que, un...) make close calls between Romance languages; a clear lead decides.
  if (best[1] < second[1] * 1.2) return guess(best[0] === "en" || second[0] === "en" ? "unknown" : best[0]);
  return guess(best[0]);
}

/** True for `en`, `EN`, `en-US`, `en_GB`. */
export function isEnglishTag(tag: string): boolean {
  return /^en(?:[-_][a-z0-9]+)*$/i.test(tag.trim());
}
