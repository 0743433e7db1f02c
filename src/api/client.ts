import { z } from "zod";
import { describe, UsageError } from "../errors.ts";
import { type JobStatus, JobStatusSchema } from "../protocol/job.ts";
import { formatIssues } from "../util/issues.ts";
import { type CancelResponse, CancelResponseSchema, ClusterResponseSchema, type ClusterResponse, ErrorBodySchema, JobsResponseSchema, type RetryResponse, RetryResponseSchema, type SubmitResponse, SubmitResponseSchema } from "./responses.ts";

const FollowedResponseSchema = z.object({ handedUpTo: z.number() });

/** Port of a node's HTTP API when `--http` gives none. */
export const DEFAULT_HTTP_PORT = 7420;
/** Server the CLI talks to when neither `--server` nor MATRIXD_SERVER says. */
export const DEFAULT_SERVER = `http://127.0.0.1:${DEFAULT_HTTP_PORT}`;

/**
 * The base URL of a node's API as a user gives it: `127.0.0.1:7420` means
 * `http://127.0.0.1:7420`; anything that is not then an http(s) URL is a
 * UsageError naming the flag.
 */
export function serverUrl(text: string, flag = "--server"): string {
  const given = text.trim();
  const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(given) ? given : `http://${given}`;
  let u: URL;
  try {
    u = new URL(withScheme);
  } catch {
    throw new UsageError(`${flag} ${text} is not a URL (e.g. ${DEFAULT_SERVER})`);
  }
  if (u.protocol !== "http:" && u.protocol !== "https:") throw new UsageError(`${flag} ${text}: only http:// and https:// are served (e.g. ${DEFAULT_SERVER})`);
  if (!u.hostname) throw new UsageError(`${flag} ${text} names no host (e.g. ${DEFAULT_SERVER})`);
  return withScheme.replace(/\/+$/, "");
}

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
  #server: string;
  readonly #token: string | undefined;
  /** the other members' API base URLs, as the last answer of /v1/cluster gave them */
  #others: string[] = [];

  constructor(opts: ClientOptions) {
    this.#server = serverUrl(opts.server);
    this.#token = opts.token;
  }

  /** The node this client talks to now (another member once it has failed over). */
  get server(): string {
    return this.#server;
  }

  /**
   * Remember the other members' API URLs (from `GET /v1/cluster`), to fail
   * over to when this node stops answering. Quiet: a node that cannot say
   * keeps the members last learned.
   */
  async learnMembers(): Promise<void> {
    try {
      const { members } = await this.cluster();
      const urls = members.flatMap((m) => (m.http && m.state === "running" && this.#reachable(m.http) ? [m.http.replace(/\/+$/, "")] : []));
      this.#others = [...new Set(urls)].filter((u) => u !== this.#server);
    } catch {
      // keep what was learned while the node answered
    }
  }

  /**
   * Run `op` against this node; when the node gives no answer at all (it
   * died, its address refuses), move to the first other known member that
   * answers `/healthz` and run `op` again there, for up to `withinMs`. A 503
   * (NATS cannot answer the node for now) is asked again; any other answer
   * of a node, an error status included, is final.
   */
  async failover<T>(op: () => Promise<T>, opts: { withinMs?: number; onSwitch?: (from: string, to: string, why: string) => void } = {}): Promise<T> {
    const until = Date.now() + (opts.withinMs ?? 60_000);
    for (;;) {
      try {
        return await op();
      } catch (err) {
        if (!(err instanceof ApiError) || Date.now() > until) throw err;
        // 503: the node is there but NATS cannot answer it for now (a NATS restart): ask it again
        if (err.status === 503) {
          await new Promise((r) => setTimeout(r, 1000));
          continue;
        }
        if (err.status !== 0 || this.#others.length === 0) throw err;
        const next = await this.#answering();
        if (next) {
          const from = this.#server;
          this.#others = [...this.#others.filter((u) => u !== next), from];
          this.#server = next;
          opts.onSwitch?.(from, next, err.message);
          await this.learnMembers();
        } else await new Promise((r) => setTimeout(r, 500));
      }
    }
  }

  /**
   * Whether a member's advertised URL leads to it from here: one that
   * listens on every address (0.0.0.0, ::) advertises no address of its
   * own, which only means that member when this client talks to a node on
   * its own machine.
   */
  #reachable(url: string): boolean {
    const host = (u: string) => {
      try {
        return new URL(u).hostname.replace(/^\[|\]$/g, "");
      } catch {
        return "";
      }
    };
    const h = host(url);
    if (h !== "0.0.0.0" && h !== "::") return h !== "";
    const mine = host(this.#server);
    return mine === "localhost" || mine === "::1" || mine.startsWith("127.");
  }

  /** The first other member that answers its health check. */
  async #answering(): Promise<string | undefined> {
    for (const url of this.#others) {
      try {
        const res = await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(2000) });
        if (res.ok) return url;
      } catch {
        // not this one
      }
    }
    return undefined;
  }

  async #fetch(path: string, init: RequestInit = {}): Promise<Response> {
    const headers = new Headers(init.headers);
    if (this.#token) headers.set("Authorization", `Bearer ${this.#token}`);
    let res: Response;
    try {
      res = await fetch(this.#server + path, { ...init, headers });
    } catch (err) {
      throw new ApiError(0, `cannot reach ${this.#server}: ${describe(err)}`, undefined, { cause: err });
    }
    if (res.ok) return res;
    const text = await res.text().catch(() => "");
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      body = undefined;
    }
    const err = ErrorBodySchema.safeParse(body);
    if (err.success) throw new ApiError(res.status, err.data.error, err.data.details);
    throw new ApiError(res.status, `${this.#server}${path} answered ${res.status} ${res.statusText}${text ? `: ${text.slice(0, 200)}` : ""}`);
  }

  async #json<T>(schema: z.ZodType<T>, path: string, init?: RequestInit): Promise<T> {
    const res = await this.#fetch(path, init);
    let body: unknown;
    try {
      body = await res.json();
    } catch (err) {
      throw new ApiError(res.status, `${this.#server}${path} answered something that is not JSON: ${describe(err)}`);
    }
    const parsed = schema.safeParse(body);
    if (!parsed.success) throw new ApiError(res.status, `${this.#server}${path} answered an unexpected shape: ${formatIssues(parsed.error)}`);
    return parsed.data;
  }

  /**
   * Submit a job: `seeds` is an NDJSON body, one seed per line (a file is
   * sent as it is read, never loaded whole); `config` the job settings.
   */
  submit(workflow: string, seeds: Blob | ReadableStream<Uint8Array> | string, config?: Record<string, unknown>): Promise<SubmitResponse> {
    const q = new URLSearchParams({ workflow });
    if (config && Object.keys(config).length > 0) q.set("config", JSON.stringify(config));
    return this.#json(SubmitResponseSchema, `/v1/jobs?${q}`, {
      method: "POST",
      headers: { "Content-Type": "application/x-ndjson" },
      body: seeds,
    });
  }

  /**
   * Submit a job that carries its workflow: `definition` is a workflow file
   * as JSON. The body is NDJSON whose first line is `{"definition": ...,
   * "config": ...}` and whose other lines are the seeds, sent as the file
   * is read (with its length, so the server can refuse an oversized one at
   * once).
   */
  submitDefinition(definition: Record<string, unknown>, seeds: Blob | string, config?: Record<string, unknown>): Promise<SubmitResponse> {
    const head = new TextEncoder().encode(`${JSON.stringify({ definition, ...(config && Object.keys(config).length > 0 ? { config } : {}) })}\n`);
    const blob = typeof seeds === "string" ? new Blob([seeds]) : seeds;
    const chunks = (async function* () {
      yield head;
      yield* blob.stream();
    })();
    const body = new ReadableStream<Uint8Array>({
      async pull(ctl) {
        const n = await chunks.next();
        if (n.done) ctl.close();
        else ctl.enqueue(n.value);
      },
      async cancel() {
        await chunks.return(undefined);
      },
    });
    return this.#json(SubmitResponseSchema, "/v1/jobs", {
      method: "POST",
      headers: { "Content-Type": "application/x-ndjson", "Content-Length": String(head.length + blob.size) },
      body,
      duplex: "half",
    } as RequestInit);
  }

  async jobs(): Promise<JobStatus[]> {
    return (await this.#json(JobsResponseSchema, "/v1/jobs")).jobs;
  }

  job(id: string): Promise<JobStatus> {
    return this.#json(JobStatusSchema, `/v1/jobs/${encodeURIComponent(id)}`);
  }

  /** Cancel a job (`purge`: drop it and its dataset for good); the state the server answers. */
  async cancel(id: string, purge = false): Promise<CancelResponse["state"]> {
    return (await this.#json(CancelResponseSchema, `/v1/jobs/${encodeURIComponent(id)}${purge ? "?purge=1" : ""}`, { method: "DELETE" })).state;
  }

  /** Run again the tasks of an ended job whose rows are failed. */
  retryFailed(id: string): Promise<RetryResponse> {
    return this.#json(RetryResponseSchema, `/v1/jobs/${encodeURIComponent(id)}/retry-failed`, { method: "POST" });
  }

  /** The dataset as a byte stream of NDJSON rows. */
  async results(id: string): Promise<ReadableStream<Uint8Array>> {
    const res = await this.#fetch(`/v1/jobs/${encodeURIComponent(id)}/results`);
    if (!res.body) throw new ApiError(res.status, `no dataset body for job "${id}"`);
    return res.body;
  }

  /** A follower's read: `{"seq":N,"row":{...}}` lines of the rows stored after sequence `after`, following the job. */
  async rows(id: string, after: number): Promise<ReadableStream<Uint8Array>> {
    const res = await this.#fetch(`/v1/jobs/${encodeURIComponent(id)}/rows?after=${after}`);
    if (!res.body) throw new ApiError(res.status, `no rows body for job "${id}"`);
    return res.body;
  }

  /** Report every row of the job up to `seq` durably written (a job with purgeRows "followed" then drops them from NATS). */
  async followed(id: string, seq: number): Promise<{ handedUpTo: number }> {
    return this.#json(FollowedResponseSchema, `/v1/jobs/${encodeURIComponent(id)}/followed`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ seq }),
    });
  }

  cluster(): Promise<ClusterResponse> {
    return this.#json(ClusterResponseSchema, "/v1/cluster");
  }
}
