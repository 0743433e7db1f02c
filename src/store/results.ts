import { DeliverPolicy, type JetStreamClient, type JsMsg, jetstream } from "@nats-io/jetstream";
import { headers as makeHeaders } from "@nats-io/transport-node";
import { describe } from "../errors.ts";
import { addRow, emptyTally } from "../engine/metrics.ts";
import { retry } from "../util/retry.ts";
import type { Logger } from "../log.ts";
import type { Metric } from "../plugin/api.ts";
import { formatIssues } from "../util/issues.ts";
import { type OutputRow, OutputRowHeadSchema } from "../protocol/task.ts";
import type { NatsLink } from "./connection.ts";
import { ApiCodes, isApiError, isTimeout } from "./errors.ts";
import { Streams, Subjects } from "./names.ts";
import { PUBLISH_TIMEOUT_MS } from "./setup.ts";
import type { JobTally } from "../protocol/job.ts";

const H_STATUS = "Mx-Status";
/** Tries at making a reader of a job's rows whose request times out, and the time each may take. */
const READER_TRIES = 6;
const READER_TIMEOUT_MS = 2000;
const H_USAGE = "Mx-Usage";
const H_METRICS = "Mx-Metrics";
/** a failed row's task id and error (JSON strings, the error cut short), for the tally of failure reasons */
const H_TASK = "Mx-Task";
const H_ERROR = "Mx-Error";

/** Whether a row was stored by this call or was already there. */
export type StoreOutcome = "stored" | "duplicate";

export interface ResultStats {
  stored: number;
  duplicates: number;
  /** rows read back that were not rows */
  garbage: number;
  /** rows cut down because they were over the server's payload limit */
  oversized: number;
}

/**
 * The dataset of every job: one message per task on `mx.row.<job>.<task
 * hash>`, stored with "expected last subject sequence 0", so the first row of
 * a task wins and any later one (a task run twice after a redelivery) is
 * refused by the server, whenever it comes. No time window is involved.
 */
export class ResultStore {
  readonly stats: ResultStats = { stored: 0, duplicates: 0, garbage: 0, oversized: 0 };
  /** JetStream with a short request timeout, for making readers (see #reader) */
  readonly #readerJs: JetStreamClient;

  constructor(
    private readonly link: NatsLink,
    private readonly log: Logger,
  ) {
    this.#readerJs = jetstream(link.nc, { timeout: READER_TIMEOUT_MS });
  }

  /**
   * Store a task's row unless the task has one; resolves with what was done
   * and the row as stored (a row too large for one message is replaced by a
   * failed row saying so). Throws when NATS cannot be reached (try again).
   */
  async store(row: OutputRow): Promise<{ outcome: StoreOutcome; row: OutputRow }> {
    let stored = row;
    let data = new TextEncoder().encode(JSON.stringify(row));
    const limit = this.link.maxPayload() - 4096;
    if (data.length > limit) {
      this.stats.oversized++;
      stored = oversizedRow(row, data.length, limit);
      data = new TextEncoder().encode(JSON.stringify(stored));
    }
    const h = makeHeaders();
    h.set(H_STATUS, stored.status);
    h.set(H_USAGE, `${stored.usage.prompt},${stored.usage.completion}`);
    const m = JSON.stringify(stored.metrics ?? {});
    if (m.length <= 2048) h.set(H_METRICS, m);
    if (stored.status === "failed") {
      h.set(H_TASK, JSON.stringify(stored.id.slice(0, 512)));
      h.set(H_ERROR, JSON.stringify((stored.error ?? "").slice(0, 2000)));
    }
    try {
      await this.link.unlessDisconnected(
        this.link.publish(Subjects.row(row.job, row.id), data, { expectLastSubjectSequence: 0, headers: h, timeoutMs: PUBLISH_TIMEOUT_MS }),
      );
      this.stats.stored++;
      return { outcome: "stored", row: stored };
    } catch (err) {
      if (isApiError(err, ApiCodes.wrongLastSequence)) {
        this.stats.duplicates++;
        return { outcome: "duplicate", row: stored };
      }
      throw err;
    }
  }

