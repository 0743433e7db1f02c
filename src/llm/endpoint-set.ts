import { ConfigError } from "../errors.ts";
import { formatIssues } from "../util/issues.ts";
import { type LlmEndpointConfig, LlmEndpointConfigSchema, type LlmEndpointInput, normalizeBaseUrl } from "./config.ts";
import { Endpoint, REDIRECT } from "./endpoint.ts";
import type { Cancellable } from "../util/wait.ts";

/**
 * The endpoints a client knows, which change at run time: supervised servers
 * that restart, endpoints other nodes advertise. Each is listed by one or
 * more sources and dropped when none lists it; requests waiting for an
 * endpoint to come back are woken when one does.
 */
export class EndpointSet {
  /** in listing order; replaced, never mutated, so a router iterating it is safe */
  list: readonly Endpoint[] = [];
  private readonly byUrl = new Map<string, Endpoint>();
  private readonly waiters = new Set<() => void>();

  constructor(private readonly onChange: (list: readonly Endpoint[], added: Endpoint[]) => void) {}

  get(url: string): Endpoint | undefined {
    return this.byUrl.get(url) ?? this.byUrl.get(safeNormalize(url));
  }

  /**
   * Make `source`'s endpoints exactly `configs`: add the new ones, update
   * those listed again, drop those it no longer lists (unless another source
   * does). Returns the endpoints added and removed.
   */
  set(source: string, configs: readonly LlmEndpointConfig[]): { added: Endpoint[]; removed: Endpoint[] } {
    const keep = new Set<string>();
    const added: Endpoint[] = [];
    const removed: Endpoint[] = [];
    for (const config of configs) {
      keep.add(config.url);
      const ep = this.addOne(source, config);
      if (ep) added.push(ep);
    }
    for (const ep of this.list) {
      if (keep.has(ep.url) || !ep.sources.has(source)) continue;
      ep.sources.delete(source);
      if (ep.sources.size === 0) removed.push(ep);
    }
    this.commit(added, removed);
    return { added, removed };
  }

  add(source: string, config: LlmEndpointConfig): Endpoint | undefined {
    const ep = this.addOne(source, config);
    this.commit(ep ? [ep] : [], []);
    return ep;
  }

  /** Drop `source`'s listing of `url` (every source's when none is named); true when the endpoint went. */
  remove(url: string, source?: string): boolean {
    const ep = this.get(url);
    if (!ep) return false;
    if (source === undefined) ep.sources.clear();
    else ep.sources.delete(source);
    if (ep.sources.size > 0) return false;
    this.commit([], [ep]);
    return true;
  }

  /** Something changed that may let a waiting request go: wake them all to choose again. */
  wake(): void {
    for (const w of [...this.waiters]) w();
  }

  /** Wait until `wake` or `ms`, whichever is first; `c.cancel` abandons the wait. */
  waitForChange(ms: number, c: Cancellable): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const done = () => {
        clearTimeout(timer);
        this.waiters.delete(done);
        c.cancel = null;
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.waiters.add(done);
      c.cancel = (why) => {
        clearTimeout(timer);
        this.waiters.delete(done);
        reject(why);
      };
    });
  }

  private addOne(source: string, config: LlmEndpointConfig): Endpoint | undefined {
    const known = this.byUrl.get(config.url);
    if (known) {
      known.sources.add(source);
      known.update(config);
      return undefined;
    }
    const ep = new Endpoint(config);
    ep.sources.add(source);
    return ep;
  }

  private commit(added: Endpoint[], removed: Endpoint[]): void {
    if (added.length === 0 && removed.length === 0) return;
    for (const ep of removed) {
      ep.removed = true;
      this.byUrl.delete(ep.url);
      // requests queued for it choose again; those in flight finish
      ep.slots.rejectAll(REDIRECT);
    }
    for (const ep of added) this.byUrl.set(ep.url, ep);
    this.list = [...this.list.filter((e) => !e.removed), ...added];
    this.onChange(this.list, added);
    if (added.length > 0) this.wake();
  }
}

/**
 * Validate endpoints given at run time (the same schema as the config's).
 *
 * @throws ConfigError naming the endpoint and the field, e.g.
 *   `LLM endpoint #2: "url": Invalid URL`
 */
export function parseEndpoints(inputs: readonly LlmEndpointInput[]): LlmEndpointConfig[] {
  const seen = new Set<string>();
  return inputs.map((input, i) => {
    const parsed = LlmEndpointConfigSchema.safeParse(input);
    if (!parsed.success) throw new ConfigError(`LLM endpoint #${i + 1}: ${formatIssues(parsed.error)}`);
    if (seen.has(parsed.data.url)) throw new ConfigError(`LLM endpoint #${i + 1}: ${parsed.data.url} is listed twice`);
    seen.add(parsed.data.url);
    return parsed.data;
  });
}

function safeNormalize(url: string): string {
  try {
    return normalizeBaseUrl(url);
  } catch {
    return url;
  }
}
