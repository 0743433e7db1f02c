import { afterAll, describe, expect, test } from "bun:test";
import { createApp } from "../src/api/app.ts";
import { MAX_SEED_LINE_CHARS } from "../src/api/submission.ts";
import type { JobStatus } from "../src/cluster/types.ts";
import { silentLogger } from "../src/log.ts";
import { coralSeeds } from "./support/seeds.ts";
import { gate, json, ndjson, overriding, testRegistry } from "./support/api.ts";
import { waitFor } from "./support/wait.ts";
import { MemoryNode } from "./support/memory-node.ts";

const g = gate();
const registry = testRegistry(g);
const node = new MemoryNode({ name: "node-s", registry });
const app = createApp(node, { registry, log: silentLogger });

afterAll(async () => {
  g.open();
  await node.close();
});

/** A body that arrives in pieces cut at arbitrary bytes, with no Content-Length. */
function chunked(text: string, size: number): ReadableStream<Uint8Array> {
  const bytes = new TextEncoder().encode(text);
  let at = 0;
  return new ReadableStream({
    pull(ctl) {
      if (at >= bytes.length) return ctl.close();
      ctl.enqueue(bytes.slice(at, at + size));
      at += size;
    },
  });
}

async function postNdjson(a: typeof app, query: string, body: string | ReadableStream<Uint8Array>): Promise<Response> {
  return a.request(`/v1/jobs?${query}`, {
    method: "POST",
    headers: { "content-type": "application/x-ndjson" },
    body,
    duplex: "half",
  } as RequestInit);
}