  /** Drop a job's rows for good (its dataset is gone); how many were dropped. */
  async purge(job: string): Promise<number> {
    const r = await this.link.jsm.streams.purge(Streams.rows, { filter: Subjects.jobRows(job) });
    return r.purged;
  }

  /** Whether the task has its row. */
  async exists(job: string, id: string): Promise<boolean> {
    const m = await this.link.jsm.streams.getMessage(Streams.rows, { last_by_subj: Subjects.row(job, id) });
    return m !== null;
  }

  /** A task's row as JSON text, or undefined while it has none. */
  async row(job: string, id: string): Promise<string | undefined> {
    const m = await this.link.jsm.streams.getMessage(Streams.rows, { last_by_subj: Subjects.row(job, id) });
    return m ? new TextDecoder().decode(m.data) : undefined;
  }

  /**
   * The last `n` rows a job stored, oldest first, as JSON text. The stream
   * finds the job's last row by subject; from there a reader of the job's
   * rows starts a window back, widened until it holds `n` rows or reaches
   * the stream's start, so only about `n` rows are read whatever the
   * job's size.
   */
  async tail(job: string, n: number): Promise<string[]> {
    const last = await this.link.jsm.streams.getMessage(Streams.rows, { last_by_subj: Subjects.jobRows(job) });
    if (!last || n < 1) return [];
    const decoder = new TextDecoder();
    for (let window = 2 * n; ; window *= 4) {
      const from = Math.max(1, last.seq - window + 1);
      const consumer = await this.#reader(job, false, from);
      try {
        const pending = (await consumer.info()).num_pending;
        if (pending < n && from > 1) continue;
        const out: string[] = [];
        let left = pending;
        while (left > 0) {
          const batch = await consumer.fetch({ max_messages: Math.min(left, 512), expires: 5000 });
          let got = 0;
          for await (const m of batch) {
            got++;
            const text = decoder.decode(m.data);
            if (rowProblem(text) !== undefined) continue;
            out.push(text);
            if (out.length > n) out.shift();
          }
          if (got === 0) break;
          left -= got;
        }
        return out;
      } finally {
        await consumer.delete().catch(() => undefined);
      }
    }
  }

  /**
   * The job's rows in the order they were stored, as JSON text (one row
   * each). With `running` it follows the job: while `running()` says the job
   * goes on it waits for more rows, and ends once the job has ended and every
   * row is read; without it, it ends with the rows stored now. Each is
   * checked to be a row; anything else on the job's subjects is counted,
   * logged and skipped.
   */
  async *rows(job: string, running?: () => Promise<boolean>): AsyncGenerator<string> {
    const decoder = new TextDecoder();
    for await (const m of this.#read(job, false, running)) {
      const text = decoder.decode(m.data);
      const problem = rowProblem(text);
      if (problem === undefined) yield text;
      else this.#garbage(m.subject, problem);
    }
  }

  /**
   * Exact figures of a job from its stored rows (their headers only): how
   * many rows, ok and failed, tokens, the workflow's metric sums, and the
   * rows over time by when each was stored.
   */
  async tally(job: string, defs: readonly Metric[]): Promise<{ rows: number; tally: JobTally }> {
    const t = emptyTally();
    let rows = 0;
    for await (const m of this.#read(job, true)) {
      const status = m.headers?.get(H_STATUS);
      if (status !== "ok" && status !== "failed") {
        this.#garbage(m.subject, `no ${H_STATUS} header`);
        continue;
      }
      const [p, c] = (m.headers?.get(H_USAGE) ?? "0,0").split(",").map((x) => Number(x) || 0);
      const mh = m.headers?.get(H_METRICS);
      const metrics = mh ? headerMetrics(mh) : undefined;
      const failure = status === "failed" ? { id: headerString(m.headers?.get(H_TASK)), error: headerString(m.headers?.get(H_ERROR)) } : {};
      const timings = { finished: Math.floor(m.info.timestampNanos / 1e6) };
      addRow(t, { status, usage: { prompt: p ?? 0, completion: c ?? 0 }, timings, ...(metrics ? { metrics } : {}), ...failure }, defs);
      rows++;
    }
    return { rows, tally: t };
  }

