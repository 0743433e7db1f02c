import type { KV, KvEntry } from "@nats-io/kv";
import { describe } from "../errors.ts";
import { retry } from "../util/retry.ts";
import { sleep } from "../util/wait.ts";
import type { Logger } from "../log.ts";
import { decodeWith, encode } from "../protocol/codec.ts";
import type { NatsLink } from "./connection.ts";
import { ApiCodes, BrokenRecordError, isApiError, JobStoreError } from "./errors.ts";
import { Buckets, jobKey, jobStatsKeys, seedConsumer, statsKey, Streams, Subjects } from "./names.ts";
import { bucketKeys, type ClusterBuckets, type ClusterTimings, ensureConsumer, PUBLISH_TIMEOUT_MS, seedConsumerConfig } from "./setup.ts";
import { type JobRecord, JobRecordSchema, type NodeCounters, NodeCountersSchema, type SeedMessage } from "./records.ts";

/** How far a job's admission has got, from its seed consumer. */
export interface SeedProgress {
  /** seeds not yet taken by any node */
  pending: number;
  /** seeds taken whose rows are not yet stored */
  inFlight: number;
}


/**
 * Jobs in NATS: each job's record (spec and state) in the jobs bucket, its
 * seeds in the seeds stream with a durable consumer whose ack limit is the
 * job's concurrency, and each node's counters of it in the stats bucket.
 */
export class JobStore {
  garbage = 0;
  /** why each key whose last record was garbage is broken (dropped when a good record or a delete comes) */
  readonly #broken = new Map<string, string>();

  constructor(
    private readonly link: NatsLink,
    private readonly buckets: ClusterBuckets,
    private readonly timings: ClusterTimings,
    private readonly log: Logger,
  ) {}

  #decode(e: KvEntry): JobRecord | undefined {
    try {
      const rec = decodeWith(JobRecordSchema, e.value, `job record "${e.key}"`);
      this.#broken.delete(e.key);
      return rec;
    } catch (err) {
      this.garbage++;
      if (!this.#broken.has(e.key)) this.log.warn({ key: e.key, err: describe(err) }, "dropped a job record that is not one");
      this.#broken.set(e.key, `job record "${e.key}" in bucket ${Buckets.jobs} is not a job record (${describe(err)}): the job cannot be followed; purge it`);
      return undefined;
    }
  }

  /** Throws BrokenRecordError when the last record seen of the job was garbage. */
  checkNotBroken(id: string): void {
    const why = this.#broken.get(jobKey(id));
    if (why !== undefined) throw new BrokenRecordError(why);
  }

  /** Record a new job; throws JobStoreError when the id is taken. */
  async create(rec: JobRecord): Promise<void> {
    try {
      await this.buckets.jobs.create(jobKey(rec.id), encode(rec));
    } catch (err) {
      if (isApiError(err, ApiCodes.wrongLastSequence)) throw new JobStoreError(`job "${rec.id}" exists already`);
      throw err;
    }
  }

  /** The consumer nodes take the job's seeds from (created before the seeds, so admission can start at once). */
  async openSeeds(job: string, concurrency: number): Promise<void> {
    await ensureConsumer(this.link, Streams.seeds, seedConsumerConfig(seedConsumer(job), Subjects.seed(job), concurrency, this.timings));
  }