async function postJson(a: typeof app, body: unknown, query = ""): Promise<Response> {
  return a.request(`/v1/jobs${query}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
}

async function waitDone(id: string) {
  await waitFor(`job ${id} to finish`, async () => (await node.job(id))?.state !== "running", 10_000);
  return node.job(id);
}

async function jobCount() {
  return (await node.jobs()).length;
}

describe("api submit", () => {
  test("api - JSON submit answers 201 {id, total} with total = seeds x trials", async () => {
    const res = await postJson(app, { workflow: "coral-dummy", seeds: coralSeeds(4), config: { trials: 3, seed: 7, options: { maxTurns: 4 } } });
    expect(res.status).toBe(201);
    const body = await json(res);
    expect(body.total).toBe(12);
    expect(Object.keys(body).sort()).toEqual(["id", "total"]);
    const st = await waitDone(body.id);
    expect(st).toMatchObject({ state: "done", ok: 12, failed: 0 });
  });

  test("api - NDJSON submit streams line by line: pieces cut mid-line, CRLF and blank lines", async () => {
    const text = coralSeeds(50).map((s) => JSON.stringify(s)).join("\r\n") + "\n\n\n";
    const res = await postNdjson(app, "workflow=coral-dummy&config=" + encodeURIComponent(JSON.stringify({ job: "nd-1" })), chunked(text, 37));
    expect(res.status).toBe(201);
    expect(await json(res)).toEqual({ id: "nd-1", total: 50 });
    expect((await waitDone("nd-1"))?.ok).toBe(50);
    // a body with no content type is NDJSON too, and its last line needs no newline
    const plain = await app.request("/v1/jobs?workflow=coral-dummy", { method: "POST", body: JSON.stringify(coralSeeds(1)[0]) });
    expect(plain.status).toBe(201);
    expect((await json(plain)).total).toBe(1);
  });

  test("api - 400 names each bad seed line and submits nothing", async () => {
    const good = coralSeeds(6);
    const lines = [
      JSON.stringify(good[0]),
      "{not json",
      JSON.stringify(good[1]),
      JSON.stringify({ id: "q-x", options: ["1", "2"], answer: "A" }),
      JSON.stringify({ ...good[2], answer: "Z" }),
      "",
      JSON.stringify(good[0]),
      "[1,2]",
    ];
    const before = await jobCount();
    const res = await postNdjson(app, "workflow=coral", ndjson(lines));
    expect(res.status).toBe(400);
    const body = await json(res);
    expect(body.error).toStartWith('5 of 7 seed lines are bad for workflow "coral" (nothing was submitted):\n');
    expect(body.details).toHaveLength(5);
    expect(body.details[0]).toStartWith("seed line 2: not JSON");
    expect(body.details[1]).toStartWith('seed line 4: "question": ');
    expect(body.details[2]).toBe('seed line 5: "answer": must be one option letter, A to J');
    expect(body.details[3]).toBe('seed line 7: duplicate seed id "q0" (first on line 1)');
    expect(body.details[4]).toBe("seed line 8: must be a JSON object");
    for (const d of body.details) expect(body.error).toContain(d);
    expect(await jobCount()).toBe(before);

    // the same check for seeds given in a JSON body, numbered from 1
    const js = await postJson(app, { workflow: "coral", seeds: [good[0], { question: "?" }, "not an object"] });
    expect(js.status).toBe(400);
    const jb = await json(js);
    expect(jb.details[0]).toStartWith('seed line 2: "options": ');
    expect(jb.details[1]).toStartWith("seed line 3: not JSON");
    expect(await jobCount()).toBe(before);
  });

  test("api - past 50 bad lines the 400 says how many more", async () => {
    const lines = Array.from({ length: 120 }, (_, i) => JSON.stringify({ id: `b${i}`, question: "" }));
    const res = await postNdjson(app, "workflow=coral-dummy", ndjson(lines));
    expect(res.status).toBe(400);
    const body = await json(res);
    expect(body.details).toHaveLength(51);
    expect(body.details[49]).toStartWith("seed line 50: ");
    expect(body.details[50]).toBe("and 70 more");
    expect(body.error).toStartWith("120 of 120 seed lines are bad");
  });

  test("api - 400 for a missing or unknown workflow, bad settings, bad JSON and an empty job", async () => {
    const seeds = ndjson(coralSeeds(2));
    const cases: [Promise<Response>, string][] = [
      [postNdjson(app, "", seeds), "the workflow is required"],
      [postNdjson(app, "workflow=nope", seeds), 'unknown workflow "nope" (known: coral, coral-dummy, gated'],
      [postNdjson(app, "workflow=coral-dummy&config=%7Bnope", seeds), "?config= is not JSON"],
      [postNdjson(app, `workflow=coral-dummy&config=${encodeURIComponent('{"trials":0}')}`, seeds), 'config: "trials": '],
      [postNdjson(app, `workflow=coral-dummy&config=${encodeURIComponent('{"llm":{}}')}`, seeds), 'config: unknown key "llm"'],
      [postNdjson(app, `workflow=coral-dummy&config=${encodeURIComponent('{"options":{"maxTurns":1}}')}`, seeds), 'config: options of workflow "coral-dummy": "maxTurns": '],
      [postNdjson(app, `workflow=coral-dummy&config=${encodeURIComponent('{"workflow":"coral"}')}`, seeds), 'config: "workflow" is "coral" but the job is for "coral-dummy"'],
      [postNdjson(app, "workflow=coral-dummy", "\n\n"), "the job has no seeds"],
      [postJson(app, '{"workflow": "coral", "seeds": ['), "the body is not JSON"],
      [postJson(app, { workflow: "coral", seeds: "x" }), 'body: "seeds": '],
      [postJson(app, { workflow: "coral", seeds: [], extra: 1 }), 'body: unknown key "extra"'],
      [postJson(app, { seeds: coralSeeds(1) }), "the workflow is required"],
    ];
    const before = await jobCount();
    for (const [p, msg] of cases) {
      const res = await p;
      const body = await json(res);
      expect(`${res.status} ${body.error}`).toContain(`400 ${msg}`);
    }
    expect(await jobCount()).toBe(before);
    // ?workflow= also serves a JSON body that does not name one
    const res = await postJson(app, { seeds: coralSeeds(1) }, "?workflow=coral-dummy");
    expect(res.status).toBe(201);
  });

  test("api - 413 past the body limit: declared length, streamed body and JSON", async () => {
    const small = createApp(node, { registry, maxBodyBytes: 1000, log: silentLogger });
    const big = ndjson(coralSeeds(40));
    expect(big.length).toBeGreaterThan(1000);
    const before = await jobCount();

    const declared = await postNdjson(small, "workflow=coral-dummy", big);
    expect(declared.status).toBe(413);
    expect(await json(declared)).toEqual({ error: "request body is larger than the limit of 1000 bytes" });

    const streamed = await postNdjson(small, "workflow=coral-dummy", chunked(big, 100));
    expect(streamed.status).toBe(413);
    expect((await json(streamed)).error).toContain("larger than the limit of 1000 bytes");

    const whole = await small.request("/v1/jobs", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: chunked(JSON.stringify({ workflow: "coral-dummy", seeds: coralSeeds(40) }), 256),
      duplex: "half",
    } as RequestInit);
    expect(whole.status).toBe(413);

    const fits = await postNdjson(small, "workflow=coral-dummy", chunked(ndjson(coralSeeds(3)), 100));
    expect(fits.status).toBe(201);
    expect(await jobCount()).toBe(before + 1);
  });

  test("api - 413 past the seed limit, NDJSON and JSON", async () => {
    const few = createApp(node, { registry, maxSeeds: 10, log: silentLogger });
    const before = await jobCount();
    const nd = await postNdjson(few, "workflow=coral-dummy", chunked(ndjson(coralSeeds(11)), 64));
    expect(nd.status).toBe(413);
    expect(await json(nd)).toEqual({ error: "too many seeds: a job may have at most 10" });
    const js = await postJson(few, { workflow: "coral-dummy", seeds: coralSeeds(11) });
    expect(js.status).toBe(413);
    expect((await json(js)).error).toBe("too many seeds: a job may have at most 10, got 11");
    expect(await jobCount()).toBe(before);
    const ten = await postNdjson(few, "workflow=coral-dummy", ndjson([...coralSeeds(10), ""]));
    expect(ten.status).toBe(201);
  });

  test("api - 413 for a streamed line longer than a seed may be, and a JSON body past its own limit", async () => {
    const before = await jobCount();
    const long = `${JSON.stringify(coralSeeds(1)[0])}\n{"id": "big", "pad": "${"x".repeat(MAX_SEED_LINE_CHARS)}"}\n`;
    const res = await postNdjson(app, "workflow=coral-dummy", chunked(long, 65536));
    expect(res.status).toBe(413);
    expect(await json(res)).toEqual({ error: `seed line 2 is longer than ${MAX_SEED_LINE_CHARS} characters` });
    const small = createApp(node, { registry, maxJsonBytes: 2000, log: silentLogger });
    const js = await postJson(small, { workflow: "coral-dummy", seeds: coralSeeds(100) });
    expect(js.status).toBe(413);
    // the same seeds as NDJSON stream past the JSON limit
    expect((await postNdjson(small, "workflow=coral-dummy", ndjson(coralSeeds(100)))).status).toBe(201);
    expect(await jobCount()).toBe(before + 1);
  });

  test("api - results stream as NDJSON, one row per task", async () => {
    const res = await postJson(app, { workflow: "coral-dummy", seeds: coralSeeds(300, "r"), config: { options: { textBytes: 16, maxTurns: 4 } } });
    const { id } = await json(res);
    await waitDone(id);
    const out = await app.request(`/v1/jobs/${id}/results`);
    expect(out.status).toBe(200);
    expect(out.headers.get("content-type")).toBe("application/x-ndjson");
    let chunks = 0;
    let text = "";
    const dec = new TextDecoder();
    for await (const c of out.body as ReadableStream<Uint8Array>) {
      chunks++;
      text += dec.decode(c, { stream: true });
    }
    expect(text.endsWith("\n")).toBe(true);
    const rows = text.trimEnd().split("\n").map((l) => JSON.parse(l));
    expect(rows).toHaveLength(300);
    expect(new Set(rows.map((r) => r.id)).size).toBe(300);
    expect(rows.every((r) => r.job === id && r.status === "ok")).toBe(true);
    // rows go out in chunks, not one write per row
    expect(chunks).toBeGreaterThan(1);
    expect(chunks).toBeLessThan(Math.ceil(text.length / 32768));
  });

  test("api - results of a running job follow it until it ends", async () => {
    const res = await postJson(app, { workflow: "gated", seeds: [{ id: "w1", n: 1 }, { id: "w2", n: 2 }] });
    const { id } = await json(res);
    const out = await app.request(`/v1/jobs/${id}/results`);
    expect(out.status).toBe(200);
    const text = out.text();
    await Bun.sleep(20);
    g.open();
    const rows = (await text).trimEnd().split("\n").map((l) => JSON.parse(l));
    expect(rows.map((r) => r.output.n).sort()).toEqual([1, 2]);
  });

  test("api - results keep pace with a slow reader and stop the source when the client leaves", async () => {
    let produced = 0;
    let closed = false;
    const endless = overriding(node, {
      job: async (id: string) => ({ ...((await node.jobs())[0] as JobStatus), id }),
      results: async function* () {
        try {
          for (;;) {
            produced++;
            yield JSON.stringify({ id: `row-${produced}`, pad: "x".repeat(1000) });
          }
        } finally {
          closed = true;
        }
      },
    });
    const a = createApp(endless, { registry, log: silentLogger });
    const res = await a.request("/v1/jobs/any/results");
    const reader = (res.body as ReadableStream<Uint8Array>).getReader();
    const first = await reader.read();
    expect(first.done).toBe(false);
    await Bun.sleep(50);
    // a few 64 KiB chunks ahead of the reader at most, not the endless source
    expect(produced).toBeLessThan(400);
    await reader.cancel();
    await waitFor("the source to be closed", () => closed, 2000);
  });
});
