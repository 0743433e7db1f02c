import { roleKey, type StepLatency } from "../bus/bus.ts";
import { DURATION_BUCKETS_MS, RecentHistogram } from "../metrics/histogram.ts";

/** One role's step durations, ms. */
export interface RoleTimes {
  readonly workflow: string;
  readonly role: string;
  readonly hist: RecentHistogram;
}

/**
 * How long each role's steps take on this node (its `run`, from start to
 * result): cumulative buckets for /metrics, and the quantiles of the last
 * minute or two for the role load members publish. A step costs two map
 * lookups and a bucket increment.
 */
export class StepTimes implements StepLatency {
  readonly #byWorkflow = new Map<string, Map<string, RoleTimes>>();
  readonly #byKey = new Map<string, RoleTimes>();

  /** The histogram of a role's steps, made at its first step. */
  of(workflow: string, role: string): RecentHistogram {
    let roles = this.#byWorkflow.get(workflow);
    if (!roles) {
      roles = new Map();
      this.#byWorkflow.set(workflow, roles);
    }
    let t = roles.get(role);
    if (!t) {
      t = { workflow, role, hist: new RecentHistogram(DURATION_BUCKETS_MS) };
      roles.set(role, t);
      this.#byKey.set(roleKey(workflow, role), t);
    }
    return t.hist;
  }

  /** A step of `ms` that ended at `now` (performance.now). */
  observe(workflow: string, role: string, ms: number, now: number): void {
    this.of(workflow, role).observeAt(ms, now);
  }

  latency(key: string, now = performance.now()): { p50Ms: number; p99Ms: number } | undefined {
    const h = this.#byKey.get(key)?.hist;
    const p50 = h?.recentQuantile(0.5, now);
    const p99 = h?.recentQuantile(0.99, now);
    return p50 === undefined || p99 === undefined ? undefined : { p50Ms: round(p50), p99Ms: round(p99) };
  }

  /** Every role that ran a step here. */
  roles(): Iterable<RoleTimes> {
    return this.#byKey.values();
  }
}

function round(ms: number): number {
  return Math.round(ms * 100) / 100;
}
