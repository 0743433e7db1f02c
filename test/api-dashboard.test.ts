import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { z } from "zod";
import { defineWorkflow } from "../src/plugin/api.ts";
import { Registry } from "../src/plugin/registry.ts";
import { createApp } from "../src/api/app.ts";
import { silentLogger } from "../src/log.ts";
import { coralSeeds } from "./support/seeds.ts";
import { gate, testRegistry } from "./support/api.ts";
import { waitFor } from "./support/wait.ts";
import { CHROMIUM, haveChromium, openPage, type WatchedPage } from "./support/chromium.ts";
import { MemoryNode } from "./support/memory-node.ts";

const TOKEN = "dash-token-123";

if (!haveChromium()) {
  console.warn(`api-dashboard: ${CHROMIUM} is missing, dashboard tests skipped (apt-get install -y chromium)`);
}

/** Errors of the page's own code (the refused requests' console errors are the token test's point). */
function pageErrors(w: WatchedPage): string[] {
  return w.errors.filter((e) => e.startsWith("page error"));
}

/** One step that answers with a tool call, the tool's result and a structured reply, as tool-use and reasoning-extract rows hold them. */
const tooly = defineWorkflow({
  name: "tooly",
  description: "test workflow with tool calls",
  seedSchema: z.looseObject({ id: z.string() }),
  configSchema: z.strictObject({}),
  roles: {
    agent: {
      kind: "cpu",
      async run() {
        return {
          turns: [
            { text: "let me look", toolCalls: [{ id: "call_1", name: "lookup", arguments: '{"q":"weather"}' }] },
            { role: "tool", text: "sunny, 21 C", toolCallId: "call_1" },
            { text: '{"answer":"sunny","confidence":0.9}' },
          ],
        };
      },
    },
  },
  start: () => ({ next: "agent", vars: {} }),
  next: () => null,
  output: () => ({ output: { ok: true }, metrics: {} }),
});

