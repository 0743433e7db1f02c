import { afterAll, describe, expect, test } from "bun:test";
import { createApp } from "../src/api/app.ts";
import { silentLogger } from "../src/log.ts";
import { parseWorkflowText } from "../src/workflow/index.ts";
import { json, ndjson, testRegistry } from "./support/api.ts";
import { BROKEN, COUNTER_YAML, problemsOf } from "./support/workflow-defs.ts";
import { MemoryNode } from "./support/memory-node.ts";
import { waitFor } from "./support/wait.ts";

/**
 * A job that carries its workflow, through the HTTP API over the in-process
 * node: the body forms (JSON `definition`, an NDJSON first line), the 400
 * naming each problem of a definition, the bearer token.
 */

const TOKEN = "carried-api-token";
const auth = { Authorization: `Bearer ${TOKEN}` };

const counter = parseWorkflowText(COUNTER_YAML, "counter.yaml");
const registry = testRegistry();
const node = new MemoryNode({ name: "carried-mem", registry });
const app = createApp(node, { registry, token: TOKEN, log: silentLogger });

const postJson = (body: unknown, headers: Record<string, string> = auth) =>
  app.request("/v1/jobs", { method: "POST", headers: { ...headers, "content-type": "application/json" }, body: JSON.stringify(body) });
const postNdjson = (query: string, body: string, headers: Record<string, string> = auth) =>
  app.request(`/v1/jobs${query ? `?${query}` : ""}`, { method: "POST", headers: { ...headers, "content-type": "application/x-ndjson" }, body });

// biome-ignore lint/suspicious/noExplicitAny: rows read back
async function rowsOf(id: string): Promise<any[]> {
  await waitFor(`job ${id} to end`, async () => (await node.job(id))?.state === "done", 20_000);
  const res = await app.request(`/v1/jobs/${id}/results`, { headers: auth });
  return (await res.text())
    .split("\n")
    .filter((l) => l.length > 0)
    .map((l) => JSON.parse(l));
}

afterAll(async () => {
  await node.close();
});

describe("carried workflow over the HTTP API", () => {
  test("carried - a JSON body {definition, seeds, config} runs the workflow the node never had; rows carry its hash", async () => {
    const seeds = [{ id: "a", n: 3 }, { id: "b", n: 1 }, { n: 5 }];
    const res = await postJson({ definition: counter.definition, seeds, config: { options: { label: "x" } } });
    expect(res.status).toBe(201);
    const { id, total } = await json(res);
    expect(total).toBe(3);
    const rows = await rowsOf(id);
    expect(rows).toHaveLength(3);
    const name = `counter@${counter.hash.slice(0, 12)}`;
    expect(rows.every((r) => r.status === "ok" && r.workflow === name && r.provenance.workflow_hash === counter.hash)).toBe(true);
    expect(rows.find((r) => r.id === "a").output).toEqual({ n: 3, i: 3, label: "x" });
    const st = await json(await app.request(`/v1/jobs/${id}`, { headers: auth }));
    expect(st).toMatchObject({ workflow: name, state: "done", ok: 3 });
    expect(st.metrics).toEqual({ steps: 3 });
  });

  test("carried - an NDJSON body starts with the definition line; seed lines count from 1 after it", async () => {
    const head = JSON.stringify({ definition: counter.definition, config: { seed: 4 } });
    const good = await postNdjson("", ndjson([head, { id: "x", n: 2 }, { id: "y", n: 4 }]));
    expect(good.status).toBe(201);
    const { id, total } = await json(good);
    expect(total).toBe(2);
    const rows = await rowsOf(id);
    expect(rows.map((r) => r.output.i).sort()).toEqual([2, 4]);
    expect(rows.every((r) => r.provenance.workflow_hash === counter.hash)).toBe(true);

    // a bad seed is named by its line among the seeds, as in the seed file
    const before = (await node.jobs()).length;
    const bad = await postNdjson("", ndjson([head, { id: "x", n: 2 }, { id: "y", n: -1 }, "{oops"]));
    expect(bad.status).toBe(400);
    const body = await json(bad);
    expect(body.details).toHaveLength(2);
    expect(body.details[0]).toStartWith('seed line 2: "n": ');
    expect(body.details[1]).toStartWith("seed line 3: not JSON");
    expect((await node.jobs()).length).toBe(before);
  });

  test("carried - 400 names each problem of a definition, in a JSON body or a definition line; nothing is submitted", async () => {
    const problems = problemsOf(BROKEN);
    expect(problems.length).toBe(3);
    const before = (await node.jobs()).length;
    for (const res of [
      await postJson({ definition: BROKEN, seeds: [{ id: "a" }] }),
      await postNdjson("", ndjson([{ definition: BROKEN }, { id: "a" }])),
    ]) {
      expect(res.status).toBe(400);
      const body = await json(res);
      expect(body.details).toEqual(problems);
      for (const p of problems) expect(body.error).toContain(p);
    }
    // problems of the schema are named by their path too
    const shape = await json(await postJson({ definition: { name: "Bad Name", roles: {} }, seeds: [{}] }));
    expect(shape.details.some((d: string) => d.startsWith("name: "))).toBe(true);
    expect((await node.jobs()).length).toBe(before);
  });

  test("carried - 400 for a body that mixes the forms or misshapes the definition line", async () => {
    const cases: [Response | Promise<Response>, string][] = [
      [postJson({ workflow: "counter", definition: counter.definition, seeds: [{ n: 1 }] }), 'give "workflow" (a workflow of the nodes) or "definition"'],
      [postNdjson("", ndjson([{ n: 1 }])), "the workflow is required"],
      [postNdjson("", ndjson(["{nope", { n: 1 }])), "line 1 is not JSON"],
      [postNdjson("", ndjson([{ definition: counter.definition, extra: 1 }, { n: 1 }])), 'line 1: unknown key "extra"'],
      [postNdjson(`config=${encodeURIComponent("{}")}`, ndjson([{ definition: counter.definition, config: {} }, { n: 1 }])), "give the job's settings in the definition line's"],
      [postNdjson("", ndjson([{ definition: counter.definition, config: { options: { nope: 1 } } }, { n: 1 }])), "config: options of workflow"],
      [postNdjson("", ndjson([{ definition: counter.definition }])), "the job has no seeds"],
    ];
    for (const [p, msg] of cases) {
      const res = await p;
      expect(`${res.status} ${(await json(res)).error}`).toContain(`400 ${msg}`);
    }
  });

  test("carried - a definition posted without the token, or with a wrong one, is refused like any request", async () => {
    const before = (await node.jobs()).length;
    const none = await postJson({ definition: counter.definition, seeds: [{ n: 1 }] }, {});
    expect(none.status).toBe(401);
    expect(none.headers.get("www-authenticate")).toContain("Bearer");
    const wrong = await postNdjson("", ndjson([{ definition: counter.definition }, { n: 1 }]), { Authorization: "Bearer nope-nope" });
    expect(wrong.status).toBe(401);
    // a broken one too: the token is checked before anything of the body
    expect((await postJson({ definition: BROKEN, seeds: [{}] }, {})).status).toBe(401);
    expect((await node.jobs()).length).toBe(before);
  });
});
