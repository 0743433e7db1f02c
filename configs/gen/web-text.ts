/**
 * Paragraph makers for synthetic web documents, one per kind of page:
 * boilerplate and spam, plain narrative, how-to and reviews, science
 * explanations, stepwise math, proofs, forum answers, and non-English text.
 * Used by configs/gen/reasoning-extract.ts; every draw comes from the
 * caller's seeded generator, so the output is the same on every run.
 */

/** The seeded draws a maker uses. */
export interface Draw {
  /** uniform in [0, 1) */
  next(): number;
  int(lo: number, hi: number): number;
  pick<T>(xs: readonly T[]): T;
}

/** Makes one paragraph of a kind. */
export type ParagraphMaker = (d: Draw) => string;

const cap = (s: string) => s.charAt(0).toUpperCase() + s.slice(1);

// --- boilerplate and spam -------------------------------------------------

const PRODUCTS = ["phone cases", "running shoes", "garden hoses", "vitamin gummies", "car parts", "LED strips", "office chairs", "protein powder", "phone chargers", "yoga mats"];
const NAV = ["Home", "About us", "Shop", "Blog", "Contact", "FAQ", "Careers", "Privacy Policy", "Terms of Service", "Sitemap", "Login", "Cart"];

export const spam: ParagraphMaker = (d) => {
  const p = d.pick(PRODUCTS);
  const forms = [
    () => `Buy cheap ${p} online! Best ${p} deals ${d.int(2019, 2025)}. Free shipping on all ${p}. Order ${p} now and save ${d.int(10, 90)}%! Top rated ${p}, cheap ${p}, discount ${p}.`,
    () => `We use cookies to improve your experience on our website. By continuing to browse you agree to our use of cookies. Accept all | Reject | Settings`,
    () => Array.from({ length: d.int(5, 12) }, () => d.pick(NAV)).join(" | "),
    () => `Copyright ${d.int(2005, 2025)} ${cap(p)} World Ltd. All rights reserved. Sign up for our newsletter to get ${d.int(5, 25)}% off your first order of ${p}.`,
    () => `Click here to claim your free ${p.replace(/s$/, "")}! Limited offer, only ${d.int(2, 40)} left in stock. Hurry, offer ends soon!!! Visit our shop for more ${p}.`,
    () => `Tags: ${Array.from({ length: d.int(6, 15) }, () => d.pick(PRODUCTS)).join(", ")}`,
  ];
  return d.pick(forms)();
};

// --- plain narrative, how-to, reviews ---------------------------------------

const PEOPLE = ["my grandmother", "our neighbour", "the old fisherman", "a young teacher", "my brother", "the mayor", "a tourist from Ohio", "the baker", "my best friend", "the new manager"];
const PLACES = ["the harbour", "a small village in the hills", "the city market", "the train station", "the lake house", "a crowded cafe", "the school library", "the mountain trail", "the old cinema", "the farm"];
const DID = ["walked to", "drove past", "spent the afternoon at", "told us a story about", "took photos of", "got lost near", "had lunch at", "remembered", "painted a picture of", "waited for hours at"];
const WHEN = ["last summer", "on a rainy Sunday", "early in the morning", "after the storm", "during the holidays", "one cold evening", "years ago", "yesterday"];
const FEEL = ["It was a quiet day and nobody was in a hurry.", "We laughed about it for weeks.", "The light was beautiful and the air smelled of rain.", "Nothing much happened, but it felt important.", "Everyone agreed it was the best day of the year.", "I still think about it sometimes."];

export const narrative: ParagraphMaker = (d) => {
  const n = d.int(3, 7);
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    out.push(d.next() < 0.35 ? d.pick(FEEL) : `${cap(d.pick(PEOPLE))} ${d.pick(DID)} ${d.pick(PLACES)} ${d.pick(WHEN)}.`);
  }
  return out.join(" ");
};

const TASKS = ["repot a houseplant", "bake sourdough bread", "clean a cast iron pan", "set up a home router", "paint a bedroom wall", "train a puppy to sit", "fix a squeaky door", "plan a weekend hike"];
const STEPS_HOWTO = ["gather everything you need first", "take your time and do not rush", "check the instructions that came with it", "ask a friend to help if it gets heavy", "clean up as you go", "wait a day before you judge the result", "keep the receipt just in case"];

