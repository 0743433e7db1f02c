import { Hono } from "hono";
import { z } from "zod";
import { NotHandedError } from "../../cluster/handoff.ts";
import { formatIssues } from "../../util/issues.ts";
import type { ClusterNode, JobStatus } from "../../cluster/types.ts";
import type { Registry } from "../../plugin/registry.ts";
import { HttpError } from "../http-error.ts";
import { ndjsonStream } from "../ndjson.ts";
import type { DownloadSigner } from "../download.ts";
import type { CancelResponse, DownloadResponse, JobsResponse, RetryResponse, SubmitResponse } from "../responses.ts";
import { readSubmission, type SubmissionLimits, submitStream } from "../submission.ts";

export interface JobRoutesOptions {
  node: ClusterNode;
  registry: Registry;
  limits: SubmissionLimits;
  /** signs the short-lived download links of `POST /v1/jobs/:id/download` */
  downloads: DownloadSigner;
}

/** The most rows `?tail=` answers. */
export const MAX_TAIL = 1000;

/** The `tail` query as a count of rows; 400 unless a whole number from 1 to MAX_TAIL. */
function tailCount(q: string): number {
  const n = /^[0-9]{1,7}$/.test(q) ? Number(q) : Number.NaN;
  if (!(n >= 1 && n <= MAX_TAIL)) throw new HttpError(400, `"tail" must be a whole number from 1 to ${MAX_TAIL}, not "${q.slice(0, 40)}"`);
  return n;
}

const NDJSON_HEADERS = { "Content-Type": "application/x-ndjson", "Cache-Control": "no-store" };

const FollowedBodySchema = z.strictObject({ seq: z.number().int().nonnegative() });

/** A sequence given in the query; 400 unless a whole number. */
function seqQuery(q: string, name: string): number {
  const n = /^[0-9]{1,16}$/.test(q) ? Number(q) : Number.NaN;
  if (!Number.isSafeInteger(n)) throw new HttpError(400, `"${name}" must be a whole number (a sequence of the rows stream), not "${q.slice(0, 40)}"`);
  return n;
}

/** Rows with their sequences, one line each: the row's JSON text is put in as it is, not parsed again. */
async function* seqLines(rows: AsyncIterable<{ seq: number; text: string }>): AsyncIterable<string> {
  for await (const r of rows) yield `{"seq":${r.seq},"row":${r.text}}`;
}

/** The answer to a whole download of a job whose rows leave NATS once followed. */
function handedError(id: string): HttpError {
  return new HttpError(
    409,
    `job "${id}" hands its rows to a follower (purgeRows "followed"): rows a follower has written are no longer in NATS; read the dataset with matrixd results ${id} --follow --out FILE (GET /v1/jobs/${id}/rows?after=SEQ)`,
  );
}

async function jobOr404(node: ClusterNode, id: string): Promise<JobStatus> {
  const job = await node.job(id);
  if (!job) throw new HttpError(404, `no job "${id}"`);
  return job;
}

/**
 * The dataset of one job through a signed link (`POST /v1/jobs/:id/download`
 * makes one): an open route, registered before the bearer check, that
 * answers only with a valid, unexpired signature.
 */
export function downloadRoutes(node: ClusterNode, downloads: DownloadSigner): Hono {
  const routes = new Hono();
  routes.get("/:id", async (c) => {
    const id = c.req.param("id");
    const exp = Number(c.req.query("exp"));
    if (!downloads.verify(id, exp, c.req.query("sig") ?? "")) throw new HttpError(403, "this download link is wrong or has expired");
    await jobOr404(node, id);
    const file = `${id.replace(/[^A-Za-z0-9_.-]/g, "_")}.jsonl`;
    return c.body(ndjsonStream(node.results(id)), 200, { ...NDJSON_HEADERS, "Content-Disposition": `attachment; filename="${file}"` });
  });
  return routes;
}

/**
 * `/v1/jobs`: submit, list, status, results (NDJSON, streamed, or the last
 * rows with `?tail=N`), one task's row, a download link, running the
 * failed tasks of an ended job again, cancel.
 * Seeds are checked against the workflow before the node sees them, so a
 * job is either taken whole or refused with every bad line named.
 */
