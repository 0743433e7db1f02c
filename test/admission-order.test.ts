import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { AdmissionOrder, AdmissionSchema, inAdmissionOrder } from "../src/engine/admission.ts";
import { tempDir, readRows, writeLines } from "./support/files.ts";
import { MATRIXD, runProcess } from "./support/matrixd.ts";
import { readResults, startNodes, waitJob } from "./support/cluster-nodes.ts";
import { type NatsServer, natsServerMissing, startNatsServer } from "./support/nats-server.ts";

/**
 * Admission order: which tasks a job starts first. The same setting gives
 * the same order to `matrixd run` and to a cluster job (the order seeds are
 * stored in), and it changes only the order: every task, once, same ids.
 */

interface Item {
  id: string;
  seed?: Record<string, unknown>;
}
const items = (sizes: number[]): Item[] => sizes.map((n, i) => ({ id: `s${i}`, seed: { n } }));
const ids = (xs: Item[]) => xs.map((x) => x.id);
const order = (a: unknown, seed = 0) => new AdmissionOrder<Item>(AdmissionSchema.parse(a), (x) => x.seed, seed);

describe("admission order", () => {
  test("file order is the file's, whatever the window", () => {
    const xs = items([3, 1, 2]);
    expect(ids([...inAdmissionOrder(xs, order({ order: "file", window: 2 }))])).toEqual(["s0", "s1", "s2"]);
    expect(ids([...inAdmissionOrder(xs, new AdmissionOrder<Item>(undefined, (x) => x.seed, 0))])).toEqual(["s0", "s1", "s2"]);
  });

  test("largest and smallest sort by the key within the window, ties in file order", () => {
    const xs = items([1, 5, 3, 5, 2, 4]);
    expect(ids([...inAdmissionOrder(xs, order({ order: "largest", key: "seed.n", window: 100 }))])).toEqual(["s1", "s3", "s5", "s2", "s4", "s0"]);
    expect(ids([...inAdmissionOrder(xs, order({ order: "smallest", key: "seed.n", window: 100 }))])).toEqual(["s0", "s4", "s2", "s5", "s1", "s3"]);
    // a window of 2: each seed read lets out the largest of the two held
    expect(ids([...inAdmissionOrder(xs, order({ order: "largest", key: "seed.n", window: 2 }))])).toEqual(["s1", "s3", "s2", "s5", "s4", "s0"]);
  });

  test("shuffle: a permutation, the same for the same job seed, another for another", () => {
    const xs = items(Array.from({ length: 200 }, (_, i) => i));
    const a = ids([...inAdmissionOrder(xs, order({ order: "shuffle", window: 50 }, 7))]);
    const b = ids([...inAdmissionOrder(xs, order({ order: "shuffle", window: 50 }, 7))]);
    const c = ids([...inAdmissionOrder(xs, order({ order: "shuffle", window: 50 }, 8))]);
    expect(a).toEqual(b);
    expect(a).not.toEqual(c);
    expect(a).not.toEqual(ids(xs));
    expect([...a].sort()).toEqual(ids(xs).sort());
    // a window bounds how early a seed can start: no seed starts more than a window ahead of its line
    for (const [pos, id] of a.entries()) expect(Number(id.slice(1)) - pos).toBeLessThanOrEqual(50);
  });

  test("items without a seed pass at once; a seed whose key cannot be read starts in file order, the first one reported, all counted", () => {
    const heard: string[] = [];
    const o = new AdmissionOrder<Item>(AdmissionSchema.parse({ order: "largest", key: "seed.n", window: 10 }), (x) => x.seed, 0, (err) => heard.push(err.message));
    const xs: Item[] = [{ id: "a", seed: { n: 1 } }, { id: "bad" }, { id: "b", seed: { n: 2 } }, { id: "nokey", seed: { m: 1 } }, { id: "text", seed: { n: "x" } }];
    expect(ids([...inAdmissionOrder(xs, o)])).toEqual(["bad", "nokey", "text", "b", "a"]);
    expect(o.keyErrors).toBe(2);
    expect(heard.length).toBe(1);
    expect(heard[0]).toContain("seed.n");
    const said: string[] = [];
    const text = new AdmissionOrder<Item>(AdmissionSchema.parse({ order: "largest", key: "seed.n", window: 10 }), (x) => x.seed, 0, (err) => said.push(err.message));
    expect(ids([...inAdmissionOrder([{ id: "text", seed: { n: "x" } }], text)])).toEqual(["text"]);
    expect(said).toEqual([expect.stringContaining('gave a string "x", not a number')]);
  });

  test("settings are checked: a key needs largest or smallest, those need a key, the key must compile", () => {
    const problem = (a: unknown) => AdmissionSchema.safeParse(a).error?.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ");
    expect(problem({ order: "largest" })).toContain('key: order "largest" needs a key');
    expect(problem({ order: "shuffle", key: "seed.n" })).toContain('a key sorts only with order "largest" or "smallest"');
    expect(problem({ order: "smallest", key: "seed.n +" })).toContain("does not compile");
    expect(problem({ order: "sorted" })).toContain("order");
    expect(problem({ order: "file", window: 0 })).toContain("window");
    expect(problem({ order: "file", spread: 1 })).toContain("spread");
  });
});

