import type { NatsBusImpl } from "../bus/nats/index.ts";
import type { Prices } from "../engine/accounting.ts";
import type { Engine } from "../engine/engine.ts";
import type { LlmClient } from "../llm/types.ts";
import type { Logger } from "../log.ts";
import type { AnyWorkflow } from "../plugin/api.ts";
import type { Registry } from "../plugin/registry.ts";
import type { Supervisor } from "../services/supervisor.ts";
import type { ClusterTimings } from "../store/index.ts";
import type { RoleSelection } from "./config.ts";
import type { ClusterNode } from "./types.ts";

/** What `startClusterNode` is told: how to reach NATS, what to host, and with what. */
export interface ClusterNodeOptions {
  /** node name; made safe for subjects and keys */
  name: string;
  nats: { servers: string[]; user?: string; pass?: string; token?: string; creds?: string; tls?: { ca?: string; cert?: string; key?: string } };
  timings?: Partial<ClusterTimings>;
  /** copies NATS keeps of each stream and bucket this node creates (default 1; more needs a NATS cluster) */
  replicas?: number;
  /** texts of a task state or row of at least this many bytes travel in the NATS object store (0: never; default DEFAULT_OFFLOAD_BYTES) */
  offloadBytes?: number;
  /** the workflows this node knows (their roles are hosted as `roles` says) */
  workflows: Registry | readonly AnyWorkflow[];
  /** which roles to host and their slots (default: every role, `auto`) */
  roles?: RoleSelection;
  /** slots of `auto` roles that do not wait on an LLM, or when there is no LLM (default 256) */
  defaultSlots?: number;
  llm?: LlmClient;
  /** the local LLM servers this node supervises: their restarts go into the events feed */
  supervisors?: readonly Supervisor[];
  services?: Record<string, unknown>;
  /** base URL of this node's HTTP API, advertised to the cluster */
  http?: string;
  log: Logger;
  /** run hops on this node when it has a free slot (default true) */
  localFirst?: boolean;
  /** ms between membership heartbeats (default 1000) */
  heartbeatMs?: number;
  /** prices by model, for the cost figures of /metrics */
  prices?: Prices;
  /** how long an ended job's series stay on /metrics (default 10 minutes) */
  endedJobsShownMs?: number;
  /** use the LLM servers other members advertise, besides this node's own (default true; loopback ones never) */
  shareLlm?: boolean;
  /** aborting stops the first-connect retries */
  signal?: AbortSignal;
}

/** A cluster node as `startClusterNode` returns it: the contract plus what tests and the CLI look at. */
export interface RunningClusterNode extends ClusterNode {
  readonly bus: NatsBusImpl;
  readonly engine: Engine;
  /** set the advertised HTTP URL once the server listens */
  setHttp(url: string): void;
  /** Prometheus-free figures for tests and benchmarks */
  figures(): ReturnType<RunningClusterNode["bus"]["load"]>;
}