export const howto: ParagraphMaker = (d) => {
  const task = d.pick(TASKS);
  if (d.next() < 0.5) {
    const steps = Array.from({ length: d.int(3, 6) }, (_, i) => `${i + 1}. ${cap(d.pick(STEPS_HOWTO))}.`);
    return `How to ${task}. ${steps.join(" ")} That is all there is to it, and you will enjoy the result.`;
  }
  const stars = d.int(1, 5);
  return `Review: I bought this to ${task} and I would give it ${stars} out of 5 stars. ${stars >= 4 ? "It works great and the price is fair." : "It broke after two weeks and support never answered."} ${d.pick(FEEL)} Would I buy it again? ${stars >= 3 ? "Probably yes." : "No."}`;
};

// --- science explanations (some causal reasoning) ---------------------------

const PHENOMENA: [string, string, string][] = [
  ["water is heated at high altitude", "it boils below 100 degrees Celsius", "the air pressure above the surface is lower"],
  ["a metal spoon is left in hot soup", "its handle becomes hot", "metals conduct heat through free electrons"],
  ["ice is added to a drink", "the drink cools down", "melting absorbs latent heat from the liquid"],
  ["a satellite moves to a higher orbit", "its orbital speed decreases", "gravity weakens with the square of the distance"],
  ["salt is spread on an icy road", "the ice melts at lower temperatures", "dissolved ions lower the freezing point of water"],
  ["a population of rabbits has no predators", "it grows until food runs short", "birth rate exceeds death rate while resources last"],
  ["light passes from air into glass", "it bends towards the normal", "light travels more slowly in glass than in air"],
  ["a battery is short-circuited", "it heats up quickly", "the low resistance lets a very large current flow"],
];

export const science: ParagraphMaker = (d) => {
  const [when, effect, cause] = d.pick(PHENOMENA);
  const forms = [
    () => `When ${when}, ${effect}. This happens because ${cause}. Therefore, if we change the conditions, the effect changes too.`,
    () => `Consider what happens when ${when}. Since ${cause}, it follows that ${effect}. This explains a common everyday observation.`,
    () => `Many people notice that ${effect} when ${when}. The reason is that ${cause}, which implies that the effect is not an accident.`,
    () => `${cap(when)}, and as a result ${effect}. Scientists explain this by noting that ${cause}.`,
  ];
  return d.pick(forms)();
};

// --- stepwise math -----------------------------------------------------------

function linear(d: Draw): string {
  const x = d.int(-12, 25);
  const a = d.int(2, 9);
  const b = d.int(-30, 40);
  const c = a * x + b;
  const sign = b < 0 ? `- ${-b}` : `+ ${b}`;
  return (
    `Problem: solve ${a}x ${sign} = ${c}. Step 1: subtract ${b} from both sides, which gives ${a}x = ${c - b}. ` +
    `Step 2: divide both sides by ${a}, so x = ${(c - b) / a}. Check: substituting x = ${x} gives ${a} * ${x} ${sign} = ${c}, ` +
    `which matches the right-hand side. Therefore the solution is x = ${x}.`
  );
}

function series(d: Draw): string {
  const n = d.int(5, 200);
  const sum = (n * (n + 1)) / 2;
  return (
    `We want the sum 1 + 2 + ... + ${n}. Write the sum twice, once forwards and once backwards, and add the two lines term by term. ` +
    `Each of the ${n} columns adds up to ${n + 1}, so twice the sum equals ${n} * ${n + 1} = ${n * (n + 1)}. ` +
    `Hence the sum is ${n * (n + 1)} / 2 = ${sum}.`
  );
}

function quadratic(d: Draw): string {
  const r = d.int(-9, 9);
  const s = d.int(-9, 9);
  const b = -(r + s);
  const c = r * s;
  const term = (k: number, v: string) => (k === 0 ? "" : ` ${k < 0 ? "-" : "+"} ${Math.abs(k)}${v}`);
  return (
    `Consider the equation x^2${term(b, "x")}${term(c, "")} = 0. We look for two numbers whose product is ${c} and whose sum is ${-b}. ` +
    `The numbers ${r} and ${s} work, since ${r} * ${s} = ${c} and ${r} + ${s} = ${r + s}. ` +
    `Thus the equation factors as (x - ${r})(x - ${s}) = 0, and because a product is zero only when a factor is zero, x = ${r} or x = ${s}.`
  );
}

