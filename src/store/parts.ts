import { jetstream } from "@nats-io/jetstream";
import { Objm, type ObjectStore, setSha256Backend, StorageType } from "@nats-io/obj";
import { describe } from "../errors.ts";
import type { Logger } from "../log.ts";
import { type Claim, type Digest, digestText, putBack, type Taken, takeLarge, textOf } from "../protocol/claim.ts";
import type { NatsLink } from "./connection.ts";
import { ApiCodes, isApiError } from "./errors.ts";
import { jobToken, taskToken } from "./names.ts";

/** Where a part is kept: with a task state between hops (gone at the job's end), or with a stored row (gone at its purge). */
export type PartKind = "hop" | "row";

/** A part of a message that could not be fetched back: the task or row it belongs to cannot be made whole. */
export class PartMissingError extends Error {
  override name = "PartMissingError";
}

export interface PartStats {
  /** objects written, and their bytes */
  put: number;
  putBytes: number;
  /** objects already in the store when asked to write them (known, or found there) */
  reused: number;
  /** objects read from NATS, and their bytes */
  fetched: number;
  fetchedBytes: number;
  /** parts taken from this node's cache instead */
  cached: number;
  /** objects removed with their task's row stored */
  removed: number;
  missing: number;
}

/** The default of `nats.offloadBytes` (chosen by measurement: see the README). */
export const DEFAULT_OFFLOAD_BYTES = 64 * 1024;

/**
 * Characters of recently written or read texts a node keeps, with their
 * digests: a task that comes back is not fetched again, and a text handed
 * on again is not hashed again.
 */
const CACHE_CHARS = 32 * 1024 * 1024;
/** Names known to be in the store (written or read here): not written again. */
const KNOWN_NAMES = 100_000;
/** Tasks on this node whose parts it knows (those it finishes have them removed). */
const TRACKED_TASKS = 100_000;
/** Strings at least this long are what is taken out when a message is still over the limit after the threshold's pass. */
const LAST_PASS_BYTES = 1024;
/** Objects read or written at once for one message. */
const PARALLEL = 8;

// The object store client checks every object it writes and reads with SHA-256: the runtime's, not its pure-JS default.
setSha256Backend("native");

/** The object store bucket of a job's parts of one kind. */
export function partBucket(kind: PartKind, job: string): string {
  return `mx-${kind}-${jobToken(job)}`;
}

/**
 * The large texts of task states and rows, kept in the NATS object store
 * (claim checks: the message carries each text's name, size and SHA-256).
 * A job has a bucket per kind; an object is named by its task and its
 * content's digest, so a text written once is not written again at the
 * next hop, a hop stored twice refers to the same complete object, and an
 * object a message names is written before the message is published. A
 * task's objects are removed once its row is stored; those left by a node
 * that died (or by texts a step replaced) go with the job's bucket when
 * the job ends.
 */
export class PartStore {
  readonly stats: PartStats = { put: 0, putBytes: 0, reused: 0, fetched: 0, fetchedBytes: 0, cached: 0, removed: 0, missing: 0 };
  readonly #objm: Objm;
  /** handles of buckets this node created (or found) to write to, and of buckets only read */
  readonly #buckets = new Map<string, Promise<ObjectStore>>();
  readonly #readers = new Map<string, Promise<ObjectStore>>();
  readonly #known = new Set<string>();
  /** texts by digest, and the digests of those texts */
  readonly #cache = new Map<string, string>();
  readonly #digests = new Map<string, { sha256: string; size: number }>();
  #cacheChars = 0;
  /** a text's digest, remembered for the texts in the cache */
  readonly #digest: Digest = (text) => this.#digests.get(text) ?? digestText(text);
  /** names of the parts of tasks on this node, by job and task */
  readonly #tasks = new Map<string, Set<string>>();

  constructor(
    private readonly link: NatsLink,
    private readonly log: Logger,
    /** texts of at least this many bytes are kept as objects; 0: none are */
    readonly offloadBytes: number,
    private readonly replicas = 1,
  ) {
    // no API check per bucket opened: the connection's JetStream answers already
    this.#objm = new Objm(jetstream(link.nc, { timeout: 5_000, checkAPI: false }));
  }

  get enabled(): boolean {
    return this.offloadBytes > 0;
  }

