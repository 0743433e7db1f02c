/**
 * Writes the coral seed set: multiple-choice questions with known answers
 * (integer arithmetic, syllogisms, orderings), from a fixed random seed.
 *
 *   bun configs/gen/coral.ts [COUNT] [OUT]   (default 3000 configs/seeds/coral.jsonl)
 */
import { writeFileSync } from "node:fs";
import { seededRandom } from "../../src/util/hash.ts";

const LETTERS = "ABCDEFGHIJ";
const rand = seededRandom(20251125);
const int = (lo: number, hi: number) => lo + Math.floor(rand() * (hi - lo + 1));
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)] as T;

function shuffle<T>(xs: T[]): T[] {
  for (let i = xs.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [xs[i], xs[j]] = [xs[j] as T, xs[i] as T];
  }
  return xs;
}

function arithmetic(): { question: string; correct: string; wrong: string[] } {
  const a = int(2, 99);
  const b = int(2, 99);
  const c = int(2, 12);
  const form = int(0, 3);
  let expr: string;
  let value: number;
  if (form === 0) [expr, value] = [`${a} + ${b}`, a + b];
  else if (form === 1) [expr, value] = [`${a} - ${b} * ${c}`, a - b * c];
  else if (form === 2) [expr, value] = [`(${a} + ${b}) * ${c}`, (a + b) * c];
  else [expr, value] = [`${a} * ${c} - ${b}`, a * c - b];
  const wrong = new Set<number>();
  while (wrong.size < 3) {
    const w = value + pick([-10, -2, -1, 1, 2, 10, c, -c]) * int(1, 3);
    if (w !== value) wrong.add(w);
  }
  return { question: `What is ${expr}?`, correct: String(value), wrong: [...wrong].map(String) };
}

const THINGS = ["blip", "florp", "zark", "quib", "dorn", "mesk", "tull", "vint"];
const NAMES = ["Ada", "Bo", "Cy", "Dee", "Eli", "Fay", "Gus", "Hal", "Ivy", "Jo"];

function syllogism(): { question: string; correct: string; wrong: string[] } {
  const [x, y] = shuffle([...THINGS]).slice(0, 2) as [string, string];
  const who = pick(NAMES);
  const valid = rand() < 0.5;
  const question = valid
    ? `Every ${x} is a ${y}. ${who} is a ${x}. Is ${who} a ${y}?`
    : `Every ${x} is a ${y}. ${who} is a ${y}. Is ${who} a ${x}?`;
  return valid
    ? { question, correct: "Yes", wrong: ["No", "It cannot be determined"] }
    : { question, correct: "It cannot be determined", wrong: ["Yes", "No"] };
}

function ordering(): { question: string; correct: string; wrong: string[] } {
  const people = shuffle([...NAMES]).slice(0, 4);
  const heights = people.map(() => int(150, 200));
  const facts = people.map((p, i) => `${p} is ${heights[i]} cm tall.`).join(" ");
  const tallest = people[heights.indexOf(Math.max(...heights))] as string;
  return { question: `${facts} Who is the tallest?`, correct: tallest, wrong: people.filter((p) => p !== tallest) };
}

const count = Number(process.argv[2] ?? 3000);
const out = process.argv[3] ?? "configs/seeds/coral.jsonl";
const lines: string[] = [];
for (let i = 0; i < count; i++) {
  const r = rand();
  const q = r < 0.7 ? arithmetic() : r < 0.85 ? syllogism() : ordering();
  const options = shuffle([q.correct, ...q.wrong]);
  const answer = LETTERS[options.indexOf(q.correct)] as string;
  lines.push(JSON.stringify({ id: `q${String(i + 1).padStart(5, "0")}`, question: q.question, options, answer }));
}
writeFileSync(out, `${lines.join("\n")}\n`);
console.log(`wrote ${count} coral seeds to ${out}`);
