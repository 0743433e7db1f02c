import { Hono } from "hono";
import type { ClusterNode, JobStatus } from "../../cluster/types.ts";
import type { Logger } from "../../log.ts";
import type { Registry } from "../../plugin/registry.ts";
import { HttpError } from "../http-error.ts";
import { ndjsonStream } from "../ndjson.ts";
import type { CancelResponse, JobsResponse, SubmitResponse } from "../responses.ts";
import { readSubmission, type SubmissionLimits, submitStream } from "../submission.ts";

export interface JobRoutesOptions {
  node: ClusterNode;
  registry: Registry;
  limits: SubmissionLimits;
  log?: Logger;
}

async function jobOr404(node: ClusterNode, id: string): Promise<JobStatus> {
  const job = await node.job(id);
  if (!job) throw new HttpError(404, `no job "${id}"`);
  return job;
}

/**
 * `/v1/jobs`: submit, list, status, results (NDJSON, streamed), cancel.
 * Seeds are checked against the workflow before the node sees them, so a
 * job is either taken whole or refused with every bad line named.
 */
export function jobRoutes(opts: JobRoutesOptions): Hono {
  const { node, registry, limits, log } = opts;
  const jobs = new Hono();

  jobs.post("/", async (c) => {
    const read = await readSubmission(c.req.raw, { workflow: c.req.query("workflow"), config: c.req.query("config") }, registry, limits);
    const { id, total } = read.kind === "whole" ? await node.submit(read.submission) : await submitStream(node, read, limits);
    log?.info({ job: id, workflow: read.kind === "whole" ? read.submission.workflow : read.workflow.name, total }, "job submitted");
    return c.json({ id, total } satisfies SubmitResponse, 201, { Location: `/v1/jobs/${encodeURIComponent(id)}` });
  });

  jobs.get("/", async (c) => c.json({ jobs: await node.jobs() } satisfies JobsResponse));

  jobs.get("/:id", async (c) => c.json(await jobOr404(node, c.req.param("id"))));

  jobs.get("/:id/results", async (c) => {
    const id = c.req.param("id");
    await jobOr404(node, id);
    return c.body(ndjsonStream(node.results(id)), 200, {
      "Content-Type": "application/x-ndjson",
      "Cache-Control": "no-store",
    });
  });

  jobs.delete("/:id", async (c) => {
    const id = c.req.param("id");
    const job = await jobOr404(node, id);
    const purge = c.req.query("purge");
    if (purge !== undefined && purge !== "0" && purge !== "false") {
      await node.purge(id);
      log?.info({ job: id }, "job purged");
      return c.json({ id, state: "purged" } satisfies CancelResponse);
    }
    if (!(await node.cancel(id))) {
      const now = await node.job(id);
      throw new HttpError(409, `job "${id}" is already ${now?.state ?? job.state}`);
    }
    log?.info({ job: id }, "job cancelled");
    return c.json({ id, state: "cancelled" } satisfies CancelResponse);
  });

  return jobs;
}