export function jobRoutes(opts: JobRoutesOptions): Hono {
  const { node, registry, limits, downloads } = opts;
  const jobs = new Hono();

  jobs.post("/", async (c) => {
    const read = await readSubmission(c.req.raw, { workflow: c.req.query("workflow"), config: c.req.query("config") }, registry, limits);
    const { id, total } = read.kind === "whole" ? await node.submit(read.submission) : await submitStream(node, read, limits);
    return c.json({ id, total } satisfies SubmitResponse, 201, { Location: `/v1/jobs/${encodeURIComponent(id)}` });
  });

  // The list leaves out each job's timeline, so a dashboard polling it stays cheap.
  jobs.get("/", async (c) => c.json({ jobs: (await node.jobs()).map(({ timeline: _, ...rest }) => rest) } satisfies JobsResponse));

  jobs.get("/:id", async (c) => c.json(await jobOr404(node, c.req.param("id"))));

  jobs.get("/:id/results", async (c) => {
    const id = c.req.param("id");
    const tail = c.req.query("tail");
    const n = tail === undefined ? undefined : tailCount(tail);
    const job = await jobOr404(node, id);
    if (n !== undefined) {
      const rows = await node.tail(id, n);
      return c.body(rows.map((r) => `${r}\n`).join(""), 200, NDJSON_HEADERS);
    }
    if (job.purgeRows === "followed") throw handedError(id);
    return c.body(ndjsonStream(node.results(id)), 200, NDJSON_HEADERS);
  });

  // A follower's read: `{"seq":N,"row":{...}}` lines, from after the last sequence it has written.
  jobs.get("/:id/rows", async (c) => {
    const id = c.req.param("id");
    const after = seqQuery(c.req.query("after") ?? "0", "after");
    await jobOr404(node, id);
    return c.body(ndjsonStream(seqLines(node.rowsAfter(id, after))), 200, NDJSON_HEADERS);
  });

  // A follower's report: every row up to `seq` is durably written, so a job with purgeRows "followed" drops them.
  jobs.post("/:id/followed", async (c) => {
    const id = c.req.param("id");
    const body = FollowedBodySchema.safeParse(await c.req.json().catch(() => undefined));
    if (!body.success) throw new HttpError(400, `the body must be {"seq": N}, N a whole number: ${formatIssues(body.error)}`);
    await jobOr404(node, id);
    try {
      return c.json(await node.followed(id, body.data.seq));
    } catch (err) {
      if (err instanceof NotHandedError) throw new HttpError(409, err.message);
      throw err;
    }
  });

  jobs.get("/:id/tasks/:task", async (c) => {
    const id = c.req.param("id");
    const task = c.req.param("task");
    await jobOr404(node, id);
    const row = await node.task(id, task);
    if (row === undefined) throw new HttpError(404, `task "${task}" of job "${id}" has no row yet`);
    return c.body(row, 200, { "Content-Type": "application/json", "Cache-Control": "no-store" });
  });

  // A link the browser can follow without the bearer header: see DownloadSigner.
  jobs.post("/:id/download", async (c) => {
    const id = c.req.param("id");
    await jobOr404(node, id);
    const { exp, sig } = downloads.sign(id);
    const url = `/v1/download/${encodeURIComponent(id)}?exp=${exp}&sig=${sig}`;
    return c.json({ url, expires: exp } satisfies DownloadResponse);
  });

  // The failed tasks of an ended job run again, their new rows replacing the failed ones.
  jobs.post("/:id/retry-failed", async (c) => {
    const id = c.req.param("id");
    const out = await node.retryFailed(id);
    if (!out) throw new HttpError(404, `no job "${id}" (unknown, or purged)`);
    return c.json(out satisfies RetryResponse);
  });

  jobs.delete("/:id", async (c) => {
    const id = c.req.param("id");
    const purge = c.req.query("purge");
    if (purge !== undefined && purge !== "0" && purge !== "false") {
      // No status first: a job whose record is broken has none, and is purged all the same.
      if (!(await node.purge(id))) throw new HttpError(404, `no job "${id}"`);
      return c.json({ id, state: "purged" } satisfies CancelResponse);
    }
    const job = await jobOr404(node, id);
    if (!(await node.cancel(id))) {
      const now = await node.job(id);
      throw new HttpError(409, `job "${id}" is already ${now?.state ?? job.state}`);
    }
    return c.json({ id, state: "cancelled" } satisfies CancelResponse);
  });

  return jobs;
}
