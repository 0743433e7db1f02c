import type { NatsBusStats } from "../bus/nats/index.ts";
import type { RoleLoad } from "../bus/bus.ts";
import type { RoleTimes } from "../engine/step-times.ts";
import type { EngineStats } from "../engine/engine.ts";
import type { CallDurations } from "../llm/types.ts";
import { label, PromWriter } from "../metrics/text.ts";
import type { JobTally } from "../protocol/job.ts";
import type { EndpointInfo } from "../protocol/member.ts";
import type { LinkStats, PartStats, ResultStats } from "../store/index.ts";
import type { JobStatus } from "./types.ts";
import { VERSION } from "../version.ts";

/** What a node reports on /metrics. */
export interface NodeFigures {
  node: string;
  engine: EngineStats;
  bus: NatsBusStats;
  results: ResultStats;
  /** the object store's large texts (absent: counted as none) */
  parts?: PartStats;
  link: LinkStats;
  roles: Record<string, RoleLoad>;
  /** slots shared by several roles (the LLM-bound ones) */
  groups: Record<string, { slots: number; busy: number }>;
  /** records in the jobs bucket, counters and member records that were not what they should be */
  kvGarbage: number;
  /** messages on the events feed that were not events */
  eventGarbage: number;
  /** seeds this node admitted whose rows are not stored yet */
  admitted: number;
  /** keep-alives sent for held messages */
  keepalives: number;
  draining: boolean;
  /** each role's step durations on this node */
  steps: Iterable<RoleTimes>;
  /** this node's LLM client's endpoints, and the durations of their answered calls */
  endpoints: readonly EndpointInfo[];
  calls: Iterable<CallDurations>;
  /** the live and recently ended jobs, with the cluster's counts */
  jobs: readonly JobStatus[];
  /** what this node stored of a job (rows it was first to store) */
  stored: (job: string) => JobTally | undefined;
}

/** `workflow="..",role=".."` of a role's bus key (`workflow.role`: workflow names have no dot). */
function roleLabels(key: string): string {
  const dot = key.indexOf(".");
  return `${label("workflow", key.slice(0, dot))},${label("role", key.slice(dot + 1))}`;
}

/**
 * Prometheus text exposition of a node's own figures; every series has the
 * `node` label. The `matrixd_job_tasks` and `matrixd_job_tokens` gauges are
 * the whole cluster's counts as this node reads them (the same on every
 * node: aggregate them with `max`); every other series is this node's own
 * (aggregate with `sum`).
 */
