/**
 * A cache of recently seen prompt prefixes (keys of message-list prefixes,
 * and of prompts extended with the answer given), standing in for vLLM's
 * automatic prefix caching: a request whose longest known prefix covers N
 * prompt tokens skips their prefill.
 *
 * Recency is kept with two generations of sets rather than one ordered map:
 * evicting a Map's oldest entry walks past every deleted slot before it, which
 * made eviction the most expensive thing the server did. A key seen in the
 * old generation is promoted; when the young one fills, the old one is
 * dropped whole. So a key lives at least `capacity / 2` inserts.
 */
export class PrefixCache {
  private young = new Set<number>();
  private old = new Set<number>();
  private readonly half: number;
  /** prompt tokens looked up, as vLLM's prefix_cache_queries counter */
  queries = 0;
  /** prompt tokens found, as vLLM's prefix_cache_hits counter */
  hits = 0;

  constructor(capacity: number) {
    this.half = Math.max(1, Math.floor(capacity / 2));
  }

  /**
   * Looks up the longest cached prefix, counts the query, then records every
   * prefix of this prompt. Returns the cached tokens (at most prompt - 1: the
   * last token is always computed, as in vLLM).
   */
  lookupAndInsert(keys: readonly number[], tokens: readonly number[], promptTokens: number): number {
    let cached = 0;
    for (let k = keys.length - 1; k >= 0; k--) {
      if (this.has(keys[k]!)) {
        cached = Math.min(tokens[k]!, Math.max(0, promptTokens - 1));
        break;
      }
    }
    this.queries += promptTokens;
    this.hits += cached;
    for (const key of keys) this.insert(key);
    return cached;
  }

  has(key: number): boolean {
    return this.young.has(key) || this.old.has(key);
  }

  insert(key: number): void {
    if (this.young.has(key)) return;
    if (this.young.size >= this.half) {
      this.old = this.young;
      this.young = new Set();
    }
    this.young.add(key);
  }
}
