import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { RunningClusterNode } from "../src/cluster/node.ts";
import { startNodes, waitJob } from "./support/cluster-nodes.ts";
import { type NatsServer, natsServerMissing, startNatsServer } from "./support/nats-server.ts";
import { coralSeeds } from "./support/seeds.ts";
import { waitFor } from "./support/wait.ts";

/** A cluster node's /metrics over a job's life: its series come with it and leave a while after it ends. */

const missing = natsServerMissing();
if (missing) console.warn(`metrics-cluster: ${missing}; skipped`);

const KEEP_MS = 1500;

describe.skipIf(missing !== undefined)("metrics of a cluster node", () => {
  let srv: NatsServer;
  let node: RunningClusterNode;

  beforeAll(async () => {
    srv = await startNatsServer();
    [node] = (await startNodes(srv, ["m1"], { endedJobsShownMs: KEEP_MS })) as [RunningClusterNode];
  });

  afterAll(async () => {
    await node?.close();
    await srv?.close();
  });

  test("metrics - an ended job's series stay a while, then leave; the node's stay", async () => {
    const { id } = await node.submit({ workflow: "coral-dummy", seeds: coralSeeds(30, "k"), config: { seed: 3 } });
    const st = await waitJob(node, id, 30_000);
    const ended = Date.now();
    const text = await node.metrics();
    expect(text).toContain(`matrixd_job_tasks{node="m1",job_id="${id}",workflow="coral-dummy",state="ok"} ${st.ok}`);
    expect(text).toContain(`matrixd_job_live{node="m1",job_id="${id}",workflow="coral-dummy"} 0`);
    expect(text).toContain(`matrixd_job_rows_total{node="m1",job_id="${id}",workflow="coral-dummy",status="ok"} ${st.ok}`);
    expect(text).toMatch(/^matrixd_step_duration_seconds_count\{node="m1",workflow="coral-dummy",role="teacher"\} [1-9]/m);
    const gone = await waitFor("the ended job's series to leave", async () => {
      const t = await node.metrics();
      return t.includes(id) ? undefined : t;
    }, 10_000, 100);
    expect(Date.now() - ended).toBeGreaterThanOrEqual(KEEP_MS - 200);
    // the families stay, with no sample of the job
    expect(gone).toContain("# TYPE matrixd_job_tasks gauge");
    expect(gone).toMatch(/^matrixd_steps_total\{node="m1"\} [1-9]/m);
    // the role load members publish carries the roles' recent step latency
    const teacher = node.figures()["coral-dummy.teacher"];
    expect(teacher?.p50Ms).toBeGreaterThanOrEqual(0);
    expect(teacher?.p99Ms).toBeGreaterThanOrEqual(teacher?.p50Ms ?? Number.POSITIVE_INFINITY);
  }, 60_000);
});