export function prometheusText(f: NodeFigures, w = new PromWriter(label("node", f.node))): PromWriter {
  const e = f.engine;
  const b = f.bus;
  w.one("matrixd_build_info", "gauge", "Always 1: the matrixd version of the node.", 1, label("version", VERSION));
  w.one("matrixd_steps_total", "counter", "Agent steps run on this node.", e.steps);
  w.one("matrixd_step_errors_total", "counter", "Steps that threw.", e.stepErrors);
  w.one("matrixd_task_restarts_total", "counter", "Tasks started over from their seed because the node they were pinned to was gone.", e.restarts);
  w.one("matrixd_steps_running", "gauge", "Steps running now.", e.running);
  w.one("matrixd_tasks_ok_total", "counter", "Tasks that ended ok on this node.", e.ok);
  w.one("matrixd_tasks_failed_total", "counter", "Tasks that ended failed on this node.", e.failed);
  w.many("matrixd_tokens_total", "counter", "LLM tokens of the steps run here.", [
    ['kind="prompt"', e.promptTokens],
    ['kind="completion"', e.completionTokens],
  ]);
  w.many("matrixd_hops_total", "counter", "Task handoffs: local (same node, no serialization) or through NATS.", [
    ['route="local"', b.localHops],
    ['route="nats"', b.remoteHops],
    ['route="duplicate"', b.duplicateHops],
  ]);
  w.one("matrixd_tasks_received_total", "counter", "Task messages taken off NATS.", b.received);
  w.one("matrixd_hop_bytes_total", "counter", "Bytes of the task messages taken off NATS (the large texts they refer to are in matrixd_parts_bytes_total).", b.hopBytes);
  const p = f.parts;
  w.many("matrixd_parts_total", "counter", "Large texts of task states and rows in the NATS object store: written, found there already, read, taken from this node's cache, removed, missing.", [
    ['op="put"', p?.put ?? 0],
    ['op="reused"', p?.reused ?? 0],
    ['op="fetched"', p?.fetched ?? 0],
    ['op="cached"', p?.cached ?? 0],
    ['op="removed"', p?.removed ?? 0],
    ['op="missing"', p?.missing ?? 0],
  ]);
  w.many("matrixd_parts_bytes_total", "counter", "Bytes of large texts written to and read from the NATS object store.", [
    ['op="put"', p?.putBytes ?? 0],
    ['op="fetched"', p?.fetchedBytes ?? 0],
  ]);
  w.one("matrixd_redeliveries_total", "counter", "Task messages delivered again (a node died or gave them back).", b.redelivered);
  w.one("matrixd_redelivered_already_done_total", "counter", "Redelivered tasks that already had their row.", b.alreadyDone);
  w.one("matrixd_seeds_taken_total", "counter", "Seeds this node admitted as tasks.", b.seedsTaken);
  w.one("matrixd_seeds_held", "gauge", "Seeds admitted here whose rows are not stored yet.", f.admitted);
  w.many("matrixd_garbage_total", "counter", "Messages dropped because they were not what their subject carries.", [
    ['subject="task"', b.garbage.task],
    ['subject="seed"', b.garbage.seed],
    ['subject="done"', b.garbage.done],
    ['subject="row"', f.results.garbage],
    ['subject="kv"', f.kvGarbage],
    ['subject="event"', f.eventGarbage],
  ]);
  w.one("matrixd_publish_retries_total", "counter", "Hand-offs tried again (NATS unreachable).", b.publishRetries);
  w.one("matrixd_handed_back_total", "counter", "Tasks given back to NATS at shutdown.", b.handedBack);
  w.one("matrixd_keepalives_total", "counter", "Keep-alives sent for held messages.", f.keepalives);
  w.many("matrixd_rows_total", "counter", "Rows this node stored, and rows refused as a task's second row.", [
    ['outcome="stored"', f.results.stored],
    ['outcome="duplicate"', f.results.duplicates],
    ['outcome="oversized"', f.results.oversized],
  ]);
  roleSeries(w, f);
  w.one("matrixd_nats_connected", "gauge", "1 when connected to NATS.", f.link.connected ? 1 : 0);
  w.one("matrixd_nats_reconnects_total", "counter", "Reconnections to NATS.", f.link.reconnects);
  w.one("matrixd_draining", "gauge", "1 while the node is leaving.", f.draining ? 1 : 0);
  w.histogram("matrixd_hop_latency_seconds", "Hops through NATS: from publish to the step starting on the receiving node.", [["", b.hopLatency]]);
  endpointSeries(w, f.endpoints, f.calls);
  jobSeries(w, f.jobs, f.stored);
  return w;
}

function roleSeries(w: PromWriter, f: NodeFigures): void {
  const roles = Object.entries(f.roles).map(([k, l]) => [roleLabels(k), l] as const);
  w.many("matrixd_role_slots", "gauge", "Slots of each hosted role.", roles.map(([r, l]) => [r, l.slots]));
  w.many("matrixd_role_busy", "gauge", "Busy slots of each hosted role.", roles.map(([r, l]) => [r, l.busy]));
  w.many("matrixd_role_queued", "gauge", "Tasks waiting for a slot of each role.", roles.map(([r, l]) => [r, l.queued]));
  const steps = [...f.steps].map((t) => [`${label("workflow", t.workflow)},${label("role", t.role)}`, t.hist] as const);
  w.histogram("matrixd_step_duration_seconds", "Duration of the steps run on this node (the role's run), by workflow and role.", steps);
  const groups = Object.entries(f.groups).map(([g, v]) => [label("group", g), v] as const);
  w.many("matrixd_slot_group_slots", "gauge", "Slots shared by a group of roles (llm: the LLM-bound roles).", groups.map(([g, v]) => [g, v.slots]));
  w.many("matrixd_slot_group_busy", "gauge", "Busy slots of a group of roles.", groups.map(([g, v]) => [g, v.busy]));
}

