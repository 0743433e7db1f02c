import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createApp } from "../src/api/app.ts";
import { DownloadSigner } from "../src/api/download.ts";
import { silentLogger } from "../src/log.ts";
import { gate, json, testRegistry } from "./support/api.ts";
import { MemoryNode } from "./support/memory-node.ts";
import { coralSeeds } from "./support/seeds.ts";
import { waitFor } from "./support/wait.ts";

const TOKEN = "pages-token";
const g = gate();
const registry = testRegistry(g);
const node = new MemoryNode({ name: "pages-a", registry });
const app = createApp(node, { registry, token: TOKEN, log: silentLogger });
const bearer = { Authorization: `Bearer ${TOKEN}` };

function lines(text: string): { id: string; status: string }[] {
  return text
    .split("\n")
    .filter((l) => l.length > 0)
    .map((l) => JSON.parse(l));
}

beforeAll(async () => {
  await node.submit({ workflow: "coral-dummy", seeds: coralSeeds(12), config: { job: "pages-done" } });
  await node.submit({ workflow: "gated", seeds: [{ id: "g1", n: 1 }], config: { job: "pages-live" } });
  await waitFor("pages-done", async () => (await node.job("pages-done"))?.state === "done", 5000);
});

afterAll(async () => {
  g.open();
  await node.close();
});

describe("api job pages", () => {
  test("api - a task's row by its id; 404 for an unknown job and for a task with no row yet", async () => {
    const all = lines(await (await app.request("/v1/jobs/pages-done/results", { headers: bearer })).text());
    const some = all[3];
    if (!some) throw new Error("no rows");
    const res = await app.request(`/v1/jobs/pages-done/tasks/${encodeURIComponent(some.id)}`, { headers: bearer });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toContain("application/json");
    const row = await json(res);
    expect(row.id).toBe(some.id);
    expect(row.history.length).toBeGreaterThan(0);

    const noJob = await app.request("/v1/jobs/nope/tasks/x", { headers: bearer });
    expect(noJob.status).toBe(404);
    expect((await json(noJob)).error).toBe('no job "nope"');
    const noRow = await app.request("/v1/jobs/pages-live/tasks/g1", { headers: bearer });
    expect(noRow.status).toBe(404);
    expect((await json(noRow)).error).toBe('task "g1" of job "pages-live" has no row yet');
    expect((await app.request("/v1/jobs/pages-done/tasks/x")).status).toBe(401);
  });

  test("api - results?tail=N answers the last N rows; a bad tail is 400", async () => {
    const all = lines(await (await app.request("/v1/jobs/pages-done/results", { headers: bearer })).text());
    expect(all).toHaveLength(12);
    const res = await app.request("/v1/jobs/pages-done/results?tail=5", { headers: bearer });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toContain("application/x-ndjson");
    expect(lines(await res.text()).map((r) => r.id)).toEqual(all.slice(-5).map((r) => r.id));
    const more = await app.request("/v1/jobs/pages-done/results?tail=1000", { headers: bearer });
    expect(lines(await more.text())).toHaveLength(12);
    const none = await app.request("/v1/jobs/pages-live/results?tail=3", { headers: bearer });
    expect(await none.text()).toBe("");
    for (const bad of ["0", "-1", "abc", "1.5", "1001", "", "1e3"]) {
      const r = await app.request(`/v1/jobs/pages-done/results?tail=${encodeURIComponent(bad)}`, { headers: bearer });
      expect(`${bad} ${r.status}`).toBe(`${bad} 400`);
      expect((await json(r)).error).toContain('"tail" must be a whole number from 1 to 1000');
    }
    expect((await app.request("/v1/jobs/nope/results?tail=3", { headers: bearer })).status).toBe(404);
  });

  test("api - a job's status carries its timeline; the list of jobs does not", async () => {
    const st = await json(await app.request("/v1/jobs/pages-done", { headers: bearer }));
    const tl = st.timeline;
    expect(tl.width).toBe(1000);
    const sum = (a: number[]) => a.reduce((x, y) => x + y, 0);
    expect(sum(tl.ok) + sum(tl.failed)).toBe(12);
    expect(sum(tl.tokens)).toBe(st.promptTokens + st.completionTokens);
    const list = await json(await app.request("/v1/jobs", { headers: bearer }));
    expect(list.jobs.length).toBe(2);
    for (const j of list.jobs) expect(j.timeline).toBeUndefined();
  });

  test("api - a download link opens one job's dataset without the token, for a minute", async () => {
    const res = await app.request("/v1/jobs/pages-done/download", { method: "POST", headers: bearer });
    expect(res.status).toBe(200);
    const { url, expires } = await json(res);
    expect(url).toMatch(/^\/v1\/download\/pages-done\?exp=\d+&sig=[0-9a-f]{64}$/);
    expect(url).not.toContain(TOKEN);
    expect(expires - Date.now()).toBeGreaterThan(50_000);
    const got = await app.request(url);
    expect(got.status).toBe(200);
    expect(got.headers.get("content-disposition")).toBe('attachment; filename="pages-done.jsonl"');
    expect(lines(await got.text())).toHaveLength(12);

    // The link is for that job only, and a changed signature or expiry is refused.
    const other = url.replace("/pages-done?", "/pages-live?");
    expect((await app.request(other)).status).toBe(403);
    expect((await app.request(url.replace(/sig=./, "sig=0"))).status).toBe(403);
    expect((await app.request(url.replace(/exp=\d+/, `exp=${expires + 1}`))).status).toBe(403);
    expect((await app.request("/v1/download/pages-done")).status).toBe(403);
    expect((await app.request("/v1/jobs/pages-done/download", { method: "POST" })).status).toBe(401);
    expect((await app.request("/v1/jobs/nope/download", { method: "POST", headers: bearer })).status).toBe(404);
  });

  test("api - download signatures expire", () => {
    const s = new DownloadSigner();
    const now = 1_000_000;
    const { exp, sig } = s.sign("j", now, 1000);
    expect(s.verify("j", exp, sig, now + 999)).toBe(true);
    expect(s.verify("j", exp, sig, now + 1001)).toBe(false);
    expect(s.verify("k", exp, sig, now)).toBe(false);
    expect(new DownloadSigner().verify("j", exp, sig, now)).toBe(false);
  });

  test("api - the dashboard page embeds its script and chart library and allows only this node", async () => {
    const res = await app.request("/");
    expect(res.status).toBe(200);
    const csp = res.headers.get("content-security-policy") ?? "";
    expect(csp).toContain("default-src 'none'");
    expect(csp).toContain("connect-src 'self'");
    expect(csp).toMatch(/script-src 'sha256-[A-Za-z0-9+/=]+'/);
    const html = await res.text();
    expect(html).toContain("uPlot");
    expect(html).toContain("window.matrixd.start();");
    expect(html).not.toMatch(/<(script|link|img)[^>]+(src|href)=/i);
    // The icon browsers ask for on their own is served too, without the token.
    const icon = await app.request("/favicon.ico");
    expect(icon.status).toBe(200);
    expect(icon.headers.get("content-type")).toBe("image/svg+xml");
  });
});
