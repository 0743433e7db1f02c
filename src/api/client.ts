import { z } from "zod";
import type { JobStatus, Member } from "../cluster/types.ts";
import { formatIssues } from "../util/issues.ts";

/** Port of a node's HTTP API when `--http` gives none. */
export const DEFAULT_HTTP_PORT = 7420;
/** Server the CLI talks to when neither `--server` nor MATRIXD_SERVER says. */
export const DEFAULT_SERVER = `http://127.0.0.1:${DEFAULT_HTTP_PORT}`;

/**
 * A request the API answered with an error status (`status` 0: no answer at
 * all). `message` is the server's own `error` text when it sent one.
 */
export class ApiError extends Error {
  override name = "ApiError";
  constructor(
    readonly status: number,
    message: string,
    readonly details?: string[],
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }

  /** 4xx: the request was wrong (usage, exit 2); anything else is a runtime failure (exit 1). */
  get exitCode(): number {
    return this.status >= 400 && this.status < 500 ? 2 : 1;
  }
}

const num = z.number();

/** What the CLI reads of a job's status; other fields pass through. */
export const JobStatusSchema = z.looseObject({
  id: z.string(),
  workflow: z.string(),
  state: z.enum(["running", "done", "cancelled"]),
  total: num,
  queued: num,
  running: num,
  ok: num,
  failed: num,
  promptTokens: num,
  completionTokens: num,
  rate: num,
  createdAt: num,
  updatedAt: num,
  acceptedBy: z.string(),
  reason: z.string().optional(),
  budget: z.looseObject({ tokens: num.optional(), cost: num.optional() }).optional(),
  spent: z.looseObject({ tokens: num, cost: num }).optional(),
  budgetReached: z.string().optional(),
  metrics: z.record(z.string(), num.nullable()).optional(),
});

const EndpointSchema = z.looseObject({
  url: z.string(),
  models: z.array(z.string()),
  inFlight: num,
  limit: num,
  healthy: z.boolean(),
  requests: num,
  errors: num,
  promptTokens: num,
  completionTokens: num,
  waiting: num.optional(),
  latencyMs: num.optional(),
});

/** What the CLI reads of a member; other fields pass through. */
export const MemberSchema = z.looseObject({
  node: z.string(),
  version: z.string(),
  http: z.string().optional(),
  roles: z.record(z.string(), z.looseObject({ slots: num, busy: num, queued: num })),
  services: z.looseObject({
    llm: z.array(EndpointSchema),
    env: z.looseObject({ driver: z.string(), capacity: num, inUse: num }).optional(),
  }),
  startedAt: num,
  seenAt: num,
  state: z.enum(["running", "draining"]),
});

const SubmitSchema = z.looseObject({ id: z.string(), total: num });
const JobsSchema = z.looseObject({ jobs: z.array(JobStatusSchema) });
const ClusterSchema = z.looseObject({ node: z.string(), members: z.array(MemberSchema) });
const ErrorSchema = z.looseObject({ error: z.string(), details: z.array(z.string()).optional() });

export interface ClientOptions {
  /** base URL of any node, e.g. http://10.0.0.5:7420 */
  server: string;
  token?: string;
}

/**
 * The HTTP API from the outside, as `matrixd submit` and `matrixd status`
 * use it. Every answer is checked against its schema once, here.
 *
 * @example
 * ```ts
 * const api = new ApiClient({ server: "http://127.0.0.1:7420", token });
 * const { id } = await api.submit("coral", Bun.file("seeds.jsonl"));
 * const status = await api.job(id);
 * ```
 */
export class ApiClient {
  readonly server: string;
  readonly #token: string | undefined;

  constructor(opts: ClientOptions) {
    this.server = opts.server.replace(/\/+$/, "");
    this.#token = opts.token;
  }

  async #fetch(path: string, init: RequestInit = {}): Promise<Response> {
    const headers = new Headers(init.headers);
    if (this.#token) headers.set("Authorization", `Bearer ${this.#token}`);
    let res: Response;
    try {
      res = await fetch(this.server + path, { ...init, headers });
    } catch (err) {
      throw new ApiError(0, `cannot reach ${this.server}: ${(err as Error).message}`, undefined, { cause: err });
    }
    if (res.ok) return res;
    const text = await res.text().catch(() => "");
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      body = undefined;
    }
    const err = ErrorSchema.safeParse(body);
    if (err.success) throw new ApiError(res.status, err.data.error, err.data.details);
    throw new ApiError(res.status, `${this.server}${path} answered ${res.status} ${res.statusText}${text ? `: ${text.slice(0, 200)}` : ""}`);
  }

  async #json<T>(schema: z.ZodType<T>, path: string, init?: RequestInit): Promise<T> {
    const res = await this.#fetch(path, init);
    let body: unknown;
    try {
      body = await res.json();
    } catch (err) {
      throw new ApiError(res.status, `${this.server}${path} answered something that is not JSON: ${(err as Error).message}`);
    }
    const parsed = schema.safeParse(body);
    if (!parsed.success) throw new ApiError(res.status, `${this.server}${path} answered an unexpected shape: ${formatIssues(parsed.error)}`);
    return parsed.data;
  }

  /**
   * Submit a job: `seeds` is an NDJSON body, one seed per line (a file is
   * sent as it is read, never loaded whole); `config` the job settings.
   */
  submit(workflow: string, seeds: Blob | ReadableStream<Uint8Array> | string, config?: Record<string, unknown>): Promise<{ id: string; total: number }> {
    const q = new URLSearchParams({ workflow });
    if (config && Object.keys(config).length > 0) q.set("config", JSON.stringify(config));
    return this.#json(SubmitSchema, `/v1/jobs?${q}`, {
      method: "POST",
      headers: { "Content-Type": "application/x-ndjson" },
      body: seeds,
    });
  }

  async jobs(): Promise<JobStatus[]> {
    return (await this.#json(JobsSchema, "/v1/jobs")).jobs;
  }

  job(id: string): Promise<JobStatus> {
    return this.#json(JobStatusSchema, `/v1/jobs/${encodeURIComponent(id)}`);
  }

  async cancel(id: string): Promise<void> {
    await this.#fetch(`/v1/jobs/${encodeURIComponent(id)}`, { method: "DELETE" });
  }

  /** The dataset as a byte stream of NDJSON rows. */
  async results(id: string): Promise<ReadableStream<Uint8Array>> {
    const res = await this.#fetch(`/v1/jobs/${encodeURIComponent(id)}/results`);
    if (!res.body) throw new ApiError(res.status, `no dataset body for job "${id}"`);
    return res.body;
  }

  cluster(): Promise<{ node: string; members: Member[] }> {
    return this.#json(ClusterSchema, "/v1/cluster");
  }
}