function endpointSeries(w: PromWriter, endpoints: readonly EndpointInfo[], calls: Iterable<CallDurations>): void {
  const eps = endpoints.map((e) => [label("endpoint", e.url), e] as const);
  const gauge = (name: string, help: string, value: (e: EndpointInfo) => number | undefined) => {
    w.family(name, "gauge", help);
    for (const [l, e] of eps) {
      const v = value(e);
      if (v !== undefined) w.sample(name, l, v);
    }
  };
  gauge("matrixd_llm_endpoint_up", "1 when this node's LLM client may send the endpoint requests.", (e) => (e.healthy ? 1 : 0));
  gauge("matrixd_llm_endpoint_in_flight", "Requests this node has in flight at the endpoint.", (e) => e.inFlight);
  gauge("matrixd_llm_endpoint_limit", "Requests this node sends the endpoint at once at most (adaptive).", (e) => e.limit);
  gauge("matrixd_llm_endpoint_max_concurrency", "The configured cap of the endpoint's limit.", (e) => e.maxConcurrency);
  gauge("matrixd_llm_endpoint_waiting", "Requests queued in this node for the endpoint.", (e) => e.waiting ?? 0);
  gauge("matrixd_llm_endpoint_server_running", "Requests the server says it runs (all clients), when it reported lately.", (e) => e.serverRunning);
  gauge("matrixd_llm_endpoint_server_waiting", "Requests the server says it queues (all clients), when it reported lately.", (e) => e.serverWaiting);
  gauge("matrixd_llm_endpoint_server_slots", "Sequences the server runs at once, when known.", (e) => e.serverSlots);
  w.many("matrixd_llm_endpoint_requests_total", "counter", "Requests this node sent the endpoint (every attempt).", eps.map(([l, e]) => [l, e.requests]));
  w.many("matrixd_llm_endpoint_errors_total", "counter", "Attempts at the endpoint that failed.", eps.map(([l, e]) => [l, e.errors]));
  w.family("matrixd_llm_endpoint_tokens_total", "counter", "Tokens of the endpoint's answers to this node.");
  for (const [l, e] of eps) {
    w.sample("matrixd_llm_endpoint_tokens_total", `${l},kind="prompt"`, e.promptTokens);
    w.sample("matrixd_llm_endpoint_tokens_total", `${l},kind="completion"`, e.completionTokens);
  }
  const rows = [...calls].map((c) => [`${label("endpoint", c.endpoint)},${label("model", c.model)}`, c.hist] as const);
  w.histogram("matrixd_llm_request_duration_seconds", "Duration of the LLM calls answered, one attempt each, by endpoint and model.", rows);
}

function jobSeries(w: PromWriter, jobs: readonly JobStatus[], stored: (job: string) => JobTally | undefined): void {
  const ids = jobs.map((j) => [`${label("job_id", j.id)},${label("workflow", j.workflow)}`, j] as const);
  w.family("matrixd_job_tasks", "gauge", "Tasks of a live or lately ended job by state, the whole cluster's (the same on every node).");
  for (const [l, j] of ids) {
    w.sample("matrixd_job_tasks", `${l},state="queued"`, j.queued);
    w.sample("matrixd_job_tasks", `${l},state="running"`, j.running);
    w.sample("matrixd_job_tasks", `${l},state="ok"`, j.ok);
    w.sample("matrixd_job_tasks", `${l},state="failed"`, j.failed);
  }
  w.family("matrixd_job_tokens", "gauge", "LLM tokens of a live or lately ended job's rows, the whole cluster's (the same on every node).");
  for (const [l, j] of ids) {
    w.sample("matrixd_job_tokens", `${l},kind="prompt"`, j.promptTokens);
    w.sample("matrixd_job_tokens", `${l},kind="completion"`, j.completionTokens);
  }
  w.many("matrixd_job_live", "gauge", "1 while a job runs, 0 once it ended.", ids.map(([l, j]) => [l, j.state === "running" ? 1 : 0]));
  w.family("matrixd_job_rows_total", "counter", "Rows of a live or lately ended job this node stored, by status.");
  for (const [l, j] of ids) {
    const t = stored(j.id);
    w.sample("matrixd_job_rows_total", `${l},status="ok"`, t?.ok ?? 0);
    w.sample("matrixd_job_rows_total", `${l},status="failed"`, t?.failed ?? 0);
  }
}
