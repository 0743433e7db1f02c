/** Coral-shaped seeds: `n` arithmetic questions. */
export function coralSeeds(n: number, prefix = "q"): Record<string, unknown>[] {
  return Array.from({ length: n }, (_, i) => ({
    id: `${prefix}${i}`,
    question: `What is ${i} + ${i + 1}?`,
    options: [String(2 * i + 1), String(2 * i + 2), String(2 * i)],
    answer: "A",
  }));
}
