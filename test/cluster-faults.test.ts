import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { comparable } from "./engine-cases.ts";
import { tempDir } from "./support/files.ts";
import { type JoinProcess, spawnJoin, waitDone } from "./support/join-process.ts";
import { referenceRun } from "./support/matrixd.ts";
import { type NatsServer, natsServerMissing, startNatsServer } from "./support/nats-server.ts";
import { coralSeeds } from "./support/seeds.ts";

/**
 * A fault loop: a three-node cluster runs a coral job on the simulated LLM
 * while a loop kills a random node with kill -9 and starts it again every
 * few seconds, a fixed number of times; the dataset must have one row per
 * task and equal `matrixd run`'s. The short form runs in `make test`; the
 * long one (more seeds, more kills, and a nats-server restart among them)
 * in `make test-faults` (MATRIXD_FAULTS=long).
 */

const missing = natsServerMissing();
if (missing) console.warn(`cluster-faults: ${missing}; skipped`);

const LONG = process.env.MATRIXD_FAULTS === "long";
const PLAN = LONG
  ? { seeds: 8000, kills: 24, everyMs: [1000, 2500], natsRestartAt: 8, timeoutMs: 600_000, timeScale: 0.25 }
  : { seeds: 1500, kills: 4, everyMs: [1200, 2000], natsRestartAt: -1, timeoutMs: 90_000, timeScale: 0.2 };
// The sim is slow enough that the job outlasts the loop: every kill comes mid-job.
const SIM = { lenMedian: 40, maxLen: 128, timeScale: PLAN.timeScale };
const JOB = { seed: 7, concurrency: 400 };
const CONFIG = { nats: { ackWaitSec: 2, memberTtlSec: 2 }, sim: SIM, log: { level: "info" } };

describe.skipIf(missing !== undefined)("cluster fault loop (matrixd join processes, real nats-server)", () => {
  const tmp = tempDir("matrixd-faults-");
  const seeds = coralSeeds(PLAN.seeds, "f");
  let srv: NatsServer;
  let procs: JoinProcess[] = [];
  // biome-ignore lint/suspicious/noExplicitAny: rows read back
  let reference: any[] = [];

  const join = (name: string) => spawnJoin({ name, nats: srv.url, dir: tmp.dir, config: CONFIG, args: ["--llm", "sim"] });

  beforeAll(async () => {
    srv = await startNatsServer();
    [reference, procs] = await Promise.all([referenceRun(tmp.dir, seeds, { sim: SIM, ...JOB }, 300_000), Promise.all(["k1", "k2", "k3"].map(join))]);
    expect(reference.length).toBe(PLAN.seeds);
  }, 360_000);

  afterAll(async () => {
    await Promise.all(procs.filter((p) => p.alive).map((p) => p.kill9()));
    await srv?.close();
    if (process.env.MATRIXD_KEEP_LOGS) console.log(`cluster-faults: logs kept in ${tmp.dir}`);
    else tmp.remove();
  });

  test(
    `cluster - ${PLAN.kills} kill -9s of a random node${LONG ? " and a nats-server restart" : ""} mid-job: one row per task, the dataset of matrixd run`,
    async () => {
      const started = Date.now();
      const { id, total } = await (procs[0] as JoinProcess).submit("coral", seeds, JOB);
      expect(total).toBe(PLAN.seeds);
      let ended = false;
      const done = waitDone(procs, id, PLAN.timeoutMs).finally(() => {
        ended = true;
      });
      // The loop: bounded by its number of kills; it stops early if the job ends first. A killed
      // node is started again while the loop goes on (as a supervisor would), so kills come every
      // few seconds whatever a start takes.
      let kills = 0;
      const starts: Promise<void>[] = [];
      const [lo, hi] = PLAN.everyMs as [number, number];
      while (kills < PLAN.kills && !ended) {
        await Bun.sleep(lo + Math.random() * (hi - lo));
        if (ended) break;
        if (kills === PLAN.natsRestartAt) await srv.restart();
        const live = procs.filter((p) => p.alive);
        const victim = live[Math.floor(Math.random() * live.length)];
        if (!victim || live.length < 2) continue;
        await victim.kill9();
        kills++;
        // waitDone polls the live ones; the array is changed in place so it sees the new process.
        starts.push(join(victim.name).then((p) => void (procs[procs.indexOf(victim)] = p)));
      }
      await Promise.all(starts);
      const st = await done;
      // Every kill came while the job ran (the job lasts well past the loop).
      expect(kills).toBe(PLAN.kills);
      expect(st.state).toBe("done");
      expect(st.ok + st.failed).toBe(PLAN.seeds);
      const rows = await (procs[0] as JoinProcess).results(id);
      expect(rows.length).toBe(PLAN.seeds);
      expect(new Set(rows.map((r) => r.id)).size).toBe(PLAN.seeds);
      expect(comparable(rows)).toEqual(comparable(reference));
      console.log(`cluster-faults: ${kills} kills, job done in ${((Date.now() - started) / 1000).toFixed(1)} s`);
    },
    PLAN.timeoutMs + 60_000,
  );
});