  /**
   * Encode `value` to fit `limit` bytes: as it is when its encoding is under
   * the threshold; else with its texts of at least the threshold kept as
   * objects (and, if it is still over `limit`, every text of 1 KiB or more).
   * The objects are written before this resolves. Returns the bytes and the
   * claims they carry (none on the small path).
   */
  async encodeFitting<T>(
    kind: PartKind,
    job: string,
    task: string,
    value: T,
    encode: (value: T, claims: Claim[] | undefined) => Uint8Array,
    limit: number,
  ): Promise<{ data: Uint8Array; claims: Claim[] }> {
    const plain = encode(value, undefined);
    if (!this.enabled || (plain.length < this.offloadBytes && plain.length <= limit)) return { data: plain, claims: [] };
    const prefix = taskToken(task);
    const name = (sha: string) => `${prefix}/${sha}`;
    let out = takeLarge(value, this.offloadBytes, name, this.#digest);
    let data = out.taken.length > 0 ? encode(out.value, out.taken.map((t) => t.claim)) : plain;
    if (data.length > limit) {
      out = takeLarge(value, Math.min(this.offloadBytes, LAST_PASS_BYTES), name, this.#digest);
      data = encode(out.value, out.taken.map((t) => t.claim));
    }
    await this.#putAll(kind, job, task, out.taken);
    return { data, claims: out.taken.map((t) => t.claim) };
  }

  /**
   * Fetch the texts `claims` name and put them back into `value` (in
   * place). PartMissingError names a part that is not there, CodecError one
   * that is not what its claim says; any other error is NATS failing to
   * answer (try again).
   */
  async restore(kind: PartKind, job: string, task: string, value: unknown, claims: readonly Claim[], where: string): Promise<void> {
    const bucket = partBucket(kind, job);
    const parts = await mapLimited(claims, PARALLEL, async (claim) => ({ claim, text: await this.#get(bucket, claim, where) }));
    putBack(value, parts, where);
    if (kind === "hop") this.#track(job, task, claims.map((c) => c.name));
  }

  /** The task left this node (handed on to another): its parts are no longer this node's to remove. */
  left(job: string, task: string): void {
    this.#tasks.delete(taskKey(job, task));
  }

  /** The task's row is stored: remove the parts of its state this node knows of (what the job's end would sweep anyway). */
  async finished(job: string, task: string): Promise<void> {
    const key = taskKey(job, task);
    const names = this.#tasks.get(key);
    if (!names) return;
    this.#tasks.delete(key);
    const bucket = partBucket("hop", job);
    try {
      const os = await this.#bucket(bucket, false);
      for (const name of names) {
        await os.delete(name);
        this.#known.delete(`${bucket}/${name}`);
        this.stats.removed++;
      }
    } catch (err) {
      // The job's end removes them all the same.
      this.log.debug({ job, task, err: describe(err) }, "cannot remove a finished task's parts");
    }
  }

  /** The job ended: remove the parts of its task states (a node that died left some; rows keep theirs). */
  async jobEnded(job: string): Promise<void> {
    await this.#destroy(partBucket("hop", job));
  }

  /** The job is purged: remove all its parts. */
  async purge(job: string): Promise<void> {
    await this.#destroy(partBucket("hop", job));
    await this.#destroy(partBucket("row", job));
  }

  /** Names of the objects a job keeps, by kind (for tests and diagnosis). */
  async objects(job: string): Promise<Record<PartKind, string[]>> {
    const out: Record<PartKind, string[]> = { hop: [], row: [] };
    for (const kind of ["hop", "row"] as const) {
      const bucket = partBucket(kind, job);
      if (!(await this.#exists(bucket))) continue;
      const os = await this.#objm.open(bucket, false);
      out[kind] = (await os.list()).filter((i) => !i.deleted).map((i) => i.name);
    }
    return out;
  }

  async #exists(bucket: string): Promise<boolean> {
    try {
      await this.link.jsm.streams.info(`OBJ_${bucket}`);
      return true;
    } catch (err) {
      if (isApiError(err, ApiCodes.streamNotFound)) return false;
      throw err;
    }
  }

  async #destroy(bucket: string): Promise<void> {
    this.#buckets.delete(bucket);
    this.#readers.delete(bucket);
    for (const k of this.#known) if (k.startsWith(`${bucket}/`)) this.#known.delete(k);
    try {
      await this.link.jsm.streams.delete(`OBJ_${bucket}`);
    } catch (err) {
      if (!isApiError(err, ApiCodes.streamNotFound)) throw err;
    }
  }

  /** The job's bucket: created when writing (by whichever node writes first), only opened when reading. */
  #bucket(bucket: string, create: boolean): Promise<ObjectStore> {
    const handles = create ? this.#buckets : this.#readers;
    let p = handles.get(bucket);
    if (!p) {
      p = create ? this.#objm.create(bucket, { storage: StorageType.File, replicas: this.replicas }) : this.#objm.open(bucket, false);
      handles.set(bucket, p);
      p.catch(() => handles.delete(bucket));
      if (handles.size > 1000) handles.delete(handles.keys().next().value as string);
    }
    return p;
  }

  async #putAll(kind: PartKind, job: string, task: string, taken: readonly Taken[]): Promise<void> {
    if (taken.length === 0) return;
    const bucket = partBucket(kind, job);
    const os = await this.#bucket(bucket, true);
    try {
      await this.#putEach(os, bucket, taken);
    } catch (err) {
      // The bucket may be gone (the job ended while a duplicate of one of its tasks ran): made again on the next try.
      this.#buckets.delete(bucket);
      throw err;
    }
    if (kind === "hop") this.#track(job, task, taken.map((t) => t.claim.name));
  }

  async #putEach(os: ObjectStore, bucket: string, taken: readonly Taken[]): Promise<void> {
    await mapLimited(taken, PARALLEL, async ({ claim, text }) => {
      const id = `${bucket}/${claim.name}`;
      this.#remember(claim, text);
      if (this.#known.has(id)) {
        this.stats.reused++;
        return;
      }
      const bytes = utf8.encode(text);
      // The same text written again (a duplicate hop) would replace chunks a reader may be reading.
      const there = await os.info(claim.name);
      if (there && !there.deleted && there.size === claim.size) this.stats.reused++;
      else {
        await os.putBlob({ name: claim.name }, bytes);
        this.stats.put++;
        this.stats.putBytes += bytes.length;
      }
      this.#know(id);
    });
  }

  /** A part's text, checked against its claim (cached ones were when they were cached). */
  async #get(bucket: string, claim: Claim, where: string): Promise<string> {
    const cached = this.#cache.get(claim.sha256);
    if (cached) {
      this.stats.cached++;
      return cached;
    }
    let bytes: Uint8Array | null = null;
    // A read racing a duplicate's rewrite of the same object sees its old chunks go: read it again.
    for (let attempt = 1; ; attempt++) {
      try {
        const os = await this.#bucket(bucket, false);
        bytes = await os.getBlob(claim.name);
        break;
      } catch (err) {
        if (isApiError(err, ApiCodes.streamNotFound)) break;
        // NATS away: not the object's fault; the caller tries again later
        if (attempt >= 3) throw new Error(`cannot read object "${claim.name}" of bucket ${bucket}: ${describe(err)}`, { cause: err });
      }
    }
    if (bytes === null) {
      this.stats.missing++;
      throw new PartMissingError(`object "${claim.name}" of bucket ${bucket} is missing (${claim.size} bytes of ${claim.path.join(".")})`);
    }
    this.stats.fetched++;
    this.stats.fetchedBytes += bytes.length;
    const text = textOf(claim, bytes, where);
    this.#know(`${bucket}/${claim.name}`);
    this.#remember(claim, text);
    return text;
  }

  #know(id: string): void {
    this.#known.add(id);
    if (this.#known.size > KNOWN_NAMES) this.#known.delete(this.#known.values().next().value as string);
  }

  #remember(claim: Claim, text: string): void {
    if (text.length > CACHE_CHARS / 8 || this.#cache.has(claim.sha256)) return;
    this.#cache.set(claim.sha256, text);
    this.#digests.set(text, { sha256: claim.sha256, size: claim.size });
    this.#cacheChars += text.length;
    for (const [k, v] of this.#cache) {
      if (this.#cacheChars <= CACHE_CHARS) break;
      this.#cache.delete(k);
      this.#digests.delete(v);
      this.#cacheChars -= v.length;
    }
  }

  #track(job: string, task: string, names: readonly string[]): void {
    const key = taskKey(job, task);
    let set = this.#tasks.get(key);
    if (!set) {
      set = new Set();
      this.#tasks.set(key, set);
      if (this.#tasks.size > TRACKED_TASKS) this.#tasks.delete(this.#tasks.keys().next().value as string);
    }
    for (const n of names) set.add(n);
  }
}

const utf8 = new TextEncoder();

function taskKey(job: string, task: string): string {
  return `${job}\u0000${task}`;
}

/** `fn` over `items`, at most `limit` at once, results in order. */
async function mapLimited<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i] as T);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}
