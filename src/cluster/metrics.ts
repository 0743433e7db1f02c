import type { NatsBusStats } from "../bus/nats/index.ts";
import type { LinkStats, ResultStats } from "../store/index.ts";
import { LATENCY_BUCKETS_MS } from "../bus/nats/index.ts";
import type { RoleLoad } from "../bus/bus.ts";
import type { EngineStats } from "../engine/engine.ts";

/** What a node reports on /metrics. */
export interface NodeFigures {
  node: string;
  engine: EngineStats;
  bus: NatsBusStats;
  results: ResultStats;
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
}

function esc(v: string): string {
  return v.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}

/** Prometheus text exposition of a node's own figures. */
export function prometheusText(f: NodeFigures): string {
  const out: string[] = [];
  const node = `node="${esc(f.node)}"`;
  const head = (name: string, type: string, help: string) => out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
  const one = (name: string, type: string, help: string, v: number) => {
    head(name, type, help);
    out.push(`${name}{${node}} ${v}`);
  };
  const many = (name: string, type: string, help: string, rows: [string, number][]) => {
    head(name, type, help);
    for (const [labels, v] of rows) out.push(`${name}{${node},${labels}} ${v}`);
  };
  const e = f.engine;
  const b = f.bus;
  one("matrixd_steps_total", "counter", "Agent steps run on this node.", e.steps);
  one("matrixd_step_errors_total", "counter", "Steps that threw.", e.stepErrors);
  one("matrixd_task_restarts_total", "counter", "Tasks started over from their seed because the node they were pinned to was gone.", e.restarts);
  one("matrixd_steps_running", "gauge", "Steps running now.", e.running);
  one("matrixd_tasks_ok_total", "counter", "Tasks that ended ok on this node.", e.ok);
  one("matrixd_tasks_failed_total", "counter", "Tasks that ended failed on this node.", e.failed);
  many("matrixd_tokens_total", "counter", "LLM tokens of the steps run here.", [
    ['kind="prompt"', e.promptTokens],
    ['kind="completion"', e.completionTokens],
  ]);
  many("matrixd_hops_total", "counter", "Task handoffs: local (same node, no serialization) or through NATS.", [
    ['route="local"', b.localHops],
    ['route="nats"', b.remoteHops],
    ['route="duplicate"', b.duplicateHops],
  ]);
  one("matrixd_tasks_received_total", "counter", "Task messages taken off NATS.", b.received);
  one("matrixd_redeliveries_total", "counter", "Task messages delivered again (a node died or gave them back).", b.redelivered);
  one("matrixd_redelivered_already_done_total", "counter", "Redelivered tasks that already had their row.", b.alreadyDone);
  one("matrixd_seeds_taken_total", "counter", "Seeds this node admitted as tasks.", b.seedsTaken);
  one("matrixd_seeds_held", "gauge", "Seeds admitted here whose rows are not stored yet.", f.admitted);
  many("matrixd_garbage_total", "counter", "Messages dropped because they were not what their subject carries.", [
    ['subject="task"', b.garbage.task],
    ['subject="seed"', b.garbage.seed],
    ['subject="done"', b.garbage.done],
    ['subject="row"', f.results.garbage],
    ['subject="kv"', f.kvGarbage],
    ['subject="event"', f.eventGarbage],
  ]);
  one("matrixd_publish_retries_total", "counter", "Hand-offs tried again (NATS unreachable).", b.publishRetries);
  one("matrixd_handed_back_total", "counter", "Tasks given back to NATS at shutdown.", b.handedBack);
  one("matrixd_keepalives_total", "counter", "Keep-alives sent for held messages.", f.keepalives);
  many("matrixd_rows_total", "counter", "Rows this node stored, and rows refused as a task's second row.", [
    ['outcome="stored"', f.results.stored],
    ['outcome="duplicate"', f.results.duplicates],
    ['outcome="oversized"', f.results.oversized],
  ]);
  const roles = Object.entries(f.roles);
  many("matrixd_role_slots", "gauge", "Slots of each hosted role.", roles.map(([r, l]) => [`role="${esc(r)}"`, l.slots]));
  many("matrixd_role_busy", "gauge", "Busy slots of each hosted role.", roles.map(([r, l]) => [`role="${esc(r)}"`, l.busy]));
  many("matrixd_role_queued", "gauge", "Tasks waiting for a slot of each role.", roles.map(([r, l]) => [`role="${esc(r)}"`, l.queued]));
  const groups = Object.entries(f.groups);
  many("matrixd_slot_group_slots", "gauge", "Slots shared by a group of roles (llm: the LLM-bound roles).", groups.map(([g, v]) => [`group="${esc(g)}"`, v.slots]));
  many("matrixd_slot_group_busy", "gauge", "Busy slots of a group of roles.", groups.map(([g, v]) => [`group="${esc(g)}"`, v.busy]));
  one("matrixd_nats_connected", "gauge", "1 when connected to NATS.", f.link.connected ? 1 : 0);
  one("matrixd_nats_reconnects_total", "counter", "Reconnections to NATS.", f.link.reconnects);
  one("matrixd_draining", "gauge", "1 while the node is leaving.", f.draining ? 1 : 0);
  const h = b.hopLatency;
  head("matrixd_hop_latency_seconds", "histogram", "Hops through NATS: from publish to the step starting on the receiving node.");
  let cum = 0;
  LATENCY_BUCKETS_MS.forEach((le, i) => {
    cum += h.counts[i] as number;
    out.push(`matrixd_hop_latency_seconds_bucket{${node},le="${le / 1000}"} ${cum}`);
  });
  out.push(`matrixd_hop_latency_seconds_bucket{${node},le="+Inf"} ${h.count}`);
  out.push(`matrixd_hop_latency_seconds_sum{${node}} ${h.sumMs / 1000}`);
  out.push(`matrixd_hop_latency_seconds_count{${node}} ${h.count}`);
  return `${out.join("\n")}\n`;
}
