import { afterAll, describe, expect, test } from "bun:test";
import { ApiClient, ApiError } from "../src/api/client.ts";
import { CodecError } from "../src/errors.ts";
import { decodeWith, encode } from "../src/protocol/codec.ts";
import { JobSettingsSchema, type JobStatus, SUBMIT_SETTING_KEYS, SubmitSettingsSchema } from "../src/protocol/job.ts";
import { type Member, MemberSchema } from "../src/protocol/member.ts";
import { JobRecordSchema } from "../src/store/index.ts";

/** A member with every field set, endpoint fields included. */
function fullMember(): Member {
  return {
    node: "n1",
    version: "0.1.0",
    http: "http://10.0.0.5:7420",
    roles: { "coral.teacher": { slots: 8, busy: 3, queued: 1 } },
    services: {
      llm: [
        {
          url: "http://10.0.0.5:8000/v1",
          models: ["m"],
          inFlight: 3,
          limit: 16,
          healthy: true,
          requests: 120,
          errors: 2,
          promptTokens: 5000,
          completionTokens: 900,
          waiting: 1,
          latencyMs: 420,
          maxConcurrency: 64,
          serverRunning: 5,
          serverWaiting: 0,
          serverSlots: 8,
          kind: "vllm",
          contextTokens: 32768,
          missingMetrics: ["vllm:num_requests_waiting"],
        },
      ],
      env: { driver: "bwrap", capacity: 4, inUse: 1 },
    },
    startedAt: 1_700_000_000_000,
    seenAt: 1_700_000_001_000,
    state: "running",
  };
}

const status: JobStatus = {
  id: "job-1",
  workflow: "coral",
  state: "running",
  total: 10,
  queued: 4,
  running: 2,
  ok: 3,
  failed: 1,
  promptTokens: 100,
  completionTokens: 50,
  rate: 1.5,
  createdAt: 1,
  updatedAt: 2,
  acceptedBy: "n1",
  budget: { tokens: 1000 },
  spent: { tokens: 150, cost: 0 },
  metrics: { agreement: 0.5, reward: null },
};

/** A server answering `GET path` with `body`, on a port the system picks. */
function answering(routes: Record<string, unknown>) {
  return Bun.serve({
    port: 0,
    hostname: "127.0.0.1",
    fetch: (req) => {
      const path = new URL(req.url).pathname;
      return path in routes ? Response.json(routes[path]) : new Response("no", { status: 404 });
    },
  });
}

describe("protocol schemas", () => {
  const servers: ReturnType<typeof Bun.serve>[] = [];
  afterAll(() => {
    for (const s of servers) s.stop(true);
  });

  test("protocol - a member record keeps every field through CBOR", () => {
    const m = fullMember();
    expect(decodeWith(MemberSchema, encode(m), "member record")).toEqual(m);
  });

  test("protocol - a member record of a node that says less (no endpoint extras, no http, no env) still parses", () => {
    const m = fullMember();
    const old = {
      node: m.node,
      version: m.version,
      roles: m.roles,
      services: { llm: [{ url: "http://x/v1", models: [], inFlight: 0, limit: 1, healthy: true, requests: 0, errors: 0, promptTokens: 0, completionTokens: 0 }] },
      startedAt: m.startedAt,
      seenAt: m.seenAt,
      state: "draining",
    };
    expect(decodeWith(MemberSchema, encode(old), "member record")).toEqual(old as Member);
  });

  test("protocol - a member record with a bad role load is refused, naming the field", () => {
    const m = fullMember();
    const bad = { ...m, roles: { "coral.teacher": { slots: -1, busy: 0, queued: 0 } } };
    expect(() => decodeWith(MemberSchema, encode(bad), "member record")).toThrow(CodecError);
    expect(() => decodeWith(MemberSchema, encode(bad), "member record")).toThrow(/"roles\.coral\.teacher\.slots"/);
  });

  test("protocol - a job record as stored parses, its settings with them", () => {
    const settings = { concurrency: 1024, trials: 2, seed: 0, stepRetries: 1, options: { k: 1 }, maxSteps: 9, budget: { tokens: 500 } };
    const rec = {
      v: 1,
      id: "job-1",
      workflow: "coral",
      state: "running",
      total: 4,
      entry: "teacher",
      settings,
      createdAt: 1,
      updatedAt: 2,
      acceptedBy: "n1",
      streamed: true,
    };
    const parsed = JobRecordSchema.parse(rec);
    expect(parsed.settings).toEqual(settings);
    expect(JobSettingsSchema.safeParse({ ...settings, trials: 0 }).success).toBe(false);
  });

  test("protocol - a submission may give any job setting or none, plus workflow and job id; node settings are refused", () => {
    expect(SubmitSettingsSchema.parse({})).toEqual({});
    for (const key of Object.keys(JobSettingsSchema.shape)) expect(SUBMIT_SETTING_KEYS).toContain(key);
    expect(SUBMIT_SETTING_KEYS).toContain("workflow");
    expect(SUBMIT_SETTING_KEYS).toContain("job");
    const node = SubmitSettingsSchema.safeParse({ trials: 2, llm: { endpoints: [] } });
    expect(node.success).toBe(false);
    expect(node.error?.issues[0]?.message).toMatch(/llm/);
    expect(SubmitSettingsSchema.safeParse({ trials: 1001 }).success).toBe(false);
    expect(SubmitSettingsSchema.safeParse({ budget: {} }).success).toBe(false);
    expect(SubmitSettingsSchema.safeParse({ job: "-x" }).success).toBe(false);
  });

  test("api client - members and job status come back from a server whole", async () => {
    const m = fullMember();
    const srv = answering({ "/v1/cluster": { node: "n1", members: [m] }, "/v1/jobs": { jobs: [status] }, "/v1/jobs/job-1": status });
    servers.push(srv);
    const api = new ApiClient({ server: `http://127.0.0.1:${srv.port}` });
    expect(await api.cluster()).toEqual({ node: "n1", members: [m] });
    expect(await api.jobs()).toEqual([status]);
    expect(await api.job("job-1")).toEqual(status);
  });

  test("api client - an answer of the wrong shape is an ApiError naming the field", async () => {
    const m = fullMember();
    const bad = { ...m, services: { llm: [{ ...m.services.llm[0], healthy: "yes" }] } };
    const srv = answering({ "/v1/cluster": { node: "n1", members: [bad] }, "/v1/jobs/job-1": { ...status, state: "paused" } });
    servers.push(srv);
    const api = new ApiClient({ server: `http://127.0.0.1:${srv.port}` });
    const err = await api.cluster().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApiError);
    expect(String(err)).toMatch(/unexpected shape: "members\.0\.services\.llm\.0\.healthy"/);
    expect(String(await api.job("job-1").catch((e: unknown) => e))).toMatch(/unexpected shape: "state"/);
  });
});
