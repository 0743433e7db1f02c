import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { makeJobRuntime } from "../src/engine/job.ts";
import { runJob } from "../src/engine/run.ts";
import { silentLogger } from "../src/log.ts";
import { readResults, startNodes, waitJob } from "./support/cluster-nodes.ts";
import { type BusRunner, comparable, DETERMINISM_JOB, engineCases, type Row } from "./engine-cases.ts";
import { readRows, tempDir, writeLines } from "./support/files.ts";
import { type NatsServer, startNatsServer } from "./support/nats-server.ts";

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

/** The in-process bus, as `matrixd run` drives it. */
const localRunner: BusRunner = {
  name: "local",
  async run(job) {
    const n = ++jobNo;
    writeLines(tmp.path(`seeds-${n}.jsonl`), job.seeds);
    const rt = makeJobRuntime({ workflow: job.workflow, options: job.options ?? {}, seed: job.seed, stepRetries: job.stepRetries });
    await runJob({
      job: rt,
      seedsPath: tmp.path(`seeds-${n}.jsonl`),
      outPath: tmp.path(`out-${n}.jsonl`),
      concurrency: job.concurrency,
      trials: 1,
      log: silentLogger,
      node: "n1",
    });
    return readRows(tmp.path(`out-${n}.jsonl`));
  },
};

/** Two nodes on a real nats-server, the job submitted to one and read back from the other. */
const natsRunner: BusRunner = {
  name: "nats",
  async run(job) {
    const nodes = await startNodes(srv, [`e${++jobNo}a`, `e${jobNo}b`], { extra: [job.workflow] });
    try {
      const { id } = await nodes[0]!.submit({
        workflow: job.workflow.name,
        seeds: job.seeds,
        config: { concurrency: job.concurrency, stepRetries: job.stepRetries, seed: job.seed, options: job.options ?? {} },
      });
      const st = await waitJob(nodes[1]!, id);
      expect(st.state).toBe("done");
      const rows: Row[] = await readResults(nodes[1]!, id);
      expect(st.ok + st.failed).toBe(rows.length);
      return rows;
    } finally {
      await Promise.all(nodes.map((n) => n.close()));
    }
  },
};

describe("local bus", () => engineCases(() => localRunner));
describe("nats bus", () => engineCases(() => natsRunner));

test("engine - the same seeds and settings give the same dataset on the in-process bus and over NATS", async () => {
  const local = await localRunner.run(DETERMINISM_JOB);
  const nats = await natsRunner.run(DETERMINISM_JOB);
  expect(nats.length).toBe(300);
  expect(comparable(nats)).toEqual(comparable(local));
}, 60_000);
