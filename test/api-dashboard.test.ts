import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createApp } from "../src/api/app.ts";
import { silentLogger } from "../src/log.ts";
import { coralSeeds } from "./support/seeds.ts";
import { gate, testRegistry } from "./support/api.ts";
import { waitFor } from "./support/wait.ts";
import { Browser, CHROMIUM, dumpDom, haveChromium } from "./support/chromium.ts";
import { MemoryNode } from "./support/memory-node.ts";

const TOKEN = "dash-token-123";

if (!haveChromium()) {
  console.warn(`api-dashboard: ${CHROMIUM} is missing, dashboard tests skipped (apt-get install -y chromium)`);
}

describe.skipIf(!haveChromium())("api dashboard", () => {
  const g = gate();
  const registry = testRegistry(g);
  const node = new MemoryNode({ name: "dash-a", registry });
  let open: ReturnType<typeof Bun.serve>;
  let guarded: ReturnType<typeof Bun.serve>;

  beforeAll(async () => {
    await node.submit({ workflow: "coral-dummy", seeds: coralSeeds(20), config: { job: "job-done" } });
    await node.submit({ workflow: "gated", seeds: [1, 2, 3].map((n) => ({ id: `w${n}`, n })), config: { job: "job-live" } });
    await waitFor("job-done", async () => (await node.job("job-done"))?.state === "done", 5000);
    open = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: createApp(node, { registry, log: silentLogger }).fetch });
    guarded = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: createApp(node, { registry, token: TOKEN, log: silentLogger }).fetch });
  });

  afterAll(async () => {
    g.open();
    await open?.stop(true);
    await guarded?.stop(true);
    await node.close();
  });

  test("api - dashboard renders members, roles, jobs and progress from a real server", async () => {
    const dom = await dumpDom(`http://127.0.0.1:${open.port}/`);
    expect(dom).toContain('<body data-loaded="true">');
    expect(dom).toContain('<tr data-node="dash-a">');
    expect(dom).toMatch(/data-role="gated.wait">gated.wait 3\/64</);
    expect(dom).toMatch(/data-role="coral-dummy.teacher">coral-dummy.teacher 0\/64</);
    expect(dom).toContain('<tr data-job="job-done">');
    expect(dom).toContain("20 / 20 (100.0%)");
    expect(dom).toContain("agreement_correctness 1.000");
    expect(dom).toContain('<span class="pill done">done</span>');
    expect(dom).toContain('<tr data-job="job-live">');
    expect(dom).toContain("0 / 3 (0.0%)");
    expect(dom).toContain('data-cancel="job-live"');
    expect(dom).toContain("2 jobs, 1 running");
    expect(dom).toMatch(/1 node, [0-9,]+ of [0-9,]+ slots free/);
    expect(dom).toContain('<span id="error"></span>');
  });

  test("api - dashboard asks for the token once, keeps it for the session, and cancels a job", async () => {
    const b = await Browser.launch();
    try {
      const url = `http://127.0.0.1:${guarded.port}/`;
      // A wrong token: one prompt, then a button instead of a prompt at every poll.
      b.promptText = "wrong";
      await b.goto(url);
      await b.waitFor<string>(`document.getElementById("error").textContent`);
      expect(await b.eval<boolean>(`document.getElementById("set-token").hidden`)).toBe(false);
      await Bun.sleep(2300);
      expect(b.dialogs.map((d) => d.type)).toEqual(["prompt"]);

      b.promptText = TOKEN;
      await b.eval(`document.getElementById("set-token").click()`);
      await b.waitFor(`document.body.dataset.loaded`);
      expect(b.dialogs.map((d) => d.type)).toEqual(["prompt", "prompt"]);
      expect(await b.eval<string>(`sessionStorage.getItem("matrixd.token")`)).toBe(TOKEN);
      expect(await b.eval<string>(`document.querySelector('[data-node="dash-a"]').textContent`)).toContain("dash-a");

      await b.eval(`document.querySelector('[data-cancel="job-live"]').click()`);
      await waitFor("the job to be cancelled", async () => (await node.job("job-live"))?.state === "cancelled", 5000);
      expect(b.dialogs.at(-1)).toEqual({ type: "confirm", message: "Cancel job job-live?" });
      await b.waitFor(`document.querySelector('[data-job="job-live"] .pill').textContent === "cancelled"`);

      // A reload keeps the token: no new prompt.
      await b.eval(`window.before = true`);
      await b.reload();
      await b.waitFor(`!window.before && document.body.dataset.loaded`);
      expect(b.dialogs.filter((d) => d.type === "prompt")).toHaveLength(2);
      expect(await b.eval<string>(`document.getElementById("jobs-count").textContent`)).toBe("2 jobs, 0 running");
    } finally {
      await b.close();
    }
  }, 30_000);
});
