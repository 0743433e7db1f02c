import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { Puller, type SlotPool } from "../src/bus/nats/index.ts";
import { silentLogger } from "../src/log.ts";
import { type NatsCluster, openNatsCluster, Streams, Subjects } from "../src/store/index.ts";
import { ensureConsumer, seedConsumerConfig } from "../src/store/setup.ts";
import { type NatsServer, natsServerMissing, startNatsServer } from "./support/nats-server.ts";
import { waitFor } from "./support/wait.ts";

/**
 * The pull loop against a real nats-server, at a consumer's limit of
 * unacknowledged messages: in fill mode one waiting request takes every
 * message as an ack frees room for it, and promises no slot meanwhile; with
 * `no_wait` requests every message costs a request of its own.
 */

const missing = natsServerMissing();
const TIMINGS = { ackWaitMs: 30_000, memberTtlMs: 3000 };
const MESSAGES = 12;
const LIMIT = 2;
const ACK_AFTER_MS = 150;

let srv: NatsServer;
let nats: NatsCluster;

/** A pool with room for 100 that records what is promised. */
function pool(): SlotPool & { promised: number; most: number } {
  const p = {
    promised: 0,
    most: 0,
    free: () => 100,
    reserve(n: number) {
      p.promised += n;
      p.most = Math.max(p.most, p.promised);
    },
    release(n: number) {
      p.promised -= n;
    },
  };
  return p;
}

/** Store `MESSAGES` seeds of a job, pull them at `LIMIT` un-acked with `fill`, each acked ACK_AFTER_MS after it came (longer than a no_wait request waits). */
async function pullAll(job: string, fill: boolean): Promise<{ requests: number; mostPromised: number; got: number }> {
  const consumer = `seeds_${job}`;
  await ensureConsumer(nats.link, Streams.seeds, seedConsumerConfig(consumer, Subjects.seed(job), LIMIT, TIMINGS));
  for (let i = 0; i < MESSAGES; i++) await nats.link.js.publish(Subjects.seed(job), new TextEncoder().encode(`seed ${i}`));
  const slots = pool();
  let got = 0;
  const puller = new Puller({
    link: nats.link,
    stream: Streams.seeds,
    consumer,
    pool: slots,
    fill,
    log: silentLogger,
    onMessage: (_msg, ack) => {
      got++;
      setTimeout(() => nats.link.nc.publish(ack, "+ACK"), ACK_AFTER_MS);
    },
  });
  puller.start();
  try {
    await waitFor(`${MESSAGES} seeds of ${job}`, () => got >= MESSAGES, 20_000, 10);
  } finally {
    await puller.stop();
  }
  return { requests: puller.requests, mostPromised: slots.most, got };
}

describe.skipIf(missing !== undefined)("seed puller", () => {
  beforeAll(async () => {
    srv = await startNatsServer();
    nats = await openNatsCluster({ servers: [srv.url], name: "puller", log: silentLogger, timings: TIMINGS });
  }, 30_000);

  afterAll(async () => {
    await nats?.close();
    await srv?.close();
  });

  test("cluster - at the limit, a fill-mode request waits and takes each seed as an ack frees room, promising no slot; no_wait requests need one each", async () => {
    const filled = await pullAll("fill", true);
    expect(filled.got).toBe(MESSAGES);
    expect(filled.mostPromised).toBe(0);
    // 12 seeds at 2 un-acked over about a second: one waiting request (two if it expires first), not one per seed
    expect(filled.requests).toBeLessThanOrEqual(2);
    const polled = await pullAll("poll", false);
    expect(polled.got).toBe(MESSAGES);
    expect(polled.mostPromised).toBeGreaterThan(0);
    expect(polled.requests).toBeGreaterThanOrEqual(MESSAGES / LIMIT);
  }, 60_000);
});