describe.skipIf(!haveChromium())("api dashboard", () => {
  const g = gate();
  const registry = new Registry([...testRegistry(g).all(), tooly]);
  const node = new MemoryNode({ name: "dash-a", registry });
  let open: ReturnType<typeof Bun.serve>;
  let guarded: ReturnType<typeof Bun.serve>;

  beforeAll(async () => {
    await node.submit({ workflow: "coral-dummy", seeds: coralSeeds(20), config: { job: "job-done" } });
    await node.submit({ workflow: "gated", seeds: [1, 2, 3].map((n) => ({ id: `w${n}`, n })), config: { job: "job-live" } });
    await node.submit({ workflow: "coral-dummy", seeds: coralSeeds(6), config: { job: "job-failed", maxSteps: 3 } });
    await node.submit({ workflow: "tooly", seeds: [{ id: "t1" }], config: { job: "job-tools" } });
    await waitFor("job-done", async () => (await node.job("job-done"))?.state === "done", 5000);
    await waitFor("job-failed", async () => (await node.job("job-failed"))?.state === "done", 5000);
    await waitFor("job-tools", async () => (await node.job("job-tools"))?.state === "done", 5000);
    open = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: createApp(node, { registry, log: silentLogger }).fetch });
    guarded = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: createApp(node, { registry, token: TOKEN, log: silentLogger }).fetch });
  });

  afterAll(async () => {
    g.open();
    await open?.stop(true);
    await guarded?.stop(true);
    await node.close();
  });

  test("api - dashboard's cluster view: members with the roles of live workflows only, jobs linked to their pages", async () => {
    const w = await openPage();
    try {
      const p = w.page;
      await p.goto(`http://127.0.0.1:${open.port}/`);
      await p.waitForSelector('body[data-loaded="true"]');
      const member = p.locator('tr[data-node="dash-a"]');
      expect(await member.textContent()).toContain("dash-a (this node)");
      // gated has a live job: its role is shown; coral-dummy's job is done: its roles are only counted.
      expect(await member.locator('[data-role="gated.wait"]').textContent()).toBe("wait 3/64");
      expect(await member.locator('[data-role^="coral-dummy."]').count()).toBe(0);
      expect(await member.textContent()).toMatch(/\d+ roles of workflows with no live job/);
      expect(await p.locator('tr[data-job="job-done"]').textContent()).toContain("20 / 20 (100.0%)");
      expect(await p.locator('tr[data-job="job-done"]').textContent()).toContain("agreement_correctness 1.000");
      expect(await p.locator('tr[data-job="job-live"]').textContent()).toContain("0 / 3 (0.0%)");
      expect(await p.locator("#jobs-note").textContent()).toBe(" 4 jobs, 1 running");
      expect(await p.locator("#summary").textContent()).toBe("node dash-a · 1 member · 1 job running");
      await w.shot("inproc-cluster");

      await p.click('tr[data-job="job-done"] a');
      await p.waitForSelector('body[data-view="job"]');
      await w.until(`Number(document.getElementById("chart").dataset.points) > 0`);
      expect(await p.locator("#head-body h2").textContent()).toBe("job-done coral-dummy");
      expect(await p.locator('#latest-body tr[data-task]').count()).toBe(10);
      expect(await p.locator("#failures-body").textContent()).toBe("no failed rows");
      expect(await p.locator('#roles-body tr[data-role="coral-dummy.teacher"]').count()).toBe(1);
      expect(await p.locator("#cancel").count()).toBe(0);
      await w.until(`document.querySelector('#events-body tr[data-kind="job.done"]')`);
      expect(await p.locator("#events-body tr[data-kind]").count()).toBe(2);
      await w.shot("inproc-job");

      await p.locator("#latest-body tr[data-task] a").first().click();
      await p.waitForSelector('body[data-view="task"]');
      await p.waitForSelector(".turn");
      const speakers = await p.locator(".turn").evaluateAll((els) => els.map((e) => e.getAttribute("data-speaker")));
      expect(speakers.slice(0, 4)).toEqual(["teacher", "extractor", "student", "extractor"]);
      expect((await p.locator(".turn [data-text]").first().textContent())?.length).toBeGreaterThan(10);
      expect(await p.locator(".turn [data-meta]").first().textContent()).toContain("on dash-a");
      await w.shot("inproc-task");

      // Failure reasons with counts, each with an example task whose page shows its error.
      await p.goto(`http://127.0.0.1:${open.port}/#/jobs/job-failed`);
      await w.until(`document.querySelector("#failures-body tr[data-reason]")`);
      const reason = p.locator("#failures-body tr[data-reason]");
      expect(await reason.count()).toBe(1);
      expect(await reason.getAttribute("data-reason")).toBe("step limit reached (N steps)");
      expect(await reason.locator("td.num").textContent()).toBe("6");
      await w.shot("inproc-failures");
      await reason.locator("a").click();
      await w.until(`document.getElementById("task-error")`);
      expect(await p.locator("#task-error").textContent()).toBe("step limit reached (3 steps)");
      expect(w.errors).toEqual([]);
    } finally {
      await w.close();
    }
  }, 30_000);

  test("api - dashboard's task page shows tool calls, their results and structured replies", async () => {
    const w = await openPage();
    try {
      const p = w.page;
      await p.goto(`http://127.0.0.1:${open.port}/#/jobs/job-tools/tasks/t1`);
      await w.until(`document.querySelectorAll(".turn").length === 3`);
      const call = p.locator('.turn[data-turn="0"] [data-call="call_1"]');
      expect(await call.locator(".name").textContent()).toBe("lookup");
      expect(await call.locator("pre").textContent()).toBe('{\n  "q": "weather"\n}');
      const result = p.locator('.turn[data-turn="1"]');
      expect(await result.getAttribute("data-speaker")).toBe("tool");
      expect(await result.textContent()).toContain("result of lookup call_1");
      expect(await result.textContent()).toContain("sunny, 21 C");
      const reply = p.locator('.turn[data-turn="2"]');
      expect(await reply.textContent()).toContain("structured reply");
      expect(await reply.locator("pre").textContent()).toBe('{\n  "answer": "sunny",\n  "confidence": 0.9\n}');
      await w.shot("inproc-task-tools");
      expect(w.errors).toEqual([]);
    } finally {
      await w.close();
    }
  }, 30_000);

  test("api - dashboard asks for the token once, keeps it for the session, downloads and cancels a job", async () => {
    const w = await openPage();
    try {
      const p = w.page;
      const dialogs: { type: string; message: string }[] = [];
      let answer = "wrong";
      p.on("dialog", (d) => {
        dialogs.push({ type: d.type(), message: d.message() });
        void (d.type() === "prompt" ? d.accept(answer) : d.accept());
      });
      const url = `http://127.0.0.1:${guarded.port}/`;
      // A wrong token: one prompt, then a button instead of a prompt at every poll.
      await p.goto(url);
      await w.until(`document.getElementById("error").textContent`);
      expect(await p.locator("#set-token").isVisible()).toBe(true);
      await Bun.sleep(3300);
      expect(dialogs.map((d) => d.type)).toEqual(["prompt"]);

      answer = TOKEN;
      await p.click("#set-token");
      await p.waitForSelector('body[data-loaded="true"]');
      expect(dialogs.map((d) => d.type)).toEqual(["prompt", "prompt"]);
      expect(await p.evaluate(`sessionStorage.getItem("matrixd.token")`)).toBe(TOKEN);

      // The dataset through a short-lived link: the token is in no URL.
      const link = await p.evaluate<string>(`window.matrixd.downloadUrl("job-done")`);
      expect(link).toMatch(/^\/v1\/download\/job-done\?exp=\d+&sig=[0-9a-f]{64}$/);
      const body = await p.evaluate<string>(`fetch(${JSON.stringify(link)}).then((r) => r.text())`);
      expect(body.trim().split("\n")).toHaveLength(20);

      await p.click('[data-cancel="job-live"]');
      await waitFor("the job to be cancelled", async () => (await node.job("job-live"))?.state === "cancelled", 5000);
      expect(dialogs.at(-1)).toEqual({ type: "confirm", message: "Cancel job job-live?" });
      await w.until(`document.querySelector('[data-job="job-live"] .pill').textContent === "cancelled"`);

      // A reload keeps the token: no new prompt.
      await p.reload();
      await p.waitForSelector('body[data-loaded="true"]');
      expect(dialogs.filter((d) => d.type === "prompt")).toHaveLength(2);
      expect(await p.locator("#jobs-note").textContent()).toBe(" 4 jobs, 0 running");
      expect(pageErrors(w)).toEqual([]);
    } finally {
      await w.close();
    }
  }, 30_000);
});
