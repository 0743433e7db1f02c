import { describe, expect, test } from "bun:test";
import { LatencyHistogram, parseAckSubject } from "../src/bus/nats/index.ts";
import { hopMsgId, Subjects, taskToken } from "../src/store/index.ts";
import { jobToken } from "../src/store/names.ts";
import { JoinConfigSchema, roleSelection } from "../src/cluster/config.ts";
import { PeerEndpoints } from "../src/cluster/peers.ts";
import { FigureCache } from "../src/cluster/status.ts";
import type { Member } from "../src/cluster/types.ts";
import { formatIssues } from "../src/util/issues.ts";
import type { LlmEndpointInput } from "../src/llm/config.ts";
import type { ManagedLlmClient } from "../src/llm/types.ts";
import { silentLogger } from "../src/log.ts";
import { matrixdBin, runProcess } from "./support/matrixd.ts";
import { tempDir } from "./support/files.ts";

describe("cluster parts", () => {
  test("cluster - a job's figures are read once per interval however many ask; a failed read is not kept", async () => {
    const cache = new FigureCache<number>(500);
    let reads = 0;
    const read = async () => ++reads;
    const [x, y] = await Promise.all([cache.get("j", read, 1000), cache.get("j", read, 1100)]);
    expect([x, y, reads]).toEqual([1, 1, 1]);
    expect(await cache.get("j", read, 1600)).toBe(2);
    expect(await cache.get("k", read, 1600)).toBe(3);
    await expect(cache.get("bad", () => Promise.reject(new Error("nats down")), 2000)).rejects.toThrow("nats down");
    expect(await cache.get("bad", read, 2001)).toBe(4);
  });

  test("cluster - ack subjects of both server formats give delivery count and stream sequence", () => {
    expect(parseAckSubject("$JS.ACK.MX_TASKS.t_coral_teacher.3.1042.977.1795638929864001424.12")).toEqual({ count: 3, streamSeq: 1042 });
    expect(parseAckSubject("$JS.ACK.dom.ACCHASH.MX_SEEDS.s_job.1.7.7.1795638929864001424.0.rand")).toEqual({ count: 1, streamSeq: 7 });
    expect(parseAckSubject("_INBOX.abc.1")).toBeUndefined();
    expect(parseAckSubject("$JS.ACK.x.y.z")).toBeUndefined();
  });

  test("cluster - names: any task id and job id make valid subject tokens; hop ids follow progress", () => {
    for (const id of ["q1", "a.b c*>", "ünïcødé", "x".repeat(500)]) {
      expect(taskToken(id)).toMatch(/^[A-Za-z0-9_-]{22}$/);
      expect(Subjects.row("job-1", id).split(".").length).toBe(4);
    }
    expect(taskToken("q1")).toBe(taskToken("q1"));
    expect(taskToken("q1")).not.toBe(taskToken("q2"));
    expect(jobToken("job-abc_1")).toBe("job-abc_1");
    expect(jobToken("my.job")).toMatch(/^h-[A-Za-z0-9_-]{22}$/);
    expect(Subjects.seed("my.job").split(".").length).toBe(3);
    expect(hopMsgId("j", "t", 3, {})).toBe("j:t:3:0");
    expect(hopMsgId("j", "t", 3, { a: 1, b: 2 })).toBe("j:t:3:3");
  });

  test("cluster - join config: unknown keys are named, roles select by workflow.role, workflow.* or *", () => {
    const bad = JoinConfigSchema.safeParse({ nats: { servers: ["nats://x:4222"], bogus: 1 }, rolez: {} });
    expect(bad.success).toBe(false);
    if (!bad.success) {
      const msg = formatIssues(bad.error);
      expect(msg).toContain('"nats.bogus"');
      expect(msg).toContain('"rolez"');
    }
    const cfg = JoinConfigSchema.parse({});
    expect(cfg.nats.servers).toEqual(["nats://127.0.0.1:4222"]);
    expect(cfg.nats.ackWaitSec).toBe(30);
    expect(cfg.localFirst).toBe(true);
    expect(JoinConfigSchema.safeParse({ http: "nohost" }).success).toBe(false);
    expect(JoinConfigSchema.safeParse({ roles: { "coral teacher": {} } }).success).toBe(false);

    const all = roleSelection(undefined);
    expect(all("coral", "teacher")).toBe("auto");
    const some = roleSelection(JoinConfigSchema.parse({ roles: { "coral.*": {}, "coral.matcher": { slots: 8 }, "tool-use.reward": { slots: 2 } } }).roles);
    expect(some("coral", "teacher")).toBe("auto");
    expect(some("coral", "matcher")).toBe(8);
    expect(some("tool-use", "reward")).toBe(2);
    expect(some("tool-use", "user")).toBeUndefined();
  });

  test("cluster - hop latency histogram: quantiles fall in the right buckets", () => {
    const h = new LatencyHistogram();
    for (let i = 0; i < 98; i++) h.observe(0.7);
    h.observe(150);
    h.observe(3000);
    expect(h.count).toBe(100);
    expect(h.quantile(0.5)).toBeGreaterThan(0.5);
    expect(h.quantile(0.5)).toBeLessThanOrEqual(1);
    expect(h.quantile(0.995)).toBeGreaterThan(2000);
    expect(new LatencyHistogram().quantile(0.5)).toBe(0);
  });

  test("cluster - other members' LLM servers join this node's client, loopback ones never, and leave with the member", () => {
    const sources = new Map<string, LlmEndpointInput[]>();
    const loads: string[] = [];
    const client = {
      endpoints: () => [{ url: "http://10.0.0.1:8000/v1" }],
      setEndpoints: (eps: LlmEndpointInput[], source: string) => void sources.set(source, eps),
      reportLoad: (url: string) => {
        loads.push(url);
        return true;
      },
    } as unknown as ManagedLlmClient;
    const ep = (url: string, healthy = true) => ({
      url,
      models: ["m"],
      inFlight: 0,
      limit: 64,
      healthy,
      requests: 0,
      errors: 0,
      promptTokens: 0,
      completionTokens: 0,
      serverRunning: 3,
      serverWaiting: 1,
    });
    const member = (node: string, urls: ReturnType<typeof ep>[]): Member => ({
      node,
      version: "x",
      roles: {},
      services: { llm: urls },
      startedAt: 0,
      seenAt: 0,
      state: "running",
    });
    const peers = new PeerEndpoints(client, "me", silentLogger);
    peers.update([
      member("me", [ep("http://10.0.0.1:8000/v1")]),
      member("b", [ep("http://10.0.0.2:8000/v1"), ep("http://127.0.0.1:9000/v1"), ep("http://10.0.0.1:8000/v1")]),
      member("c", [ep("http://10.0.0.3:8000/v1", false)]),
    ]);
    expect(sources.get("member:b")).toEqual([{ url: "http://10.0.0.2:8000/v1", maxConcurrency: 64, metrics: false, models: ["m"] }]);
    expect(sources.has("member:c")).toBe(false);
    expect(loads).toEqual(["http://10.0.0.2:8000/v1"]);
    peers.update([member("me", [])]);
    expect(sources.get("member:b")).toEqual([]);
  });

  test("cluster - matrixd join refuses an HTTP API beyond loopback without a token, and unknown config keys, with exit 2", async () => {
    const bin = await matrixdBin();
    const tmp = tempDir();
    try {
      const open = await runProcess([bin, "join", "--nats", "nats://127.0.0.1:1", "--http", "0.0.0.0:0"], { env: { MATRIXD_TOKEN: "" } });
      expect(open.code).toBe(2);
      expect(open.stderr).toContain("listens beyond loopback");
      await Bun.write(tmp.path("c.yaml"), "nats:\n  servers: [nats://127.0.0.1:1]\n  ackWait: 3\n");
      const cfg = await runProcess([bin, "join", "--config", tmp.path("c.yaml")]);
      expect(cfg.code).toBe(2);
      expect(cfg.stderr).toContain('unknown key "nats.ackWait"');
      const help = await runProcess([bin, "join", "--help"]);
      expect(help.code).toBe(0);
      expect(help.stdout).toContain("matrixd join");
    } finally {
      tmp.remove();
    }
  }, 60_000);
});
