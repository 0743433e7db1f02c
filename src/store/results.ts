import { DeliverPolicy, type JetStreamClient, type JsMsg, jetstream } from "@nats-io/jetstream";
import { headers as makeHeaders } from "@nats-io/transport-node";
import { z } from "zod";
import { describe } from "../errors.ts";
import { addRow, emptyTally, type TalliedRow } from "../engine/metrics.ts";
import { retry } from "../util/retry.ts";
import type { Logger } from "../log.ts";
import type { Metric } from "../plugin/api.ts";
import { formatIssues } from "../util/issues.ts";
import { type OutputRow, OutputRowHeadSchema } from "../protocol/task.ts";
import { ClaimSchema, type Claim } from "../protocol/claim.ts";
import type { PartStore } from "./parts.ts";
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
/**
 * the row's task id (a JSON string), on every row: the tally, which reads
 * headers only, counts a message as a row only when this id hashes to the
 * subject it is on; with a failed row's error, the tally of failure reasons
 */
const H_TASK = "Mx-Task";
/** Tries at storing a row over garbage that came first on its subject (a publisher that keeps at it). */
const OVER_GARBAGE_TRIES = 5;
const H_ERROR = "Mx-Error";
/** the job's retry round the row was stored in (none: its first run); a failed row of an earlier round is run again */
const H_ROUND = "Mx-Round";
/** set on a row stored with its large texts as objects: its body is a {@link PartedRowSchema} */
const H_PARTS = "Mx-Parts";
/**
 * set on the marker that replaces a row a follower has written (a job with
 * `purgeRows: "followed"`): no body, the row's other headers, so the tally
 * still counts it and a task run twice still finds its subject taken
 */
const H_FOLLOWED = "Mx-Followed";
/** on a marker: the stream sequence of the row it stands for (the tally counts the two once) */
const H_ROW_SEQ = "Mx-Row-Seq";
/** the headers a marker keeps of its row */
const MARKER_KEEPS = [H_STATUS, H_USAGE, H_METRICS, H_TASK, H_ERROR] as const;
/** Markers in flight at once while rows are handed over. */
const HANDOVER_WINDOW = 256;

/** The body of a row too large for one message: the row with its large texts emptied, and their claims. */
const PartedRowSchema = z.object({ row: z.looseObject({ id: z.string().min(1), job: z.string().min(1) }), parts: z.array(ClaimSchema).min(1) });
const utf8 = new TextEncoder();

/**
 * Whether a row was stored by this call (over nothing, or `replaced`: over
 * the failed row of an earlier round, its task run again) or was already there.
 */
export type StoreOutcome = "stored" | "replaced" | "duplicate";

/** A failed row of a job whose failed tasks run again, read back to run its task again. */
export interface StaleRow {
  id: string;
  trial: number;
  /** the seed as the row kept it (not an object when the row could not keep it) */
  seed: unknown;
}

/** Whether a stored row is a failed row of an earlier round than `round` (its task runs again). */
function isStale(headers: { get(k: string): string } | undefined, round: number): boolean {
  if (round < 1 || headers?.get(H_STATUS) !== "failed") return false;
  return (Number(headers.get(H_ROUND)) || 0) < round;
}

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
 * While a job's failed tasks run again (retry round n), a row stored over
 * a failed row of an earlier round replaces it: stored with "expected last
 * subject sequence" that row's (the first row of the round wins, as
 * before), then the failed row is purged. Until it is (a node that died in
 * between), the failed row is superseded: readers of a retried job's rows
 * skip a failed row that a later row of its task follows.
 */
export class ResultStore {
  readonly stats: ResultStats = { stored: 0, duplicates: 0, garbage: 0, oversized: 0 };
  /** JetStream with a short request timeout, for making readers (see #reader) */
  readonly #readerJs: JetStreamClient;

  constructor(
    private readonly link: NatsLink,
    private readonly log: Logger,
    /** where the large texts of rows over the payload limit go (none: such a row is stored failed) */
    private readonly parts?: PartStore,
  ) {
    this.#readerJs = jetstream(link.nc, { timeout: READER_TIMEOUT_MS });
  }

