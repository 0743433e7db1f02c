import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { RunningClusterNode } from "../src/cluster/node.ts";
import { readResults, startNodes, waitJob } from "./support/cluster-nodes.ts";
import { type BusRunner, type CaseJob, comparable, DETERMINISM_JOB, engineCases, localRunner, type Row } from "./engine-cases.ts";
import { tempDir } from "./support/files.ts";
import { type NatsServer, startNatsServer } from "./support/nats-server.ts";
import { waitFor } from "./support/wait.ts";

const tmp = tempDir();
let srv: NatsServer;
let jobNo = 0;

beforeAll(async () => {
  srv = await startNatsServer();
});
afterAll(async () => {
  await srv?.close();
  tmp.remove();
});

/** The job's settings as a submission carries them. */
function submission(job: CaseJob) {
  return {
    workflow: job.workflow.name,
    seeds: job.seeds,
    config: { concurrency: job.concurrency, stepRetries: job.stepRetries, seed: job.seed, trials: job.trials ?? 1, options: job.options ?? {} },
  };
}

/** Wait for a job's end on `node` and read its rows back there. */
async function rowsOf(node: RunningClusterNode, id: string): Promise<Row[]> {
  const st = await waitJob(node, id);
  expect(st.state).toBe("done");
  const rows: Row[] = await readResults(node, id);
  expect(st.ok + st.failed).toBe(rows.length);
  return rows;
}

/** Nodes on a real nats-server: the job submitted to one and read back from another. */
const natsRunner: BusRunner = {
  name: "nats",
  async run(job) {
    const nodes = await startNodes(srv, [`e${++jobNo}a`, `e${jobNo}b`], { extra: [job.workflow] });
    try {
      const { id } = await nodes[0]!.submit(submission(job));
      return await rowsOf(nodes[1]!, id);
    } finally {
      await Promise.all(nodes.map((n) => n.close()));
    }
  },
  // Every node that runs tasks leaves once `after` rows are built, and two new ones take the job over;
  // a node hosting no role submits it and reads it back.
  async interrupted(job, after) {
    const n = ++jobNo;
    const extra = [job.workflow];
    const [reader] = await startNodes(srv, [`e${n}r`], { extra, roles: () => undefined });
    const nodes: RunningClusterNode[] = [reader!];
    try {
      const first = await startNodes(srv, [`e${n}a`, `e${n}b`], { extra });
      nodes.push(...first);
      const { id } = await reader!.submit(submission(job));
      const built = () => first.reduce((k, node) => k + node.engine.stats.ok + node.engine.stats.failed, 0);
      await waitFor(`${after} rows`, () => built() >= after, 30_000, 2);
      await Promise.all(first.map((node) => node.close()));
      const mid = await reader!.job(id);
      const resumedFrom = (mid?.ok ?? 0) + (mid?.failed ?? 0);
      nodes.push(...(await startNodes(srv, [`e${n}c`, `e${n}d`], { extra })));
      return { rows: await rowsOf(reader!, id), resumedFrom };
    } finally {
      await Promise.all(nodes.map((node) => node.close()));
    }
  },
};

describe("nats bus", () => engineCases(() => natsRunner));

test("engine - the same seeds and settings give the same dataset on the in-process bus and over NATS", async () => {
  const local = await localRunner(tmp).run(DETERMINISM_JOB);
  const nats = await natsRunner.run(DETERMINISM_JOB);
  expect(nats.length).toBe(300);
  expect(comparable(nats)).toEqual(comparable(local));
}, 60_000);
