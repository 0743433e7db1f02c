import { closeSync, existsSync, fsyncSync, ftruncateSync, openSync, readFileSync, renameSync, statSync, writeSync } from "node:fs";
import { dirname } from "node:path";
import { z } from "zod";
import { type ApiClient, ApiError } from "../src/api/client.ts";
import { WholeLines } from "../src/api/ndjson.ts";
import { describe, UsageError } from "../src/errors.ts";
import { formatIssues } from "../src/util/issues.ts";

/** Written rows are made durable (fsync, then the checkpoint) at least this often while rows come... */
const CHECKPOINT_MS = 500;
/** ...and once this many bytes are written since the last one. */
const CHECKPOINT_BYTES = 16 * 1024 * 1024;
/** Tries in a row that bring no row before the follower gives up. */
const TRIES_WITHOUT_PROGRESS = 5;
/** Reports of the last row, 200 ms apart, until a node says every row has left NATS. */
const SETTLE_TRIES = 300;

/**
 * The checkpoint next to a followed dataset (`FILE.pos`): the file's first
 * `bytes` bytes hold `rows` whole rows, every row of the job up to the rows
 * stream's sequence `seq`. Written after the file is synced, by rename, so
 * it never says more than the file holds.
 */
const CheckpointSchema = z.strictObject({
  job: z.string(),
  seq: z.number().int().nonnegative(),
  bytes: z.number().int().nonnegative(),
  rows: z.number().int().nonnegative(),
  /** the job had ended and every row of it is in the file */
  complete: z.boolean().optional(),
});
type Checkpoint = z.infer<typeof CheckpointSchema>;

/** The checkpoint file of a followed dataset. */
export function checkpointPath(out: string): string {
  return `${out}.pos`;
}

/**
 * A dataset file written as rows arrive: appended to, made durable in
 * batches, with a checkpoint saying how much of it is whole. Opened again,
 * it is cut back to its checkpoint (a torn last line, or rows written after
 * it, go; they are read again from the checkpoint's sequence).
 */
class FollowedFile {
  readonly #fd: number;
  /** what is written (not yet all durable) */
  seq: number;
  rows: number;
  #bytes: number;
  /** what the checkpoint says */
  durable: Checkpoint;
  #sinceSync = 0;
  #lastSync = Date.now();

