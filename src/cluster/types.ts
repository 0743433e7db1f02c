import type { ClusterEvent, EventQuery } from "../protocol/event.ts";
import type { JobStatus } from "../protocol/job.ts";
import type { Member } from "../protocol/member.ts";
import type { CheckedSeed } from "../seeds/check.ts";
import type { RetryOutcome } from "./retry.ts";

export type { ClusterEvent, EventKind, EventQuery } from "../protocol/event.ts";
export type { JobState, JobStatus } from "../protocol/job.ts";
export type { Member } from "../protocol/member.ts";

/** The settings a submitted job carries (validated once, at submit). */
export interface JobSubmission {
  /**
   * The workflow: one of the nodes' own, by name; with `definition`, it may
   * be left out (or be the definition's name, or its carried name)
   */
  workflow?: string;
  /**
   * A workflow definition (a workflow file, as JSON) the job carries, for a
   * workflow the nodes do not have: checked whole at submit, then compiled
   * and hosted by every node that sees the job, with no restart
   */
  definition?: Record<string, unknown>;
  /** raw seed lines or parsed seed objects, in order */
  seeds: readonly unknown[];
  /** job settings: options (the workflow's config), trials, seed, maxSteps, concurrency */
  config?: Record<string, unknown>;
}

export type { CheckedSeed } from "../seeds/check.ts";
export type { RetryOutcome } from "./retry.ts";

/**
 * A job whose seeds are handed over one at a time (a streamed submission):
 * stored as they come, in bounded memory; no task starts before `commit`.
 */
export interface JobIntake {
  /** Store one seed (all its trials); waits while the store is behind. */
  add(seed: CheckedSeed): Promise<void>;
  /** Every seed is in: the job starts. */
  commit(): Promise<{ id: string; total: number }>;
  /** Drop what was stored: the job is as if never submitted. */
  abort(): Promise<void>;
}

/** What the HTTP API and the CLI need from a cluster node. */
export interface ClusterNode {
  readonly name: string;
  /** Store a job's seeds durably and start it; resolves with its id. Bad seeds reject with SeedError(s). */
  submit(job: JobSubmission): Promise<{ id: string; total: number }>;
  /** Open a job whose seeds are streamed in (validated settings, as `submit` takes them). */
  intake(job: Omit<JobSubmission, "seeds">): Promise<JobIntake>;
  jobs(): Promise<JobStatus[]>;
  job(id: string): Promise<JobStatus | undefined>;
  /** true when the job existed and is now cancelled */
  cancel(id: string): Promise<boolean>;
  /**
   * Run again the tasks of an ended job whose rows are failed, their new
   * rows replacing those (tasks 0: it had none); undefined for an unknown
   * job. Throws JobStoreError for a job still running, cancelled, or
   * stopped at its budget.
   */
  retryFailed(id: string): Promise<RetryOutcome | undefined>;
  /** Remove a job and everything of it (its rows too), cancelling it first if it runs; false for an unknown job. */
  purge(id: string): Promise<boolean>;
  /** the dataset, one JSON row per line (no newline), exactly one per finished task */
  results(id: string): AsyncIterable<string>;
  /**
   * the rows stored after sequence `after` of the rows stream, each with its
   * sequence, in order, following the job while it is live (`matrixd results
   * --follow` resumes from the last sequence it wrote)
   */
  rowsAfter(id: string, after: number): AsyncIterable<{ seq: number; text: string }>;
  /**
   * a follower has durably written every row of the job up to `seq`: for a
   * job with purgeRows "followed" those rows leave NATS (NotHandedError for
   * another job)
   */
  followed(id: string, seq: number): Promise<{ handedUpTo: number }>;
  /** the last `n` rows of a job, oldest first, as JSON text */
  tail(id: string, n: number): Promise<string[]>;
  /** a task's row as JSON text, or undefined while the task has none */
  task(job: string, id: string): Promise<string | undefined>;
  members(): Promise<Member[]>;
  /**
   * The cluster's events feed, oldest first: those after seq `after` (at
   * most `limit`), or the latest `limit` when `after` is not given; with
   * `job`, only that job's.
   */
  events(opts: EventQuery): Promise<ClusterEvent[]>;
  /** Prometheus text of this node's own figures */
  metrics(): Promise<string>;
  /** stop taking work, hand back tasks in flight, leave the cluster */
  close(): Promise<void>;
}
