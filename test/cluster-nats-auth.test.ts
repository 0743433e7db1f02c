import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { Subjects } from "../src/store/names.ts";
import { tempDir } from "./support/files.ts";
import { type JoinProcess, spawnJoin, waitDone } from "./support/join-process.ts";
import { ROOT } from "./support/matrixd.ts";
import { type NatsServer, natsServerMissing, startNatsServer } from "./support/nats-server.ts";
import { coralSeeds } from "./support/seeds.ts";
import { waitFor } from "./support/wait.ts";

/**
 * The shipped users and permissions (configs/nats/auth.conf), as they are:
 * matrixd nodes log in as its `matrixd` user and run jobs through every
 * route (submit, status, results, tail, events, cancel, purge); its `app`
 * user may not publish on matrixd's subjects nor use the JetStream API.
 */

const missing = natsServerMissing();
if (missing) console.warn(`cluster-nats-auth: ${missing}; skipped`);

const AUTH = join(ROOT, "configs/nats/auth.conf");
const MATRIXD = { user: "matrixd", pass: "change-me-matrixd" };
const APP = { user: "app", pass: "change-me-app" };
// offloadBytes low so large texts go through the object store, whose subjects the users must allow too
const CONFIG = { nats: { ...MATRIXD, ackWaitSec: 3, memberTtlSec: 3, offloadBytes: 256 }, sim: { lenMedian: 40, maxLen: 128, timeScale: 0.02 }, log: { level: "info" } };

describe.skipIf(missing !== undefined)("cluster on a nats-server with users and permissions", () => {
  const tmp = tempDir("matrixd-nats-auth-");
  let srv: NatsServer;
  let procs: JoinProcess[] = [];
  let app: NatsConnection;
  beforeAll(async () => {
    // The shipped users and permissions, on the launcher's own port and store folder.
    srv = await startNatsServer({ include: [AUTH] });
    procs = await Promise.all(["u1", "u2"].map((name) => spawnJoin({ name, nats: srv.url, dir: tmp.dir, config: CONFIG, args: ["--llm", "sim"] })));
    app = await connect({ servers: srv.url, ...APP });
  }, 120_000);
  afterAll(async () => {
    await app?.close();
    await Promise.all(procs.filter((p) => p.alive).map((p) => p.kill9()));
    await srv?.close();
    tmp.remove();
  });

  test("nats auth - matrixd nodes as the matrixd user run a job to done, and every job route works", async () => {
    const [a, b] = procs as [JoinProcess, JoinProcess];
    const seeds = coralSeeds(300, "u");
    const { id } = await a.submit("coral", seeds, { seed: 1, concurrency: 100 });
    const st = await waitDone(procs, id, 60_000);
    expect(st.state).toBe("done");
    expect(st.ok + st.failed).toBe(300);
    const rows = await b.results(id);
    expect(new Set(rows.map((r) => r.id)).size).toBe(300);
    const tail = await (await fetch(`${b.url}/v1/jobs/${id}/results?tail=3`, { signal: AbortSignal.timeout(10_000) })).text();
    expect(tail.trim().split("\n").length).toBe(3);
    expect((await b.get<{ events: unknown[] }>("/v1/events")).events.length).toBeGreaterThan(0);
    // A second job cancelled, then purged with its rows.
    const other = await b.submit("coral", coralSeeds(2000, "v"), { seed: 1, concurrency: 50 });
    const del = async (q: string) => (await fetch(`${a.url}/v1/jobs/${other.id}${q}`, { method: "DELETE", signal: AbortSignal.timeout(10_000) })).status;
    expect(await del("")).toBe(200);
    expect((await waitDone(procs, other.id, 20_000)).state).toBe("cancelled");
    expect(await del("?purge=1")).toBe(200);
    await waitFor("the purged job to be gone", async () => (await fetch(`${a.url}/v1/jobs/${other.id}`)).status === 404, 10_000, 200);
    for (const p of procs) expect(p.log(100_000)).not.toContain("Permissions Violation");
  }, 90_000);

  test("nats auth - another user's publish on a job's row subject is refused, and it cannot reach the JetStream API", async () => {
    const a = procs[0] as JoinProcess;
    const { id } = await a.submit("coral", coralSeeds(50, "w"), { seed: 1 });
    expect((await waitDone(procs, id, 60_000)).state).toBe("done");
    const errors: string[] = [];
    void (async () => {
      for await (const s of app.status()) if (s.type === "error") errors.push(String(s.error));
    })();
    app.publish(Subjects.row(id, "w1"), "forged");
    app.publish(`mx.row.${id}.forged`, "forged");
    app.publish("mx.task.coral.teacher", "forged");
    await app.flush();
    await waitFor("the server to refuse the publish", () => errors.some((e) => e.includes("Permissions Violation for Publish") && e.includes(`mx.row.${id}`)), 5000, 50);
    // Nothing landed: the job's dataset is what it was.
    expect((await a.results(id)).length).toBe(50);
    // Without the JetStream API, no stream can be purged or read around the permissions.
    expect(await jetstreamManager(app, { timeout: 2000 }).then(() => "reached", (err: unknown) => String(err))).not.toBe("reached");
    // The app's own subjects still work.
    const sub = app.subscribe("app.ping", { max: 1 });
    app.publish("app.ping", "hi");
    for await (const m of sub) expect(m.string()).toBe("hi");
  }, 90_000);
});
