import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { coralSeeds } from "./support/seeds.ts";
import { tempDir } from "./support/files.ts";
import { type JoinProcess, spawnJoin, waitDone } from "./support/join-process.ts";
import { type NatsServer, natsServerMissing, startNatsServer } from "./support/nats-server.ts";

/**
 * A node whose LLM runs few sequences at once (a llama.cpp server with
 * `-np 2`, say) hosts every built-in workflow, so more LLM-bound roles wait
 * for tasks than its LLM slot group has slots: their waiting pull requests
 * must not hold the group's slots, or the job's seeds are never asked for.
 */

const missing = natsServerMissing();
if (missing) console.warn(`cluster-small-llm: ${missing}; skipped`);

const tmp = tempDir("matrixd-small-llm-");
let srv: NatsServer;
const procs: JoinProcess[] = [];

describe.skipIf(missing !== undefined)("a node with a small LLM slot group", () => {
  beforeAll(async () => {
    srv = await startNatsServer();
  });

  afterAll(async () => {
    await Promise.all(procs.filter((p) => p.alive).map((p) => p.kill9()));
    await srv?.stop();
    tmp.remove();
  });

  test("a coral job runs to the end though more roles than LLM slots wait for tasks", async () => {
    const sim = { slots: 2, lenMedian: 20, maxLen: 48, timeScale: 0.01 };
    const p = await spawnJoin({ name: "small", nats: srv.url, dir: tmp.dir, config: { sim, log: { level: "info" } }, args: ["--llm", "sim"] });
    procs.push(p);
    const members = (await (await fetch(`${p.url}/v1/cluster`)).json()) as { members: { groups?: Record<string, { slots: number }>; roles: Record<string, unknown> }[] };
    const group = members.members[0]?.groups?.llm?.slots ?? 0;
    const roles = Object.keys(members.members[0]?.roles ?? {}).length;
    // the case this test is about: more roles than group slots
    expect(group).toBeGreaterThan(0);
    expect(roles).toBeGreaterThan(group);
    const { id } = await p.submit("coral", coralSeeds(30, "s"), { seed: 1 });
    const st = await waitDone(procs, id, 60_000);
    expect(st.state).toBe("done");
    expect(st.ok + st.failed).toBe(30);
  }, 90_000);
});
