import { createHash } from "node:crypto";

/**
 * Where matrixd keeps things in NATS. Every stream, consumer, bucket and
 * subject name is made here, so the layout can be read in one place:
 *
 * | what | name | kind |
 * |---|---|---|
 * | task states between roles | `mx.task.<workflow>.<role>` in `MX_TASKS` | work-queue stream, one durable pull consumer per role |
 * | a job's seeds | `mx.seed.<job>` in `MX_SEEDS` | work-queue stream, one durable pull consumer per job |
 * | dataset rows | `mx.row.<job>.<task hash>` in `MX_ROWS` | limits stream, at most one message per subject |
 * | "row stored" notes to the admitting node | `mx.done.<node>` | core NATS |
 * | job specs and state | bucket `mx-jobs`, key `<job>` | KV |
 * | per-node job counters | bucket `mx-stats`, key `<job>.<node>` | KV |
 * | members | bucket `mx-members`, key `<node>` | KV with a max age |
 * | cluster events | `mx.event.<kind>.<job or ~>` in `MX_EVENTS` | limits stream with a max age, count and size |
 * | large texts of a job's task states | bucket `mx-hop-<job>`, object `<task hash>/<sha256>` | object store, removed at the job's end (see parts.ts) |
 * | large texts of a job's rows over max_payload | bucket `mx-row-<job>`, object `<task hash>/<sha256>` | object store, removed with the job's purge |
 */
export const Streams = {
  tasks: "MX_TASKS",
  seeds: "MX_SEEDS",
  rows: "MX_ROWS",
  events: "MX_EVENTS",
} as const;

export const Buckets = {
  jobs: "mx-jobs",
  stats: "mx-stats",
  members: "mx-members",
} as const;

export const Subjects = {
  task: (workflow: string, role: string) => `mx.task.${workflow}.${role}`,
  tasks: "mx.task.>",
  seed: (job: string) => `mx.seed.${jobToken(job)}`,
  seeds: "mx.seed.>",
  row: (job: string, taskId: string) => `mx.row.${jobToken(job)}.${taskToken(taskId)}`,
  jobRows: (job: string) => `mx.row.${jobToken(job)}.>`,
  rows: "mx.row.>",
  done: (node: string) => `mx.done.${node}`,
  /** an event (its kind has one dot: `member.lost`), under the token of its job, or `~` for none */
  event: (kind: string, job?: string) => `mx.event.${kind}.${job === undefined ? "~" : jobToken(job)}`,
  /** the events of one job */
  jobEvents: (job: string) => `mx.event.*.*.${jobToken(job)}`,
  events: "mx.event.>",
} as const;

/** The durable consumer of a role's tasks (workflow names have no `_`, so this is unambiguous). */
export function roleConsumer(workflow: string, role: string): string {
  return `t_${workflow}_${role}`;
}

/** The durable consumer of a job's seeds. */
export function seedConsumer(job: string): string {
  return `s_${jobToken(job)}`;
}

/** The key of a job in the jobs bucket. */
export function jobKey(job: string): string {
  return jobToken(job);
}

/** The key of a node's counters of a job in the stats bucket. */
export function statsKey(job: string, node: string): string {
  return `${jobToken(job)}.${node}`;
}

/** The stats keys of every node of a job. */
export function jobStatsKeys(job: string): string {
  return `${jobToken(job)}.*`;
}

/**
 * The token that stands for a job id in subjects, consumer names and keys:
 * the id itself when it is made of letters, digits, `_` and `-` (the ids
 * matrixd makes), else a hash of it.
 */
export function jobToken(job: string): string {
  return /^[A-Za-z0-9_-]{1,64}$/.test(job) ? job : `h-${createHash("sha256").update(job).digest("base64url").slice(0, 22)}`;
}

/** Job ids and node names become subject tokens and KV keys: keep them to a safe alphabet. */
export const SAFE_NAME = /^[A-Za-z0-9_-]{1,64}$/;

/** A name made safe for subjects and keys: other characters become `-`. */
export function safeName(name: string): string {
  const s = name.replace(/[^A-Za-z0-9_-]/g, "-").slice(0, 64);
  return s.length > 0 ? s : "node";
}

/**
 * The subject token of a task id: any string may be a task id, so it is
 * hashed (SHA-256, 132 bits in base64url), which no two ids of a job share
 * in practice and which is always a valid token.
 */
export function taskToken(taskId: string): string {
  return createHash("sha256").update(taskId).digest("base64url").slice(0, 22);
}

/** The de-duplication id of a task state handed to a role: the same state handed on twice is stored once. */
export function hopMsgId(job: string, taskId: string, steps: number, attempts: Record<string, number>): string {
  let tries = 0;
  for (const k in attempts) tries += attempts[k] ?? 0;
  return `${job}:${taskId}:${steps}:${tries}`;
}