function probability(d: Draw): string {
  const red = d.int(2, 12);
  const blue = d.int(2, 12);
  const total = red + blue;
  return (
    `A bag holds ${red} red and ${blue} blue marbles, and we draw two without replacement. ` +
    `The probability that the first is red is ${red}/${total}. Given that, ${red - 1} red marbles remain among ${total - 1}, ` +
    `so the second is red with probability ${red - 1}/${total - 1}. Multiplying, the probability of two reds is ` +
    `${red * (red - 1)}/${total * (total - 1)}, which is about ${((red * (red - 1)) / (total * (total - 1))).toFixed(3)}.`
  );
}

function rate(d: Draw): string {
  const v1 = d.int(30, 90);
  const v2 = d.int(30, 90);
  const dist = d.int(60, 600);
  const t = dist / (v1 + v2);
  return (
    `Two trains start ${dist} km apart and travel towards each other at ${v1} km/h and ${v2} km/h. ` +
    `Their distance shrinks by ${v1} + ${v2} = ${v1 + v2} km every hour. Therefore they meet after ${dist} / ${v1 + v2} hours, ` +
    `that is about ${t.toFixed(2)} hours, and by then the first train has covered ${(v1 * t).toFixed(1)} km.`
  );
}

export const math: ParagraphMaker = (d) => d.pick([linear, series, quadratic, probability, rate])(d);

// --- proofs ----------------------------------------------------------------

function evenProduct(d: Draw): string {
  const k = d.int(2, 9);
  return (
    `Theorem. For every integer n, the number n(n + 1) is even. Proof. Suppose n is even; then n = 2m for some integer m, ` +
    `hence n(n + 1) = 2m(n + 1) is even. Otherwise n is odd, so n + 1 is even, and the product is again even. ` +
    `In both cases the claim holds. For example, with n = ${k} we get ${k * (k + 1)}, which is even. QED.`
  );
}

function oddSquares(d: Draw): string {
  const n = d.int(3, 12);
  return (
    `Lemma. The sum of the first n odd numbers is n^2. Proof by induction on n. For n = 1 the sum is 1 = 1^2. ` +
    `Assume the claim holds for n. Adding the next odd number 2n + 1 gives n^2 + 2n + 1 = (n + 1)^2, so the claim holds for n + 1. ` +
    `By induction it holds for every n. As a check, the first ${n} odd numbers add up to ${n * n}. QED.`
  );
}

function irrational(d: Draw): string {
  const p = d.pick([2, 3, 5, 7, 11, 13]);
  return (
    `Claim: the square root of ${p} is irrational. Proof. Assume, for a contradiction, that sqrt(${p}) = a/b with a and b coprime integers. ` +
    `Squaring gives a^2 = ${p}b^2, so ${p} divides a^2, and since ${p} is prime, ${p} divides a. Write a = ${p}c; then ${p}^2 c^2 = ${p}b^2, ` +
    `which implies b^2 = ${p}c^2, so ${p} divides b as well. This contradicts the assumption that a and b are coprime. Therefore sqrt(${p}) is irrational.`
  );
}

function pigeonhole(d: Draw): string {
  const boxes = d.int(3, 30);
  return (
    `Proposition. If ${boxes + 1} letters are put into ${boxes} mailboxes, some mailbox holds at least two letters. ` +
    `Proof. Suppose not: then every mailbox holds at most one letter, and the mailboxes hold at most ${boxes} letters in total. ` +
    `But there are ${boxes + 1} letters, a contradiction. Hence some mailbox holds two or more. This is the pigeonhole principle.`
  );
}

export const proof: ParagraphMaker = (d) => d.pick([evenProduct, oddSquares, irrational, pigeonhole])(d);

// --- forum answers -----------------------------------------------------------

