import type { CheckedSeed } from "../seeds/check.ts";
import type { EndpointInfo } from "../llm/types.ts";
import type { RoleLoad } from "../bus/bus.ts";

/** The settings a submitted job carries (validated once, at submit). */
export interface JobSubmission {
  workflow: string;
  /** raw seed lines or parsed seed objects, in order */
  seeds: readonly unknown[];
  /** job settings: options (the workflow's config), trials, seed, maxSteps, concurrency */
  config?: Record<string, unknown>;
}

export type { CheckedSeed } from "../seeds/check.ts";

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

export type JobState = "running" | "done" | "cancelled";

/** A job as any node reports it. */
export interface JobStatus {
  id: string;
  workflow: string;
  state: JobState;
  /** tasks in the job (seeds × trials) */
  total: number;
  /** not yet admitted */
  queued: number;
  /** admitted, no row yet */
  running: number;
  ok: number;
  failed: number;
  promptTokens: number;
  completionTokens: number;
  /** rows per second over the job's life so far */
  rate: number;
  createdAt: number;
  updatedAt: number;
  /** node that accepted the job */
  acceptedBy: string;
  /** why the job ended as it did (who cancelled it, or the budget it reached) */
  reason?: string;
  /** the job's budget, what the cluster's LLM calls for it used so far, and, once reached, that it admits no new tasks */
  budget?: { tokens?: number; cost?: number };
  spent?: { tokens: number; cost: number };
  budgetReached?: string;
  /** the workflow's quality metrics over the rows so far */
  metrics?: Record<string, number | null>;
}

/** One node as the cluster sees it. */
export interface Member {
  node: string;
  version: string;
  /** base URL of its HTTP API, when it serves one */
  http?: string;
  /** hosted roles (`workflow.role`) and their slots */
  roles: Record<string, RoleLoad>;
  services: { llm: EndpointInfo[]; env?: { driver: string; capacity: number; inUse: number } };
  startedAt: number;
  /** epoch ms of its last heartbeat */
  seenAt: number;
  state: "running" | "draining";
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
  /** Remove a job and everything of it (its rows too), cancelling it first if it runs; false for an unknown job. */
  purge(id: string): Promise<boolean>;
  /** the dataset, one JSON row per line (no newline), exactly one per finished task */
  results(id: string): AsyncIterable<string>;
  members(): Promise<Member[]>;
  /** Prometheus text of this node's own counters */
  metrics(): string;
  /** stop taking work, hand back tasks in flight, leave the cluster */
  close(): Promise<void>;
}