  /**
   * An ordered consumer of a job's rows. Making one is tried again, soon,
   * when the request times out: on a NATS cluster missing a server,
   * nats-server 2.9 may place the new consumer on the missing server and
   * never answer, which happens to about one try in three while it is gone.
   */
  #reader(job: string, headersOnly: boolean, fromSeq?: number) {
    const start = fromSeq === undefined ? {} : { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: fromSeq };
    return retry(() => this.#readerJs.consumers.get(Streams.rows, { filter_subjects: Subjects.jobRows(job), headers_only: headersOnly, ...start }), {
      tries: READER_TRIES,
      baseMs: 50,
      maxMs: 200,
      retryable: isTimeout,
      onRetry: (err, attempt) => this.log.debug({ job, attempt, err: describe(err) }, "cannot make a reader of the job's rows, trying again"),
    });
  }

  /** The messages on a job's row subjects, through an ordered consumer, in batches. */
  async *#read(job: string, headersOnly: boolean, running?: () => Promise<boolean>): AsyncGenerator<JsMsg> {
    const consumer = await this.#reader(job, headersOnly);
    try {
      let live = running ? await running() : false;
      // A job that has ended gets no more rows: read exactly what is there.
      let left = live ? Number.POSITIVE_INFINITY : (await consumer.info()).num_pending;
      while (left > 0) {
        const max = Number.isFinite(left) ? Math.min(left, 512) : 512;
        const batch = await consumer.fetch({ max_messages: max, expires: live ? 1000 : 5000 });
        let n = 0;
        for await (const m of batch) {
          n++;
          yield m;
        }
        if (Number.isFinite(left)) {
          left -= n;
          if (n === 0) break;
        } else if (n === 0 && !(await running?.())) {
          live = false;
          left = (await consumer.info()).num_pending;
        }
      }
    } finally {
      await consumer.delete().catch(() => undefined);
    }
  }

  #garbage(subject: string, problem: string): void {
    this.stats.garbage++;
    this.log.warn({ subject, problem }, "dropped a message that is not a row");
  }
}

/** Why a stored row is not one, or undefined when it is. */
function rowProblem(text: string): string | undefined {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    return `not JSON: ${describe(err)}`;
  }
  const parsed = OutputRowHeadSchema.safeParse(raw);
  return parsed.success ? undefined : formatIssues(parsed.error);
}

/** A row's metrics from its metrics header, or undefined when the header is not an object of them. */
/** A JSON string header's value (undefined when absent or not one). */
function headerString(text: string | undefined): string | undefined {
  if (!text) return undefined;
  try {
    const v: unknown = JSON.parse(text);
    return typeof v === "string" ? v : undefined;
  } catch {
    return undefined;
  }
}

function headerMetrics(text: string): Record<string, unknown> | undefined {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    return undefined;
  }
  const parsed = OutputRowHeadSchema.shape.metrics.safeParse(raw);
  return parsed.success ? parsed.data : undefined;
}

/** A failed row standing in for one too large to store. */
function oversizedRow(row: OutputRow, bytes: number, limit: number): OutputRow {
  const seedText = JSON.stringify(row.seed ?? null);
  return {
    ...row,
    seed: seedText.length < limit / 2 ? row.seed : null,
    status: "failed",
    error: `row of ${bytes} bytes is over the ${limit} bytes NATS takes in one message`,
    output: null,
    history: [],
  };
}
