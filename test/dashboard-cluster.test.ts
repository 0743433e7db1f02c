import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { haveChromium, openPage, type WatchedPage } from "./support/chromium.ts";
import { tempDir } from "./support/files.ts";
import type { JobStatus } from "../src/cluster/types.ts";
import { type JoinProcess, spawnJoin } from "./support/join-process.ts";
import { type NatsServer, natsServerMissing, startNatsServer } from "./support/nats-server.ts";
import { coralSeeds } from "./support/seeds.ts";
import { waitFor } from "./support/wait.ts";

/**
 * The dashboard as an operator uses it: a real nats-server, two `matrixd
 * join` processes of the compiled binary behind a token, a coral job on the
 * simulated LLM slowed down so it lasts some seconds, and headless
 * Chromium on one node's page while the other node is killed with -9.
 */

const missing = natsServerMissing() ?? (haveChromium() ? undefined : "chromium is not installed");
if (missing) console.warn(`dashboard-cluster: ${missing}; skipped`);

const TOKEN = "dash-cluster-token";
// About 0.1 s a turn: with 6 tasks in flight, 240 seeds take some 20 s.
const SEEDS = 240;
const CONFIG = { nats: { ackWaitSec: 3, memberTtlSec: 3 }, sim: { lenMedian: 60, maxLen: 160, timeScale: 0.06 } };

describe.skipIf(missing !== undefined)("dashboard on a cluster of matrixd join processes", () => {
  const tmp = tempDir("matrixd-dash-");
  let srv: NatsServer;
  let procs: JoinProcess[] = [];
  let w: WatchedPage;

  beforeAll(async () => {
    srv = await startNatsServer();
    procs = await Promise.all(
      ["da", "db"].map((name) => spawnJoin({ name, nats: srv.url, dir: tmp.dir, config: CONFIG, args: ["--llm", "sim", "--token", TOKEN] })),
    );
    // A laptop's screen.
    w = await openPage(1280, 800);
  }, 120_000);

  afterAll(async () => {
    await w?.close();
    await Promise.all(procs.filter((p) => p.alive).map((p) => p.kill9()));
    await srv?.close();
    tmp.remove();
  });

  test("dashboard - the job page's chart grows, a task page shows the dialogue, a killed node shows as lost and the job ends", async () => {
    const [a, b] = procs as [JoinProcess, JoinProcess];
    const auth = { Authorization: `Bearer ${TOKEN}` };
    // The job is accepted by the node that is killed later.
    const res = await fetch(`${b.url}/v1/jobs`, {
      method: "POST",
      headers: { ...auth, "content-type": "application/json" },
      body: JSON.stringify({ workflow: "coral", seeds: coralSeeds(SEEDS, "d"), config: { concurrency: 6, seed: 3 } }),
    });
    expect(res.status).toBe(201);
    const { id } = (await res.json()) as { id: string };

    const p = w.page;
    await p.goto(`${a.url}/#token=${TOKEN}`);
    await w.until(`document.body.dataset.loaded`);
    // The token went from the address into the session, and out of the address bar.
    expect(await p.evaluate<string>(`location.hash`)).toBe("#/");
    await p.goto(`${a.url}/#/jobs/${encodeURIComponent(id)}`);
    await w.until(`document.body.dataset.view === "job" && Number(document.getElementById("chart").dataset.points) >= 2`, 30_000);
    const first = Number(await p.getAttribute("#chart", "data-points"));
    await w.until(`Number(document.getElementById("chart").dataset.points) > ${first}`, 15_000);
    expect(await p.locator("#chart canvas").count()).toBe(1);
    expect(await p.locator('#roles-body tr[data-role="coral.teacher"]').count()).toBe(2);
    expect(await p.locator("#endpoints-body [data-endpoint]").count()).toBeGreaterThanOrEqual(2);
    await w.until(`document.querySelectorAll("#latest-body tr[data-task]").length >= 3`);
    await w.shot("cluster-job");

    const task = await p.locator("#latest-body tr[data-task]").first().getAttribute("data-task");
    await p.locator("#latest-body tr[data-task] a").first().click();
    await w.until(`document.body.dataset.view === "task" && document.querySelectorAll(".turn").length > 0`);
    expect(await p.locator("#task-head h2 .mono").textContent()).toBe(task);
    const speakers = await p.locator(".turn").evaluateAll((els) => els.map((e) => e.getAttribute("data-speaker")));
    expect(speakers).toContain("teacher");
    expect(speakers).toContain("student");
    const text = await p.locator('.turn[data-speaker="teacher"] [data-text]').first().textContent();
    expect(text?.trim().length).toBeGreaterThan(5);
    const meta = await p.locator('.turn[data-speaker="teacher"] [data-meta]').first().textContent();
    expect(meta).toContain("sim-llm");
    expect(meta).toMatch(/on d[ab]/);
    expect(meta).toMatch(/\d+ prompt \+ \d+ completion tokens/);
    await w.shot("cluster-task");

    await p.goto(`${a.url}/#/`);
    await w.until(`document.querySelectorAll("#members-body tr[data-node]").length === 2`);
    expect(await p.locator('tr[data-node="da"] [data-workflow="coral"]').count()).toBe(1);
    expect(await p.locator("#summary").textContent()).toMatch(/LLM slots \d+ busy of \d+/);
    const before = (await (await fetch(`${a.url}/v1/jobs/${id}`, { headers: auth })).json()) as JobStatus;
    expect(before.state).toBe("running");
    await b.kill9();
    await w.until(`document.querySelector('#events-body tr[data-kind="member.lost"][data-subject="db"]')`, 30_000);
    expect(await p.locator('#events-body tr[data-kind="member.lost"][data-subject="db"]').textContent()).toContain("seen by da");
    const ended = async () => {
      const r = await fetch(`${a.url}/v1/jobs/${id}`, { headers: auth });
      const st = (await r.json()) as JobStatus;
      return st.state !== "running" ? st : undefined;
    };
    const st = await waitFor(`job ${id} to end`, ended, 120_000, 250);
    expect(st.state).toBe("done");
    expect(st.ok + st.failed).toBe(SEEDS);
    await w.until(`document.querySelectorAll("#members-body tr[data-node]").length === 1`, 30_000);
    await w.until(`document.querySelector('tr[data-job="${id}"] .pill').textContent === "done"`);
    await w.shot("cluster-after-kill");
    expect(w.errors).toEqual([]);
  }, 240_000);
});
