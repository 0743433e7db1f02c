import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { Objm } from "@nats-io/obj";
import { silentLogger } from "../src/log.ts";
import { type Claim, digestOf, putBack, takeLarge, textOf } from "../src/protocol/claim.ts";
import { encode } from "../src/protocol/codec.ts";
import { type NatsCluster, openNatsCluster, partBucket, PartMissingError } from "../src/store/index.ts";
import { type NatsServer, natsServerMissing, startNatsServer } from "./support/nats-server.ts";

const big = (c: string, n: number) => c.repeat(n);

describe("claim checks - the codec", () => {
  test("claim - round trip: large texts anywhere are taken out, the rest left, and put back they give the value again", () => {
    const value = {
      seed: { doc: big("d", 5000), title: "short" },
      history: [
        { role: "a", text: big("é", 3000), reasoning: "brief" },
        { role: "b", text: "small", toolCalls: [{ id: "1", name: "f", arguments: big("{", 4096) }] },
      ],
      vars: { nested: { list: ["x", big("ü", 2048)] }, n: 3 },
    };
    const before = structuredClone(value);
    const { value: small, taken } = takeLarge(value, 4096, (sha) => `t/${sha}`);
    expect(taken.map((t) => t.claim.path.join("."))).toEqual(["seed.doc", "history.0.text", "history.1.toolCalls.0.arguments", "vars.nested.list.1"]);
    // é and ü are 2 bytes each in UTF-8: 3000 é is 6000 bytes (taken), 2048 ü is 4096 (taken at exactly the threshold)
    expect(taken[1]!.claim.size).toBe(6000);
    expect(small.history[0]!.text).toBe("");
    expect(small.seed.title).toBe("short");
    expect(small.history[1]!.text).toBe("small");
    // the value given is left as it was; what was not on a path is shared, not copied
    expect(value).toEqual(before);
    expect(small.history[1]).not.toBe(value.history[1]);
    expect(small.vars.n).toBe(3);
    expect(encode(small).length).toBeLessThan(1000);
    const back = structuredClone(small);
    putBack(back, taken, "test value");
    expect(back).toEqual(before);
  });

  test("claim - a value with no text that large is given back as it is, nothing taken", () => {
    const value = { a: "x".repeat(100), b: [1, 2, "y"] };
    const out = takeLarge(value, 4096, (sha) => sha);
    expect(out.taken).toEqual([]);
    expect(out.value).toBe(value);
  });

  test("claim - bytes that do not match their reference are a clear error naming the object", () => {
    const { value, taken } = takeLarge({ t: big("a", 5000) }, 1024, (sha) => `task/${sha}`);
    const part = taken[0]!;
    const name = part.claim.name;
    const bytes = new TextEncoder().encode(part.text);
    expect(textOf(part.claim, bytes, "task t1")).toBe(part.text);
    const tampered = new Uint8Array(bytes);
    tampered[10] = "b".charCodeAt(0);
    expect(() => textOf(part.claim, tampered, "task t1")).toThrow(`object "${name}" in task t1 does not match its reference: sha256 ${digestOf(tampered)}, expected ${part.claim.sha256}`);
    expect(() => textOf(part.claim, bytes.slice(1), "task t1")).toThrow(`object "${name}" in task t1 has 4999 bytes, its reference says 5000`);
    // a claim whose path does not lead to an emptied text is refused, not written somewhere else
    const wrong: Claim = { ...part.claim, path: ["u"] };
    expect(() => putBack(structuredClone(value), [{ claim: wrong, text: part.text }], "task t1")).toThrow(`points at u, which holds no emptied text`);
  });
});

const missing = natsServerMissing();
if (missing) console.warn(`claim-codec: ${missing}; the object store tests are skipped`);

describe.skipIf(missing !== undefined)("claim checks - the object store", () => {
  let srv: NatsServer;
  let nats: NatsCluster;
  beforeAll(async () => {
    srv = await startNatsServer();
    nats = await openNatsCluster({ servers: [srv.url], name: "t", log: silentLogger, timings: { ackWaitMs: 3000, memberTtlMs: 3000 }, offloadBytes: 1024 });
  });
  afterAll(async () => {
    await nats?.close();
    await srv?.close();
  });

  const encodeJson = (v: unknown, parts: Claim[] | undefined) => new TextEncoder().encode(JSON.stringify({ v, parts }));

  test("parts - a large value is stored in parts and read back whole; a small one makes no object", async () => {
    const parts = nats.parts;
    const small = await parts.encodeFitting("hop", "j1", "t1", { a: "short" }, encodeJson, 1 << 20);
    expect(small.claims).toEqual([]);
    expect((await parts.objects("j1")).hop).toEqual([]);
    const value = { history: [{ text: big("h", 300_000) }, { text: big("i", 2000) }] };
    const fit = await parts.encodeFitting("hop", "j1", "t1", value, encodeJson, 1 << 20);
    expect(fit.claims.length).toBe(2);
    expect(fit.data.length).toBeLessThan(1000);
    expect((await parts.objects("j1")).hop.sort()).toEqual(fit.claims.map((c) => c.name).sort());
    const sent = JSON.parse(new TextDecoder().decode(fit.data)).v;
    // another node (no cache) reads it back
    const other = await openNatsCluster({ servers: [srv.url], name: "t2", log: silentLogger, timings: { ackWaitMs: 3000, memberTtlMs: 3000 }, offloadBytes: 1024 });
    try {
      await other.parts.restore("hop", "j1", "t1", sent, fit.claims, "task t1");
      expect(sent).toEqual(value);
      expect(other.parts.stats.fetched).toBe(2);
      // the row is stored: the task's objects go
      await other.parts.finished("j1", "t1");
      expect((await parts.objects("j1")).hop).toEqual([]);
    } finally {
      await other.close();
    }
  });

  test("parts - an object changed in the store is a clear error naming it; a missing one too", async () => {
    const parts = nats.parts;
    const value = { t: big("z", 5000) };
    const fit = await parts.encodeFitting("hop", "j2", "t1", value, encodeJson, 1 << 20);
    const claim = fit.claims[0]!;
    const os = await new Objm(nats.link.js).open(partBucket("hop", "j2"));
    await os.putBlob({ name: claim.name }, new TextEncoder().encode(big("y", 5000)));
    const reader = await openNatsCluster({ servers: [srv.url], name: "t3", log: silentLogger, timings: { ackWaitMs: 3000, memberTtlMs: 3000 }, offloadBytes: 1024 });
    try {
      const sent = () => JSON.parse(new TextDecoder().decode(fit.data)).v;
      const err = await reader.parts.restore("hop", "j2", "t1", sent(), fit.claims, "task t1 of job j2").catch((e: unknown) => e);
      expect(String(err)).toContain(`object "${claim.name}" in task t1 of job j2 does not match its reference`);
      await os.delete(claim.name);
      const gone = await reader.parts.restore("hop", "j2", "t1", sent(), fit.claims, "task t1 of job j2").catch((e: unknown) => e);
      expect(gone).toBeInstanceOf(PartMissingError);
      expect(String(gone)).toContain(`object "${claim.name}" of bucket mx-hop-j2 is missing`);
      // the job's end removes its bucket
      await reader.parts.jobEnded("j2");
      expect(await nats.link.jsm.streams.info("OBJ_mx-hop-j2").catch(() => null)).toBeNull();
    } finally {
      await reader.close();
    }
  });
});