  /**
   * Store a task's row unless the task has one; resolves with what was done
   * and the row as stored. A row too large for one message has its large
   * texts stored as objects, the message referring to them; one too large
   * even so (or with no object store) is replaced by a failed row saying so.
   * Throws when NATS cannot be reached (try again). Once the row is stored,
   * the objects of the task's state are removed. `round` is the job's retry
   * round (0 before any): a failed row of an earlier round is replaced.
   */
  async store(row: OutputRow, round = 0): Promise<{ outcome: StoreOutcome; row: OutputRow }> {
    let stored = row;
    let data: Uint8Array = utf8.encode(JSON.stringify(row));
    const limit = this.link.maxPayload() - 4096;
    let parted = 0;
    if (data.length > limit && this.parts?.enabled) {
      const encode = (r: OutputRow, parts: Claim[] | undefined) => utf8.encode(JSON.stringify(parts ? { row: r, parts } : r));
      const fit = await this.parts.encodeFitting("row", row.job, row.id, row, encode, limit);
      if (fit.data.length <= limit) {
        data = fit.data;
        parted = fit.claims.length;
      }
    }
    if (data.length > limit) {
      this.stats.oversized++;
      stored = oversizedRow(row, data.length, limit);
      data = utf8.encode(JSON.stringify(stored));
    }
    const h = makeHeaders();
    if (parted > 0) h.set(H_PARTS, String(parted));
    h.set(H_STATUS, stored.status);
    h.set(H_USAGE, `${stored.usage.prompt},${stored.usage.completion}`);
    const m = JSON.stringify(stored.metrics ?? {});
    if (m.length <= 2048) h.set(H_METRICS, m);
    h.set(H_TASK, JSON.stringify(stored.id));
    if (round > 0) h.set(H_ROUND, String(round));
    if (stored.status === "failed") {
      h.set(H_ERROR, JSON.stringify((stored.error ?? "").slice(0, 2000)));
    }
    const subject = Subjects.row(row.job, row.id);
    // 0: the first row of the task wins; else the sequence of garbage (or of a stale failed row) found there, which the row replaces.
    let after = 0;
    let replacing = false;
    for (let tries = 1; ; tries++) {
      try {
        const ack = await this.link.unlessDisconnected(
          this.link.publish(subject, data, { expectLastSubjectSequence: after, headers: h, timeoutMs: PUBLISH_TIMEOUT_MS }),
        );
        // The garbage before the row goes, so the subject holds the row alone.
        if (after > 0) await this.link.jsm.streams.purge(Streams.rows, { filter: subject, seq: ack.seq });
        this.stats.stored++;
        void this.parts?.finished(row.job, row.id);
        return { outcome: replacing ? "replaced" : "stored", row: stored };
      } catch (err) {
        if (!isApiError(err, ApiCodes.wrongLastSequence)) throw err;
      }
      // Something is on the subject: the task's row (a task run twice), or garbage someone published there.
      const last = await this.link.jsm.streams.getMessage(Streams.rows, { last_by_subj: subject });
      const problem = last && !isMarker(last.header, row.job, last.subject) ? rowProblem(new TextDecoder().decode(last.data), row.job, last.subject) : undefined;
      if (last && problem === undefined && isStale(last.header, round) && tries < OVER_GARBAGE_TRIES) {
        // the failed row of an earlier round: this task ran again, and its new row takes the place
        after = last.seq;
        replacing = true;
        continue;
      }
      if (last && problem === undefined) {
        this.stats.duplicates++;
        void this.parts?.finished(row.job, row.id);
        return { outcome: "duplicate", row: stored };
      }
      if (last) this.#garbage(subject, `${problem}; the task's row is stored after it`);
      if (tries >= OVER_GARBAGE_TRIES) throw new Error(`garbage keeps coming on ${subject}, where the row of task "${row.id}" goes`);
      after = last?.seq ?? 0;
    }
  }

