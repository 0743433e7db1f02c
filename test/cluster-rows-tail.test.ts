import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { RunningClusterNode } from "../src/cluster/node.ts";
import { readResults, startNodes, waitJob } from "./support/cluster-nodes.ts";
import { type NatsServer, natsServerMissing, startNatsServer } from "./support/nats-server.ts";
import { coralSeeds } from "./support/seeds.ts";

const missing = natsServerMissing();
if (missing) console.warn(`cluster-rows-tail: ${missing}; skipped`);

describe.skipIf(missing !== undefined)("cluster rows tail (in-process, real nats-server)", () => {
  let srv: NatsServer;
  let a: RunningClusterNode;
  beforeAll(async () => {
    srv = await startNatsServer();
    [a] = (await startNodes(srv, ["t1"])) as [RunningClusterNode];
  });
  afterAll(async () => {
    await a?.close();
    await srv?.close();
  });

  test("cluster - the last rows of a job, among another job's, and one task's row by id", async () => {
    // Two jobs at once: their rows interleave in the rows stream.
    const big = await a.submit({ workflow: "coral-dummy", seeds: coralSeeds(300), config: { job: "tail-big" } });
    const small = await a.submit({ workflow: "coral-dummy", seeds: coralSeeds(7), config: { job: "tail-small" } });
    await waitJob(a, big.id);
    await waitJob(a, small.id);
    const bigRows = (await readResults(a, big.id)).map((r) => JSON.stringify(r));
    const smallRows = (await readResults(a, small.id)).map((r) => JSON.stringify(r));
    const ids = (rows: string[]) => rows.map((r) => (JSON.parse(r) as { id: string }).id);

    expect(ids(await a.tail(big.id, 10))).toEqual(ids(bigRows.slice(-10)));
    expect(ids(await a.tail(big.id, 1))).toEqual(ids(bigRows.slice(-1)));
    expect(ids(await a.tail(small.id, 5))).toEqual(ids(smallRows.slice(-5)));
    expect(ids(await a.tail(small.id, 50))).toEqual(ids(smallRows));
    expect(await a.tail("no-such-job", 5)).toEqual([]);

    const one = JSON.parse(smallRows[2] as string) as { id: string };
    const row = await a.task(small.id, one.id);
    expect(row && JSON.parse(row)).toEqual(JSON.parse(smallRows[2] as string));
    expect(await a.task(small.id, "nope")).toBeUndefined();
    expect(await a.task(big.id, one.id)).toBeDefined();
    expect(await a.task("no-such-job", one.id)).toBeUndefined();
  }, 60_000);

  test("cluster - a job's timeline adds up to its rows, while it runs and once it is done", async () => {
    const { id } = await a.submit({ workflow: "coral-dummy", seeds: coralSeeds(40), config: { job: "tail-timeline" } });
    const st = await waitJob(a, id);
    const tl = st.timeline;
    if (!tl) throw new Error("no timeline");
    const sum = (x: number[]) => x.reduce((p, q) => p + q, 0);
    expect(sum(tl.ok)).toBe(st.ok);
    expect(sum(tl.failed)).toBe(st.failed);
    expect(sum(tl.tokens)).toBe(st.promptTokens + st.completionTokens);
    expect(tl.start).toBeGreaterThanOrEqual(Math.floor(st.createdAt / 1000) * 1000);
  }, 60_000);
});
