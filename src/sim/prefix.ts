/**
 * An LRU of recently seen prompt prefixes (keys of message-list prefixes,
 * and of prompts extended with the answer given), standing in for vLLM's
 * automatic prefix caching: a request whose longest known prefix covers N
 * prompt tokens skips their prefill.
 */
export class PrefixCache {
  private readonly map = new Map<number, true>();
  /** prompt tokens looked up, as vLLM's prefix_cache_queries counter */
  queries = 0;
  /** prompt tokens found, as vLLM's prefix_cache_hits counter */
  hits = 0;

  constructor(private readonly capacity: number) {}

  /**
   * Looks up the longest cached prefix, counts the query, then records every
   * prefix of this prompt. Returns the cached tokens (at most prompt - 1: the
   * last token is always computed, as in vLLM).
   */
  lookupAndInsert(keys: readonly number[], tokens: readonly number[], promptTokens: number): number {
    let cached = 0;
    for (let k = keys.length - 1; k >= 0; k--) {
      if (this.map.has(keys[k]!)) {
        cached = Math.min(tokens[k]!, Math.max(0, promptTokens - 1));
        break;
      }
    }
    this.queries += promptTokens;
    this.hits += cached;
    for (const key of keys) this.insert(key);
    return cached;
  }

  insert(key: number): void {
    if (this.map.has(key)) this.map.delete(key);
    else if (this.map.size >= this.capacity) {
      const oldest = this.map.keys().next();
      if (!oldest.done) this.map.delete(oldest.value);
    }
    this.map.set(key, true);
  }
}