  /** A stored row's JSON text, whole: a row stored in parts gets its texts back from the object store. */
  async #whole(data: Uint8Array, headers: { get(k: string): string } | undefined, subject: string): Promise<string> {
    const text = new TextDecoder().decode(data);
    if (!headers?.get(H_PARTS) || !this.parts) return text;
    let raw: unknown;
    try {
      raw = JSON.parse(text);
    } catch {
      return text; // not a row: rowProblem says so
    }
    const body = PartedRowSchema.safeParse(raw);
    if (!body.success) return text; // not a row: rowProblem says so
    const { row, parts } = body.data;
    try {
      await this.parts.restore("row", row.job, row.id, row, parts, `the row on ${subject}`);
    } catch (err) {
      // The row is kept, saying what is missing, rather than dropped from the dataset.
      this.stats.garbage++;
      this.log.warn({ subject, err: describe(err) }, "cannot make a stored row whole");
      return JSON.stringify({ ...row, partsMissing: describe(err) });
    }
    return JSON.stringify(row);
  }

  /** Store a row's marker after it, then delete the row; false when it was handed over before. */
  async #replace(job: string, subject: string, seq: number, h: ReturnType<typeof makeHeaders>): Promise<boolean> {
    try {
      await this.link.unlessDisconnected(this.link.publish(subject, new Uint8Array(0), { expectLastSubjectSequence: seq, headers: h, timeoutMs: PUBLISH_TIMEOUT_MS }));
    } catch (err) {
      if (!isApiError(err, ApiCodes.wrongLastSequence)) throw err;
      // Something came after the row: its marker (a handover cut short before the delete), or garbage.
      const last = await this.link.jsm.streams.getMessage(Streams.rows, { last_by_subj: subject });
      if (!last || !isMarker(last.header, job, subject) || last.header?.get(H_ROW_SEQ) !== String(seq)) return false;
    }
    await this.link.jsm.streams.deleteMessage(Streams.rows, seq, false);
    return true;
  }

  /** Drop a job's rows for good (its dataset is gone), and every object of the job; how many rows were dropped. */
  async purge(job: string): Promise<number> {
    const r = await this.link.jsm.streams.purge(Streams.rows, { filter: Subjects.jobRows(job) });
    await this.parts?.purge(job);
    return r.purged;
  }

  /** The job ended: the objects its task states left (a node that died mid-hop) are removed; rows keep theirs. */
  async jobEnded(job: string): Promise<void> {
    await this.parts?.jobEnded(job);
  }

  /**
   * Whether the task has its row, or had one a follower has written (garbage
   * on its subject is none); with the job's retry `round`, a failed row of an
   * earlier round is none either (its task runs again).
   */
  async exists(job: string, id: string, round = 0): Promise<boolean> {
    const m = await this.link.jsm.streams.getMessage(Streams.rows, { last_by_subj: Subjects.row(job, id) });
    if (!m) return false;
    if (isMarker(m.header, job, m.subject)) return true;
    if (round > 0 && isStale(m.header, round)) return false;
    return rowProblem(await this.#whole(m.data, m.header, m.subject), job, m.subject) === undefined;
  }

  /** A task's row as JSON text, or undefined while it has none (or it was handed to a follower). */
  async row(job: string, id: string): Promise<string | undefined> {
    const m = await this.link.jsm.streams.getMessage(Streams.rows, { last_by_subj: Subjects.row(job, id) });
    if (!m || isMarker(m.header, job, m.subject)) return undefined;
    const text = await this.#whole(m.data, m.header, m.subject);
    return rowProblem(text, job, m.subject) === undefined ? text : undefined;
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
        const out: { data: Uint8Array; headers: JsMsg["headers"]; subject: string; seq: number }[] = [];
        let left = pending;
        while (left > 0) {
          const batch = await consumer.fetch({ max_messages: Math.min(left, 512), expires: 5000 });
          let got = 0;
          for await (const m of batch) {
            got++;
            if (isMarker(m.headers, job, m.subject)) continue;
            if (!m.headers?.get(H_PARTS) && rowProblem(decoder.decode(m.data), job, m.subject) !== undefined) continue;
            out.push({ data: m.data, headers: m.headers, subject: m.subject, seq: m.seq });
            if (out.length > n) out.shift();
          }
          if (got === 0) break;
          left -= got;
        }
        const texts: string[] = [];
        for (const m of out) {
          const text = await this.#whole(m.data, m.headers, m.subject);
          if (rowProblem(text, job, m.subject) !== undefined) continue;
          if (m.headers?.get(H_STATUS) === "failed" && (await this.#superseded(job, m.subject, m.seq))) continue;
          texts.push(text);
        }
        return texts;
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
   * logged and skipped. With `retried` (the job's failed tasks ran again), a
   * failed row that a later row of its task follows is skipped.
   */
  async *rows(job: string, running?: () => Promise<boolean>, retried = false): AsyncGenerator<string> {
    for await (const r of this.rowsAfter(job, 0, running, retried)) yield r.text;
  }

  /**
   * The job's rows stored after stream sequence `after`, each with its
   * sequence, in the order they were stored (see `rows`). A follower that
   * has written every row up to some sequence carries on from there: the
   * rows past it are the ones it has not written, whatever was handed over
   * and removed before it.
   */
  async *rowsAfter(job: string, after: number, running?: () => Promise<boolean>, retried = false): AsyncGenerator<{ seq: number; text: string }> {
    for await (const m of this.#read(job, false, running, after + 1)) {
      if (isMarker(m.headers, job, m.subject)) continue;
      const text = await this.#whole(m.data, m.headers, m.subject);
      const problem = rowProblem(text, job, m.subject);
      if (problem !== undefined) this.#garbage(m.subject, problem);
      else if (!(retried && m.headers?.get(H_STATUS) === "failed" && (await this.#superseded(job, m.subject, m.seq)))) yield { seq: m.seq, text };
    }
  }

  /**
   * A follower has durably written every row of the job up to stream
   * sequence `upto`: each such row stored at or after `from` is replaced
   * by its marker: the marker is stored after it on its subject (expecting
   * the row to be the subject's last message, so the subject is never
   * empty and a task run again still finds it taken), then the row is
   * deleted. Not a rollup: nats-server 2.9 may skip messages of a
   * filtered consumer reading the stream while subjects are rolled up,
   * and the follower reads as rows are handed over. Idempotent (a row
   * whose marker is there already is only deleted); returns how many rows
   * were handed over.
   */
  async handOver(job: string, upto: number, from = 1): Promise<number> {
    if (upto < from) return 0;
    const consumer = await this.#reader(job, true, from);
    let handed = 0;
    const inFlight = new Set<Promise<void>>();
    let failure: unknown;
    try {
      let left = Math.min((await consumer.info()).num_pending, upto - from + 1);
      reading: while (left > 0) {
        const batch = await consumer.fetch({ max_messages: Math.min(left, 512), expires: 5000 });
        let got = 0;
        for await (const m of batch) {
          got++;
          left--;
          if (m.seq > upto) break reading;
          if (isMarker(m.headers, job, m.subject) || !isRowHead(m.headers, job, m.subject)) continue;
          const h = makeHeaders();
          for (const k of MARKER_KEEPS) {
            const v = m.headers?.get(k);
            if (v) h.set(k, v);
          }
          h.set(H_FOLLOWED, "1");
          h.set(H_ROW_SEQ, String(m.seq));
          const p = this.#replace(job, m.subject, m.seq, h)
            .then(
              (replaced) => void (replaced && handed++),
              (err: unknown) => void (failure ??= err),
            )
            .finally(() => inFlight.delete(p));
          inFlight.add(p);
          if (inFlight.size >= HANDOVER_WINDOW) await Promise.race(inFlight);
          if (failure !== undefined) throw failure;
        }
        if (got === 0) break;
      }
      await Promise.all(inFlight);
      if (failure !== undefined) throw failure;
      return handed;
    } finally {
      await Promise.all(inFlight);
      await consumer.delete().catch(() => undefined);
    }
  }

  /**
   * Whether the message at `seq` is followed on its subject by a row (it
   * was replaced, and the purge of it did not happen): it is purged now.
   */
  async #superseded(job: string, subject: string, seq: number): Promise<boolean> {
    const last = await this.link.jsm.streams.getMessage(Streams.rows, { last_by_subj: subject });
    if (!last || last.seq === seq) return false;
    const text = await this.#whole(last.data, last.header, last.subject);
    if (rowProblem(text, job, subject) !== undefined) return false;
    await this.link.jsm.streams.purge(Streams.rows, { filter: subject, seq: last.seq }).catch(() => undefined);
    return true;
  }

  /**
   * Exact figures of a job from its stored rows (their headers only): how
   * many rows, ok and failed, tokens, the workflow's metric sums, and the
   * rows over time by when each was stored.
   */
  async tally(job: string, defs: readonly Metric[], round = 0): Promise<{ rows: number; tally: JobTally; stale: number; settled: JobTally }> {
    const t = emptyTally();
    // with a retry round: the failed rows of earlier rounds (their tasks run again), and what the others add up to
    const settled = emptyTally();
    let stale = 0;
    let rows = 0;
    // Rows counted in this read, by sequence: a marker whose row was counted (handed over while read) is not counted again.
    const counted = new SeqSet();
    for await (const m of this.#read(job, true)) {
      if (m.headers?.get(H_FOLLOWED) === "1") {
        const rowSeq = Number(m.headers.get(H_ROW_SEQ));
        if (counted.has(rowSeq)) continue;
      }
      const status = m.headers?.get(H_STATUS);
      // A row stored by an earlier matrixd has no task header when ok: its body tells (garbage's too).
      const task = headerString(m.headers?.get(H_TASK)) ?? (status === "ok" ? await this.#idFromBody(job, m.seq, m.subject) : undefined);
      if ((status !== "ok" && status !== "failed") || task === undefined || Subjects.row(job, task) !== m.subject) {
        this.#garbage(m.subject, `no ${H_STATUS} header, or no ${H_TASK} header of the task whose subject it is on`);
        continue;
      }
      const [p, c] = (m.headers?.get(H_USAGE) ?? "0,0").split(",").map((x) => Number(x) || 0);
      const mh = m.headers?.get(H_METRICS);
      const metrics = mh ? headerMetrics(mh) : undefined;
      const failure = status === "failed" ? { id: task, error: headerString(m.headers?.get(H_ERROR)) } : {};
      const timings = { finished: Math.floor(m.info.timestampNanos / 1e6) };
      const tallied: TalliedRow = { status, usage: { prompt: p ?? 0, completion: c ?? 0 }, timings, ...(metrics ? { metrics } : {}), ...failure };
      const isOld = isStale(m.headers, round);
      // a failed row replaced in an earlier round whose purge did not happen is no row any more
      if (isOld && (await this.#superseded(job, m.subject, m.seq))) continue;
      addRow(t, tallied, defs);
      if (isOld) stale++;
      else if (round > 0) addRow(settled, tallied, defs);
      rows++;
      counted.add(m.seq);
    }
    return { rows, tally: t, stale, settled: round > 0 ? settled : t };
  }

  /**
   * Mark a task's failed row as of retry round `round` as it is (a task that
   * cannot run again: its row did not keep its seed), so the round does not
   * wait for it. False when the row is not a stale failed row any more.
   */
  async restamp(job: string, id: string, round: number): Promise<boolean> {
    const subject = Subjects.row(job, id);
    const last = await this.link.jsm.streams.getMessage(Streams.rows, { last_by_subj: subject });
    if (!last || !isStale(last.header, round)) return false;
    const h = makeHeaders();
    for (const [k, v] of last.header) for (const x of v) h.append(k, x);
    h.set(H_ROUND, String(round));
    try {
      await this.link.publish(subject, last.data, { expectLastSubjectSequence: last.seq, headers: h, timeoutMs: PUBLISH_TIMEOUT_MS });
    } catch (err) {
      if (isApiError(err, ApiCodes.wrongLastSequence)) return false;
      throw err;
    }
    await this.link.jsm.streams.purge(Streams.rows, { filter: subject, keep: 1 });
    return true;
  }

  /**
   * The failed rows of a job stored before retry round `round` (their tasks
   * run again), read one at a time: the headers of every row, the body of
   * each such one.
   */
  async *staleRows(job: string, round: number): AsyncGenerator<StaleRow> {
    for await (const m of this.#read(job, true)) {
      if (!isStale(m.headers, round)) continue;
      // the subject's last message: the failed row, unless replaced already
      const full = await this.link.jsm.streams.getMessage(Streams.rows, { last_by_subj: m.subject });
      if (!full || full.seq !== m.seq) continue;
      const text = await this.#whole(full.data, full.header, full.subject);
      if (rowProblem(text, job, full.subject) !== undefined) continue;
      const row = RowCheckSchema.parse(JSON.parse(text));
      yield { id: row.id, trial: row.trial, seed: row.seed };
    }
  }

  /** The task id of the row stored at `seq`, or undefined when that is not a row of the job. */
  async #idFromBody(job: string, seq: number, subject: string): Promise<string | undefined> {
    const m = await this.link.jsm.streams.getMessage(Streams.rows, { seq });
    if (!m) return undefined;
    const text = new TextDecoder().decode(m.data);
    return rowProblem(text, job, subject) === undefined ? OutputRowHeadSchema.shape.id.parse(JSON.parse(text).id) : undefined;
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
  async *#read(job: string, headersOnly: boolean, running?: () => Promise<boolean>, fromSeq?: number): AsyncGenerator<JsMsg> {
    const consumer = await this.#reader(job, headersOnly, fromSeq);
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

/** What a row read back must have, besides its head: the fields every row of matrixd has. */
const RowCheckSchema = OutputRowHeadSchema.extend({
  job: z.string(),
  workflow: z.string().min(1),
  trial: z.number().int().nonnegative(),
  history: z.array(z.unknown()),
});

/**
 * Why a message on a row subject is not the row of a task of `job`, or
 * undefined when it is: one line of JSON with a row's fields, of that job,
 * on the subject of its own task id. Anyone who may publish on the NATS
 * server can put anything there; this keeps it out of counts and datasets.
 */
function rowProblem(text: string, job: string, subject: string): string | undefined {
  // matrixd writes a row as JSON.stringify makes it, on one line; the dataset is one row per line.
  if (text.includes("\n")) return "not one line";
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    return `not JSON: ${describe(err)}`;
  }
  const parsed = RowCheckSchema.safeParse(raw);
  if (!parsed.success) return formatIssues(parsed.error);
  if (parsed.data.job !== job) return `a row of job "${parsed.data.job.slice(0, 80)}"`;
  if (Subjects.row(job, parsed.data.id) !== subject) return `the row of task "${parsed.data.id.slice(0, 80)}" on the subject of another task`;
  return undefined;
}

/** Stream sequences seen, as bits from the first one added: a read of a million rows keeps a few hundred KiB. */
class SeqSet {
  #base = -1;
  #bits = new Uint8Array(1024);

  add(seq: number): void {
    if (this.#base < 0) this.#base = seq;
    const i = seq - this.#base;
    if (i < 0) return;
    if (i >> 3 >= this.#bits.length) {
      const grown = new Uint8Array(Math.max(this.#bits.length * 2, (i >> 3) + 1));
      grown.set(this.#bits);
      this.#bits = grown;
    }
    this.#bits[i >> 3] = (this.#bits[i >> 3] as number) | (1 << (i & 7));
  }

  has(seq: number): boolean {
    const i = seq - this.#base;
    if (this.#base < 0 || !Number.isSafeInteger(i) || i < 0 || i >> 3 >= this.#bits.length) return false;
    return ((this.#bits[i >> 3] as number) & (1 << (i & 7))) !== 0;
  }
}

/** Headers of a message, as the client gives them. */
type Headers = { get(k: string): string } | undefined;

/** Whether the headers are a row's (status and the id of the task whose subject it is on). */
function isRowHead(headers: Headers, job: string, subject: string): boolean {
  const status = headers?.get(H_STATUS);
  const task = headerString(headers?.get(H_TASK));
  return (status === "ok" || status === "failed") && task !== undefined && Subjects.row(job, task) === subject;
}

/** Whether a message is the marker of a row handed to a follower, on the subject of its task. */
function isMarker(headers: Headers, job: string, subject: string): boolean {
  return headers?.get(H_FOLLOWED) === "1" && isRowHead(headers, job, subject);
}

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

/** A row's metrics from its metrics header, or undefined when the header is not an object of them. */
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