  /**
   * Store a job's seeds, a window of publishes in flight at once. Each has a
   * message id, so a publish tried again after a lost ack is stored once.
   */
  async storeSeeds(
    seeds: Iterable<SeedMessage> | AsyncIterable<SeedMessage>,
    window = 256,
    /** the message id of each (default `<job>:<index>`; the seeds of a task run again need others) */
    msgId: (s: SeedMessage, index: number) => string = (s, index) => `${s.job}:${index}`,
  ): Promise<number> {
    const inFlight = new Set<Promise<void>>();
    let failure: unknown;
    let n = 0;
    for await (const s of seeds) {
      if (failure) break;
      const p = this.#publishSeed(s, msgId(s, n)).then(
        () => void inFlight.delete(p),
        (err) => {
          failure ??= err;
          inFlight.delete(p);
        },
      );
      inFlight.add(p);
      n++;
      if (inFlight.size >= window) await Promise.race(inFlight);
    }
    await Promise.all(inFlight);
    if (failure) throw failure;
    return n;
  }

  async #publishSeed(s: SeedMessage, msgID: string): Promise<void> {
    const data = encode(s);
    await retry(() => this.link.unlessDisconnected(this.link.publish(Subjects.seed(s.job), data, { msgID, timeoutMs: PUBLISH_TIMEOUT_MS })), {
      tries: 6,
      baseMs: 200,
      maxMs: 3200,
    });
  }

  /** Take a job out of the jobs bucket, as if it had never been submitted (its seeds are dropped first). */
  async remove(id: string): Promise<void> {
    await this.dropSeeds(id);
    await this.buckets.jobs.purge(jobKey(id));
    this.#broken.delete(jobKey(id));
  }

  async get(id: string): Promise<JobRecord | undefined> {
    return this.#getKey(jobKey(id));
  }

  async #getKey(key: string): Promise<JobRecord | undefined> {
    const e = await this.buckets.jobs.get(key);
    return e && e.operation === "PUT" ? this.#decode(e) : undefined;
  }

  async list(): Promise<JobRecord[]> {
    const out: JobRecord[] = [];
    const keys = new Set(await bucketKeys(this.link, Buckets.jobs));
    for (const key of keys) {
      const rec = await this.#getKey(key);
      if (rec) out.push(rec);
    }
    return out;
  }

  /**
   * Change a job record with compare-and-set, trying again on a race.
   * `change` returns the new record, or undefined to leave it. Resolves
   * with the record as stored (undefined when the job is unknown).
   */
  async update(id: string, change: (rec: JobRecord) => JobRecord | undefined): Promise<JobRecord | undefined> {
    for (let attempt = 0; attempt < 20; attempt++) {
      const e = await this.buckets.jobs.get(jobKey(id));
      if (!e || e.operation !== "PUT") return undefined;
      const rec = this.#decode(e);
      if (!rec) return undefined;
      const next = change(rec);
      if (!next) return rec;
      try {
        await this.buckets.jobs.update(jobKey(id), encode(next), e.revision);
        return next;
      } catch (err) {
        if (!isApiError(err, ApiCodes.wrongLastSequence)) throw err;
        await sleep(5 + Math.random() * 20);
      }
    }
    throw new JobStoreError(`job "${id}" keeps changing under us; try again`);
  }

  /**
   * Follow the jobs bucket: every record now and each change after. The
   * watch is started again if it ends (a NATS restart). Returns a stop function.
   */
  watch(onRecord: (rec: JobRecord) => void, onGone: (key: string) => void): () => void {
    let stopped = false;
    let current: { stop(): void } | undefined;
    void (async () => {
      while (!stopped) {
        try {
          const it = await this.buckets.jobs.watch();
          current = it;
          for await (const e of it) {
            if (e.operation === "PUT") {
              const rec = this.#decode(e);
              if (rec) onRecord(rec);
            } else {
              this.#broken.delete(e.key);
              onGone(e.key);
            }
          }
        } catch (err) {
          if (!stopped) this.log.debug({ err: describe(err) }, "job watch ended");
        }
        if (!stopped) await sleep(1000);
      }
    })();
    return () => {
      stopped = true;
      current?.stop();
    };
  }

  /** Pending and in-flight seeds of a job; undefined when its seed consumer is gone. */
  async seedProgress(job: string): Promise<SeedProgress | undefined> {
    try {
      const info = await this.link.jsm.consumers.info(Streams.seeds, seedConsumer(job));
      return { pending: info.num_pending, inFlight: info.num_ack_pending };
    } catch (err) {
      if (isApiError(err, ApiCodes.consumerNotFound)) return undefined;
      throw err;
    }
  }

  /** Drop what is left of a job's seeds and its consumer (the job is done or cancelled). */
  async dropSeeds(job: string): Promise<void> {
    try {
      await this.link.jsm.consumers.delete(Streams.seeds, seedConsumer(job));
    } catch (err) {
      if (!isApiError(err, ApiCodes.consumerNotFound)) throw err;
    }
    await this.link.jsm.streams.purge(Streams.seeds, { filter: Subjects.seed(job) });
  }

  /** This node's counters of a job (each node writes only its own key). */
  async putCounters(c: NodeCounters & { job: string }): Promise<void> {
    const { job, ...rest } = c;
    await this.buckets.stats.put(statsKey(job, c.node), encode(rest));
  }

  /** Every node's counters of a job. */
  /** Drop every node's counters of a job. */
  async dropCounters(job: string): Promise<void> {
    await this.link.jsm.streams.purge(`KV_${Buckets.stats}`, { filter: `$KV.${Buckets.stats}.${jobStatsKeys(job)}` });
  }

  async counters(job: string): Promise<NodeCounters[]> {
    const out: NodeCounters[] = [];
    const kv: KV = this.buckets.stats;
    const keys = new Set(await bucketKeys(this.link, Buckets.stats, jobStatsKeys(job)));
    for (const key of keys) {
      const e = await kv.get(key);
      if (!e || e.operation !== "PUT") continue;
      try {
        out.push(decodeWith(NodeCountersSchema, e.value, `counters "${key}"`));
      } catch (err) {
        this.garbage++;
        this.log.warn({ key, err: describe(err) }, "dropped counters that are not counters");
      }
    }
    return out;
  }
}
