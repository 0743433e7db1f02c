import { z } from "zod";
import { readConfigFile, validate } from "../config/load.ts";
import { PricesSchema } from "../engine/accounting.ts";
import { LlmSectionSchema } from "../llm/config.ts";
import { SuperviseSchema } from "../services/supervisor.ts";

/** How a node reaches NATS, and the cluster timings it creates shared consumers with. */
export const NatsConfigSchema = z.strictObject({
  /** one or more `nats://host:port` (or `host:port`) */
  servers: z.array(z.string().min(1)).min(1).default(["nats://127.0.0.1:4222"]),
  /** the node's NATS user and password (configs/nats/auth.conf gives matrixd nodes their own) */
  user: z.string().min(1).optional(),
  pass: z.string().optional(),
  token: z.string().min(1).optional(),
  /** a credentials file (user JWT and NKey seed, as `nsc` writes one) for a server in operator mode */
  creds: z.string().min(1).optional(),
  /** file paths */
  tls: z.strictObject({ ca: z.string().min(1).optional(), cert: z.string().min(1).optional(), key: z.string().min(1).optional() }).optional(),
  /** a task or seed message un-acked this long (its node died) is delivered to another node */
  ackWaitSec: z.number().min(1).max(3600).default(30),
  /** a member silent this long is out of the cluster view */
  memberTtlSec: z.number().min(1).max(600).default(5),
  /**
   * copies NATS keeps of each stream and bucket (1 on a single nats-server;
   * 3 on a NATS cluster so that losing a server loses nothing)
   */
  replicas: z.number().int().min(1).max(5).default(1),
  /**
   * texts of a task state crossing the network (or of a row too large for
   * one message) of at least this many bytes are kept in the NATS object
   * store, the message referring to them; 0 turns it off (a state or row
   * over the server's max_payload then fails)
   */
  offloadBytes: z.number().int().min(0).optional(),
});
export type NatsConfig = z.infer<typeof NatsConfigSchema>;

/** Slots of a role on this node; `auto` follows the LLM services' capacity for LLM-bound roles. */
export const JoinRoleSchema = z.strictObject({
  slots: z.union([z.number().int().positive(), z.literal("auto")]).default("auto"),
});

/** `HOST:PORT` of the HTTP API. */
export const HttpAddressSchema = z
  .string()
  .regex(/^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/, "must be HOST:PORT, e.g. 127.0.0.1:7420");

/** The config file of `matrixd join` (YAML or JSON); unknown keys are refused by name. */
export const JoinConfigSchema = z.strictObject({
  nats: NatsConfigSchema.default(NatsConfigSchema.parse({})),
  /** where the HTTP API listens, HOST:PORT */
  http: HttpAddressSchema.optional(),
  /** bearer token of the HTTP API (required when it listens beyond loopback) */
  token: z.string().min(8, "must be at least 8 characters").optional(),
  /** node name (default hostname-pid) */
  name: z.string().min(1).max(64).optional(),
  /**
   * Roles this node hosts, as `workflow.role`, `workflow.*` or `*`, with
   * their slots. Default: every role of every installed workflow, `auto` slots.
   */
  roles: z.record(z.string().regex(/^(\*|[a-z0-9][a-z0-9-]*\.(\*|[a-z0-9][a-z0-9_-]*))$/, "must be workflow.role, workflow.* or *"), JoinRoleSchema).optional(),
  /** slots of a role with `auto` slots that does not wait on an LLM (or with no LLM configured) */
  defaultSlots: z.number().int().positive().default(256),
  /** run a hop on this node when it has a free slot for it (false sends every hop through NATS: for measuring) */
  localFirst: z.boolean().default(true),
  llm: LlmSectionSchema.optional(),
  /** also use the LLM servers other members advertise (their non-loopback endpoints), chosen by live load */
  shareLlm: z.boolean().default(true),
  /** local LLM servers this node starts and watches */
  supervise: z.array(SuperviseSchema).default([]),
  /** per-task environments (`--env`): driver, capacity, limits; checked when opened */
  env: z.record(z.string(), z.unknown()).optional(),
  /** settings of the in-process simulated LLM (`--llm sim`) */
  sim: z.record(z.string(), z.unknown()).optional(),
  /** dollars per million tokens by model, for the cost figures of /metrics */
  prices: PricesSchema.default({}),
  limits: z
    .strictObject({
      /** request bodies past this many bytes answer 413 (NDJSON submissions stream; default 64 GiB) */
      maxBodyBytes: z.number().int().positive().optional(),
      /** JSON bodies past this many bytes answer 413 (parsed whole; default 64 MiB) */
      maxJsonBytes: z.number().int().positive().optional(),
      /** jobs with more seeds answer 413 */
      maxSeeds: z.number().int().positive().optional(),
    })
    .default({}),
  /** workflow files to load besides the built-in ones */
  plugins: z.array(z.string()).default([]),
  log: z.strictObject({ level: z.enum(["trace", "debug", "info", "warn", "error", "fatal", "silent"]) }).optional(),
});
export type JoinConfig = z.infer<typeof JoinConfigSchema>;

/** Load and validate a join config file; errors name the file and the key. */
export function loadJoinConfig(path: string | undefined): JoinConfig {
  const raw = path === undefined ? {} : readConfigFile(path);
  return validate(JoinConfigSchema, raw, `config ${path ?? "(defaults)"}`);
}

/** Slots of each hosted role, or undefined when a role is not hosted. */
export type RoleSelection = (workflow: string, role: string) => number | "auto" | undefined;

/**
 * Which roles a `roles` section hosts: the most specific entry wins; no
 * section hosts everything. A workflow a job carries (`NAME@HASH12`) is
 * selected by its name, whatever its definition's hash.
 */
export function roleSelection(roles: JoinConfig["roles"]): RoleSelection {
  if (!roles) return () => "auto";
  return (carried, role) => {
    const at = carried.indexOf("@");
    const workflow = at === -1 ? carried : carried.slice(0, at);
    const entry = roles[`${workflow}.${role}`] ?? roles[`${workflow}.*`] ?? roles["*"];
    return entry?.slots;
  };
}
