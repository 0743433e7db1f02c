/**
 * Writes the reasoning-extract seed set: synthetic web documents of varied
 * length (100 to about 8,000 words), language (mostly English; German,
 * French, Spanish and Chinese-like text, some with a wrong or missing
 * language tag) and quality (spam and boilerplate, narrative, how-to pages
 * and reviews, science explanations, stepwise math, proofs, forum answers),
 * from a fixed random seed.
 *
 *   bun configs/gen/reasoning-extract.ts [COUNT] [OUT]
 *   (default 2200 configs/seeds/reasoning-extract.jsonl)
 */
import { writeFileSync } from "node:fs";
import { seededRandom } from "../../src/util/hash.ts";
import { type Draw, foreign, forum, howto, math, narrative, type ParagraphMaker, proof, science, spam } from "./web-text.ts";

const rand = seededRandom(20251126);
const draw: Draw = {
  next: rand,
  int: (lo, hi) => lo + Math.floor(rand() * (hi - lo + 1)),
  pick: <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)] as T,
};

type Lang = "en" | "de" | "fr" | "es" | "zh";

/** One kind of page: its share of the set, its language and how its paragraphs are made. */
interface Kind {
  name: string;
  share: number;
  lang: Lang;
  /** the page's own paragraphs; boilerplate is added around them */
  body: ParagraphMaker;
  domains: readonly string[];
}

/** Mostly `main`, with some paragraphs of `aside` mixed in. */
function mixed(main: ParagraphMaker, aside: ParagraphMaker, asideShare: number): ParagraphMaker {
  return (d) => (d.next() < asideShare ? aside(d) : main(d));
}

const KINDS: Kind[] = [
  { name: "spam", share: 16, lang: "en", body: spam, domains: ["best-deals-online.biz", "cheap-shop24.net", "top10reviews.info"] },
  { name: "narrative", share: 22, lang: "en", body: narrative, domains: ["myblog.example.org", "travelstories.example.com", "localnews.example.net"] },
  { name: "howto", share: 14, lang: "en", body: howto, domains: ["howto.example.com", "reviews.example.net"] },
  { name: "science", share: 10, lang: "en", body: mixed(science, narrative, 0.35), domains: ["sciencefacts.example.org", "edu.example.edu"] },
  { name: "math", share: 7, lang: "en", body: mixed(math, narrative, 0.1), domains: ["mathnotes.example.edu", "tutoring.example.com"] },
  { name: "proof", share: 4, lang: "en", body: mixed(proof, math, 0.2), domains: ["lecture-notes.example.edu", "proofwiki.example.org"] },
  { name: "forum", share: 6, lang: "en", body: mixed(forum, narrative, 0.2), domains: ["forum.example.com", "askdev.example.net"] },
  { name: "blog-with-math", share: 4, lang: "en", body: mixed(narrative, mixed(math, science, 0.5), 0.3), domains: ["myblog.example.org", "parenting.example.com"] },
  { name: "german", share: 5, lang: "de", body: foreign("de"), domains: ["nachrichten.example.de", "blog.example.de"] },
  { name: "french", share: 4, lang: "fr", body: foreign("fr"), domains: ["journal.example.fr", "blog.example.fr"] },
  { name: "spanish", share: 4, lang: "es", body: foreign("es"), domains: ["noticias.example.es", "blog.example.es"] },
  { name: "chinese", share: 4, lang: "zh", body: foreign("zh"), domains: ["news.example.cn", "bbs.example.cn"] },
];
const TOTAL_SHARE = KINDS.reduce((s, k) => s + k.share, 0);

function pickKind(): Kind {
  let r = rand() * TOTAL_SHARE;
  for (const k of KINDS) {
    r -= k.share;
    if (r < 0) return k;
  }
  return KINDS[KINDS.length - 1] as Kind;
}

/** Target length in words: lognormal around 250, a few very long pages, clamped to 100..8000. */
function targetWords(): number {
  if (rand() < 0.015) return draw.int(4000, 8000);
  const u1 = rand() || 1e-9;
  const z = Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * rand());
  return Math.max(100, Math.min(8000, Math.round(250 * Math.exp(0.9 * z))));
}

/** Words as a reader would count them: Chinese-like text has no spaces, so about 1.5 characters a word. */
function wordCount(text: string, lang: Lang): number {
  if (lang === "zh") return Math.round(text.length / 1.5);
  return text.split(/\s+/).filter((w) => w.length > 0).length;
}

/** The language tag the crawler wrote: mostly right, sometimes wrong or missing. */
function langTag(lang: Lang): string | undefined {
  const r = rand();
  if (lang === "en") return r < 0.92 ? "en" : r < 0.95 ? "en-US" : undefined;
  return r < 0.8 ? lang : r < 0.9 ? "en" : undefined;
}

function slug(): string {
  const parts = ["guide", "notes", "post", "story", "answer", "review", "page", "article", "item", "thread"];
  return `${draw.pick(parts)}-${draw.int(1, 99999)}`;
}

function document(i: number): Record<string, unknown> {
  const kind = pickKind();
  const target = targetWords();
  const paragraphs: string[] = [];
  const english = kind.lang === "en";
  // Real pages carry navigation and footers; English spam is all of that already.
  if (english && kind.name !== "spam" && rand() < 0.3) paragraphs.push(spam(draw));
  let words = 0;
  while (words < target) {
    const p = kind.body(draw);
    paragraphs.push(p);
    words += wordCount(p, kind.lang);
  }
  if (english && kind.name !== "spam" && rand() < 0.3) paragraphs.push(spam(draw));
  const seed: Record<string, unknown> = {
    id: `doc-${String(i).padStart(5, "0")}`,
    text: paragraphs.join("\n\n"),
    url: `https://${draw.pick(kind.domains)}/${slug()}`,
  };
  const tag = langTag(kind.lang);
  if (tag !== undefined) seed.lang = tag;
  return seed;
}

const count = Number(process.argv[2] ?? 2200);
const out = process.argv[3] ?? new URL("../seeds/reasoning-extract.jsonl", import.meta.url).pathname;
const lines: string[] = [];
for (let i = 0; i < count; i++) lines.push(JSON.stringify(document(i)));
writeFileSync(out, `${lines.join("\n")}\n`);
console.log(`wrote ${count} documents to ${out}`);