  private constructor(
    readonly out: string,
    start: Checkpoint,
  ) {
    this.durable = start;
    this.seq = start.seq;
    this.rows = start.rows;
    this.#bytes = start.bytes;
    this.#fd = openSync(out, existsSync(out) ? "r+" : "w+");
    const size = statSync(out).size;
    if (size < start.bytes) {
      closeSync(this.#fd);
      throw new UsageError(`${out} has ${size} bytes but its checkpoint ${checkpointPath(out)} says ${start.bytes} were written: it was changed since; move both away to start over`);
    }
    // What follows the checkpoint (rows written after it, a torn line) is read again.
    if (size > start.bytes) ftruncateSync(this.#fd, start.bytes);
  }

  /** Open `out` for following `job`, where its checkpoint left it (a new file starts empty). */
  static open(out: string, job: string): FollowedFile {
    const pos = checkpointPath(out);
    if (!existsSync(pos)) {
      if (existsSync(out) && statSync(out).size > 0) {
        throw new UsageError(`${out} exists and has no checkpoint ${pos}: it was not written by matrixd results --follow; move it away or choose another --out`);
      }
      // The checkpoint first: a follower killed at any later point finds its file as the checkpoint says.
      const start = { job, seq: 0, bytes: 0, rows: 0 };
      writeCheckpoint(pos, start);
      return new FollowedFile(out, start);
    }
    let cp: Checkpoint;
    try {
      const parsed = CheckpointSchema.safeParse(JSON.parse(readFileSync(pos, "utf8")));
      if (!parsed.success) throw new Error(formatIssues(parsed.error));
      cp = parsed.data;
    } catch (err) {
      throw new UsageError(`${pos} is not a checkpoint of matrixd results --follow: ${describe(err)}`);
    }
    if (cp.job !== job) throw new UsageError(`${out} holds the rows of job "${cp.job}" (by ${pos}), not of "${job}"; choose another --out`);
    return new FollowedFile(out, cp);
  }

  /** Append whole rows (`rows` of them, the last at stream sequence `seq`). */
  append(bytes: Uint8Array, rows: number, seq: number): void {
    let off = 0;
    while (off < bytes.length) off += writeSync(this.#fd, bytes, off, bytes.length - off, this.#bytes + off);
    this.#bytes += bytes.length;
    this.rows += rows;
    this.seq = seq;
    this.#sinceSync += bytes.length;
  }

  /** Whether enough was written, or long enough ago, to make it durable now. */
  due(): boolean {
    return this.seq > this.durable.seq && (this.#sinceSync >= CHECKPOINT_BYTES || Date.now() - this.#lastSync >= CHECKPOINT_MS);
  }

  /** Make what is written durable and say so in the checkpoint; the checkpoint now. */
  checkpoint(complete = false): Checkpoint {
    if (this.seq === this.durable.seq && this.durable.complete === (complete || undefined)) return this.durable;
    fsyncSync(this.#fd);
    const cp = { job: this.durable.job, seq: this.seq, bytes: this.#bytes, rows: this.rows, ...(complete ? { complete } : {}) };
    writeCheckpoint(checkpointPath(this.out), cp);
    this.durable = cp;
    this.#sinceSync = 0;
    this.#lastSync = Date.now();
    return cp;
  }

  close(): void {
    closeSync(this.#fd);
  }
}

/** Write a checkpoint durably: a temporary file, synced, renamed over the old one, and the folder synced. */
function writeCheckpoint(path: string, cp: Checkpoint): void {
  const tmp = `${path}.tmp`;
  const fd = openSync(tmp, "w");
  try {
    writeSync(fd, `${JSON.stringify(cp)}\n`);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
  const dir = openSync(dirname(path), "r");
  try {
    fsyncSync(dir);
  } finally {
    closeSync(dir);
  }
}

const NL = 10;
const SEQ_HEAD = new TextEncoder().encode('{"seq":');
const ROW_HEAD = new TextEncoder().encode(',"row":');

/** The sequence and the row's bytes of one `{"seq":N,"row":{...}}` line (without its newline). */
function splitLine(line: Uint8Array): { seq: number; row: Uint8Array } {
  const bad = () => new Error(`the rows stream sent a line that is not {"seq":N,"row":{...}}: ${new TextDecoder().decode(line.subarray(0, 80))}`);
  for (let i = 0; i < SEQ_HEAD.length; i++) if (line[i] !== SEQ_HEAD[i]) throw bad();
  let i = SEQ_HEAD.length;
  let seq = 0;
  while (i < line.length && (line[i] as number) >= 48 && (line[i] as number) <= 57) seq = seq * 10 + ((line[i++] as number) - 48);
  for (let j = 0; j < ROW_HEAD.length; j++) if (line[i + j] !== ROW_HEAD[j]) throw bad();
  const start = i + ROW_HEAD.length;
  if (line[line.length - 1] !== 125 || start >= line.length - 1) throw bad();
  return { seq, row: line.subarray(start, line.length - 1) };
}

/** The follower's reports of what it has written, one at a time, the latest winning. */
class Reports {
  #sent = 0;
  #want = 0;
  #busy: Promise<void> | undefined;

  constructor(
    private readonly api: ApiClient,
    private readonly id: string,
    private readonly say: (text: string) => void,
  ) {}

  /** Report `seq` written (in the background unless awaited). */
  report(seq: number): Promise<void> {
    if (seq > this.#want) this.#want = seq;
    this.#busy ??= this.#send();
    return this.#busy;
  }

  /**
   * Report `seq` until a node says every row up to it has left NATS (the
   * node that took a report may die before it is done); bounded: rows
   * left behind are only disk, and a warning says so.
   */
  async settle(seq: number): Promise<void> {
    await this.report(seq);
    for (let tries = 0; tries < SETTLE_TRIES; tries++) {
      try {
        const { handedUpTo } = await this.api.failover(() => this.api.followed(this.id, seq), { withinMs: 10_000 });
        if (handedUpTo >= seq) return;
      } catch (err) {
        this.say(`cannot report rows up to ${seq} written: ${describe(err)}\n`);
      }
      await new Promise((r) => setTimeout(r, 200));
    }
    this.say(`the nodes have not yet dropped from NATS every row written (up to sequence ${seq}); matrixd cancel ID --purge removes the job's rows\n`);
  }

  async #send(): Promise<void> {
    try {
      while (this.#sent < this.#want) {
        const seq = this.#want;
        try {
          await this.api.failover(() => this.api.followed(this.id, seq), { withinMs: 10_000 });
          this.#sent = seq;
        } catch (err) {
          // The rows stay in NATS a while longer: the next report says more.
          this.say(`cannot report rows up to ${seq} written: ${describe(err)}\n`);
          return;
        }
      }
    } finally {
      this.#busy = undefined;
    }
  }
}

/**
 * Follow a job's rows into `out` as they are stored, until the job has
 * ended and every row is written; the rows in the file. Rows are appended
 * and made durable in batches; `out.pos` says how far (the rows stream's
 * sequence), and a follower started again with the same `out` carries on
 * from there, whether it stopped or was killed, so the file ends with each
 * row once. When the node stops answering, the rows come through another
 * member. For a job with purgeRows "followed", each checkpoint is reported
 * to the node, which drops those rows from NATS.
 */
export async function followTo(api: ApiClient, id: string, out: string, say: (text: string) => void = (t) => process.stderr.write(t)): Promise<number> {
  const first = await api.failover(() => api.job(id));
  const file = FollowedFile.open(out, id);
  const handed = first.purgeRows === "followed";
  const reports = new Reports(api, id, say);
  const checkpoint = (complete = false) => {
    const cp = file.checkpoint(complete);
    if (handed && cp.seq > 0) void reports.report(cp.seq);
  };
  const timer = setInterval(() => {
    if (file.due()) checkpoint();
  }, CHECKPOINT_MS);
  const onSwitch = (from: string, to: string) => say(`${from} stopped answering; carrying on through ${to}\n`);
  try {
    if (file.durable.complete) return file.rows;
    // What the file has from an earlier run may still be in NATS: say so first.
    if (handed && file.durable.seq > 0) await reports.report(file.durable.seq);
    for (let idle = 0; ; ) {
      const rowsBefore = file.rows;
      try {
        await readInto(api, id, file, onSwitch, () => file.due() && checkpoint());
      } catch (err) {
        if (!(err instanceof ApiError) || err.status !== 0) throw err;
        say(`${err.message}; reading on from the row after sequence ${file.seq}\n`);
      }
      const st = await api.failover(() => api.job(id), { onSwitch });
      const expected = st.ok + st.failed;
      if (st.state !== "running" && file.rows === expected) {
        checkpoint(true);
        if (handed) await reports.settle(file.seq);
        return file.rows;
      }
      if (file.rows > expected && st.state !== "running") {
        throw new ApiError(0, `${out} has ${file.rows} rows but job ${id} counts ${expected}`);
      }
      idle = file.rows > rowsBefore ? 0 : idle + 1;
      if (idle >= TRIES_WITHOUT_PROGRESS) {
        throw new ApiError(0, `job ${id} ${st.state === "running" ? "is still running" : `counts ${expected} rows`} but ${out} has ${file.rows} and no more come`);
      }
      await new Promise((r) => setTimeout(r, st.state === "running" ? 1000 : 200));
    }
  } finally {
    clearInterval(timer);
    try {
      file.checkpoint();
    } finally {
      file.close();
    }
  }
}

/** One read of the rows after the file's sequence, appended as they come; ends with the stream (ApiError 0 when it broke off). */
async function readInto(api: ApiClient, id: string, file: FollowedFile, onSwitch: (from: string, to: string) => void, afterChunk: () => void): Promise<void> {
  const body = await api.failover(() => api.rows(id, file.seq), { onSwitch });
  const lines = new WholeLines();
  try {
    for await (const chunk of body) {
      const data = lines.push(chunk);
      if (data === undefined) continue;
      const parts: Uint8Array[] = [];
      let rows = 0;
      let seq = file.seq;
      for (let start = 0; start < data.length; ) {
        const nl = data.indexOf(NL, start);
        const line = splitLine(data.subarray(start, nl));
        start = nl + 1;
        if (line.seq <= seq) continue; // read before (a stream started again)
        parts.push(line.row, NEWLINE);
        rows++;
        seq = line.seq;
      }
      if (rows > 0) file.append(concatAll(parts), rows, seq);
      afterChunk();
    }
  } catch (err) {
    if (err instanceof Error && err.message.startsWith("the rows stream sent")) throw err;
    throw new ApiError(0, `the rows of job ${id} from ${api.server} broke off after sequence ${file.seq}: ${describe(err)}`, undefined, { cause: err });
  }
  if (lines.pending > 0) throw new ApiError(0, `the rows of job ${id} from ${api.server} ended inside a line after sequence ${file.seq}`);
}

const NEWLINE = new Uint8Array([NL]);

function concatAll(parts: Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}