/** Coral seeds whose question lengths are `sizes`. */
const sized = (sizes: number[]) =>
  sizes.map((n, i) => ({ id: `q${i}`, question: `${"x".repeat(n)}?`, options: ["1", "2"], answer: "A" }));
const SIZES = [5, 40, 12, 40, 1, 33, 7, 20, 2, 29, 18, 11];
const BY_SIZE_DESC = SIZES.map((n, i) => ({ n, i }))
  .sort((a, b) => b.n - a.n || a.i - b.i)
  .map(({ i }) => `q${i}`);

describe("admission order in a run", () => {
  const tmp = tempDir("matrixd-order-");
  afterAll(() => tmp.remove());
  const matrixd = (args: string[]) => runProcess([...MATRIXD, ...args], { env: { MATRIXD_TOKEN: "", MATRIXD_SERVER: "" }, timeoutMs: 60_000 });

  test("matrixd run starts the largest first: one task at a time, its rows come in key order", async () => {
    writeLines(tmp.path("seeds.jsonl"), sized(SIZES));
    writeFileSync(tmp.path("largest.json"), JSON.stringify({ concurrency: 1, admission: { order: "largest", key: "size(seed.question)", window: 100 } }));
    const r = await matrixd(["run", "--workflow", "coral-dummy", "--seeds", tmp.path("seeds.jsonl"), "--out", tmp.path("largest.jsonl"), "--config", tmp.path("largest.json")]);
    expect(r.code).toBe(0);
    expect(readRows(tmp.path("largest.jsonl")).map((row) => row.id)).toEqual(BY_SIZE_DESC);
  });

  test("a wrong admission setting is refused before anything runs, naming the key", async () => {
    writeLines(tmp.path("seeds.jsonl"), sized(SIZES));
    writeFileSync(tmp.path("bad.json"), JSON.stringify({ admission: { order: "largest", key: "size(seed.question" } }));
    const r = await matrixd(["run", "--workflow", "coral-dummy", "--seeds", tmp.path("seeds.jsonl"), "--out", tmp.path("bad.jsonl"), "--config", tmp.path("bad.json")]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("admission.key");
    expect(r.stderr).toContain("does not compile");
  });
});

const missing = natsServerMissing();
if (missing) console.warn(`admission-order: ${missing}; cluster part skipped`);

describe.skipIf(missing !== undefined)("admission order in a cluster job", () => {
  let srv: NatsServer;
  const tmp = tempDir("matrixd-order-c-");
  beforeAll(async () => {
    srv = await startNatsServer();
  });
  afterAll(async () => {
    await srv?.close();
    tmp.remove();
  });

  test("a cluster job takes its seeds in the same order as matrixd run, streamed or whole", async () => {
    const [a] = await startNodes(srv, ["o1"]);
    try {
      const seeds = sized(SIZES);
      const config = { concurrency: 1, admission: { order: "largest", key: "size(seed.question)", window: 100 } };
      const whole = await a!.submit({ workflow: "coral-dummy", seeds, config });
      await waitJob(a!, whole.id);
      expect((await readResults(a!, whole.id)).map((r) => r.id)).toEqual(BY_SIZE_DESC);

      // shuffled, streamed in one seed at a time: the order matrixd run gives the same seed file
      const shuffle = { concurrency: 1, seed: 3, admission: { order: "shuffle", window: 5 } };
      const intake = await a!.intake({ workflow: "coral-dummy", config: shuffle });
      for (const [i, s] of seeds.entries()) await intake.add({ line: i + 1, id: s.id, seed: s });
      const streamed = await intake.commit();
      await waitJob(a!, streamed.id);
      const clusterOrder = (await readResults(a!, streamed.id)).map((r) => r.id);
      writeLines(tmp.path("seeds.jsonl"), seeds);
      writeFileSync(tmp.path("shuffle.json"), JSON.stringify(shuffle));
      const r = await runProcess([...MATRIXD, "run", "--workflow", "coral-dummy", "--seeds", tmp.path("seeds.jsonl"), "--out", tmp.path("shuffle.jsonl"), "--config", tmp.path("shuffle.json")]);
      expect(r.code).toBe(0);
      const localOrder = readRows(tmp.path("shuffle.jsonl")).map((row) => row.id);
      expect(clusterOrder).toEqual(localOrder);
      expect(localOrder).not.toEqual(seeds.map((s) => s.id));
      expect([...localOrder].sort()).toEqual(seeds.map((s) => s.id).sort());
    } finally {
      await a!.close();
    }
  });
});