const BUGS: [string, string, string][] = [
  ["my loop never ends", "the counter is never incremented inside the loop", "add the increment at the end of the loop body"],
  ["the program prints the wrong average", "integer division truncates the result before it is stored", "convert one operand to a float before dividing"],
  ["my query returns duplicate rows", "the join matches several rows in the second table", "add a distinct clause or join on a unique key"],
  ["the website is slow on mobile", "the images are several megabytes each", "resize and compress the images before serving them"],
  ["my recursive function overflows the stack", "the base case is never reached for negative input", "check for negative input before recursing"],
];

export const forum: ParagraphMaker = (d) => {
  const [symptom, cause, fix] = d.pick(BUGS);
  return (
    `Question from a user: ${symptom}, what am I doing wrong? Answer: The problem is that ${cause}. ` +
    `Because of that, each run ends up in the same state, so the symptom follows directly. If you ${fix}, the cause disappears, ` +
    `and therefore the symptom goes away too. ${d.next() < 0.5 ? "Hope this helps!" : "Marked as solved."}`
  );
};

// --- other languages ---------------------------------------------------------

const DE = ["Der Hund ist nicht mit dem Ball im Garten gespielt.", "Die Stadt hat eine neue Brücke, und das ist für alle gut.", "Wir sind am Sonntag mit der Familie auf den Berg gewandert.", "Es ist kalt, aber die Sonne scheint auch heute.", "Das Museum wird im Sommer für Besucher geöffnet.", "Die Kinder spielen im Park, und die Eltern sitzen auf der Bank.", "Der Zug ist leider nicht pünktlich, aber wir haben Zeit."];
const FR = ["Le chat dort sur la chaise dans la cuisine.", "Nous sommes allés au marché avec les enfants.", "La ville est belle, mais il pleut souvent en hiver.", "Il a acheté une voiture pour son travail.", "Les vacances sont finies et nous rentrons à la maison.", "Ce restaurant est très bon, et le service est rapide.", "Elle lit un livre sur la terrasse du café."];
const ES = ["El perro duerme en la casa de los abuelos.", "Nosotros fuimos al mercado con los niños.", "La ciudad es bonita, pero hace calor en verano.", "Compró una bicicleta para ir al trabajo.", "Las vacaciones son largas y la playa está cerca.", "El restaurante del barrio es muy bueno y barato.", "Ella lee un libro en la terraza por la tarde."];
// Common ideographs; the result reads as Chinese-like text to a script check, not as Chinese.
const HAN = "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说产种面而方后多定行学法所民得经十三之进着等部度家电力里如水化高自二理起小物现实加量都两体制机当使点从业本去把性好应开它合还因由其些然前外天政四日那社义事平形相全表间样与关各重新线内数正心反你明看原又么利比或但质气第向道命此变条只没结解问意建月公无系军很情者最立代想已通并提直题党程展五果料象员革位入常文总次品式活设及管特件长求老头基资边流路级少图山统接知较将组见计别她手角期根论运农指几九区强放决西被干做必战先回则任取据处队南给色光门即保治北造百规热领七海口东导器压志世金增争济阶油思术极交受联什认六共权收证改清己美再采转更单风切打白教速花带安场身车例真务具万每目至达走积示议声报斗完类八离华名确才科张信马节话米整空元况今集温传土许步群广石记需段研界拉林律叫且究观越织装影算低持音众书布复容儿须际商非验连断深难近矿千周委素技备半办青省列习响约支般史感劳便团往酸历市克何除消构府称太准精值号率族维划选标写存候毛亲快效斯院查江型眼王按格养易置派层片始却专状育厂京识适属圆包火住调满县局照参红细引听该铁价严";

function hanSentence(d: Draw): string {
  const n = d.int(8, 30);
  let s = "";
  for (let i = 0; i < n; i++) {
    s += HAN.charAt(d.int(0, HAN.length - 1));
    if (i > 3 && i < n - 2 && d.next() < 0.08) s += "，";
  }
  return `${s}。`;
}

/** A paragraph in a language other than English. */
export function foreign(lang: "de" | "fr" | "es" | "zh"): ParagraphMaker {
  if (lang === "zh") return (d) => Array.from({ length: d.int(3, 8) }, () => hanSentence(d)).join("");
  const pool = lang === "de" ? DE : lang === "fr" ? FR : ES;
  return (d) => Array.from({ length: d.int(3, 7) }, () => d.pick(pool)).join(" ");
}
