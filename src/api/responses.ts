import { z } from "zod";
import { JobStatusSchema } from "../protocol/job.ts";
import { MemberSchema } from "../protocol/member.ts";

/**
 * The bodies the HTTP API answers, as the routes send them and the client
 * checks them. A job's status and a member are the cluster's own shapes
 * (src/protocol/).
 */

/** What `POST /v1/jobs` answers (201). */
export const SubmitResponseSchema = z.object({
  id: z.string(),
  /** tasks in the job (seeds × trials) */
  total: z.number(),
});
export type SubmitResponse = z.infer<typeof SubmitResponseSchema>;

/** What `GET /v1/jobs` answers. */
export const JobsResponseSchema = z.object({ jobs: z.array(JobStatusSchema) });
export type JobsResponse = z.infer<typeof JobsResponseSchema>;

/** What `DELETE /v1/jobs/:id` answers (200): the job cancelled, or with `?purge=1` gone with its rows. */
export const CancelResponseSchema = z.object({ id: z.string(), state: z.enum(["cancelled", "purged"]) });
export type CancelResponse = z.infer<typeof CancelResponseSchema>;

/**
 * What `POST /v1/jobs/:id/retry-failed` answers (200): the retry round now
 * under way and the failed tasks it runs again (0: the job had no failed
 * row, nothing runs).
 */
export const RetryResponseSchema = z.object({ id: z.string(), round: z.number().int().nonnegative(), tasks: z.number().int().nonnegative() });
export type RetryResponse = z.infer<typeof RetryResponseSchema>;

/** What `POST /v1/jobs/:id/download` answers: a link to the dataset that works for a minute, with no token. */
export const DownloadResponseSchema = z.object({ url: z.string(), expires: z.number() });
export type DownloadResponse = z.infer<typeof DownloadResponseSchema>;

/** What `GET /v1/cluster` answers. */
export const ClusterResponseSchema = z.object({
  /** the node that answered */
  node: z.string(),
  members: z.array(MemberSchema),
});
export type ClusterResponse = z.infer<typeof ClusterResponseSchema>;

/** The body of every error response. */
export const ErrorBodySchema = z.object({
  error: z.string(),
  /** one line per problem, when there are several */
  details: z.array(z.string()).optional(),
});
export type ErrorBody = z.infer<typeof ErrorBodySchema>;
