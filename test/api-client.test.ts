import { afterEach, describe, expect, test } from "bun:test";
import { ApiClient, ApiError, serverUrl } from "../src/api/client.ts";
import { UsageError } from "../src/errors.ts";
import type { JobStatus } from "../src/protocol/job.ts";
import type { Member } from "../src/protocol/member.ts";

/**
 * The CLI's API client over real HTTP: the server URL as users type it,
 * asking a node again while NATS cannot answer it (503), and failing over
 * to the members it learned when its node stops answering.
 */

const servers: ReturnType<typeof Bun.serve>[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.stop(true)));
});

function serve(fetch: (req: Request) => Response | Promise<Response>): string {
  const s = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch });
  servers.push(s);
  return `http://127.0.0.1:${s.port}`;
}

function status(id: string, node: string): JobStatus {
  return { id, workflow: "coral", state: "running", total: 10, queued: 0, running: 10, ok: 0, failed: 0, promptTokens: 0, completionTokens: 0, rate: 0, createdAt: 1, updatedAt: 1, acceptedBy: node };
}

function member(node: string, http: string): Member {
  return { node, version: "0", http, roles: {}, services: { llm: [] }, startedAt: 1, seenAt: 1, state: "running" };
}

describe("api client", () => {
  test("api client - the server as users type it: the scheme assumed, anything else that is not an http(s) URL a UsageError naming the flag", () => {
    expect(serverUrl("127.0.0.1:7420")).toBe("http://127.0.0.1:7420");
    expect(serverUrl("https://node.example:443/")).toBe("https://node.example:443");
    expect(serverUrl("localhost:7420//")).toBe("http://localhost:7420");
    expect(() => serverUrl("ftp://x")).toThrow(new UsageError("--server ftp://x: only http:// and https:// are served (e.g. http://127.0.0.1:7420)"));
    expect(() => serverUrl("http://")).toThrow(UsageError);
    expect(() => serverUrl("a b:7")).toThrow(/--server a b:7 is not a URL/);
  });

  test("api client - a 503 is asked again; a node that stops answering is left for a member learned from /v1/cluster", async () => {
    let busy = 2;
    const b = serve((req) => {
      const path = new URL(req.url).pathname;
      if (path === "/healthz") return Response.json({ status: "ok" });
      if (busy-- > 0) return Response.json({ error: "NATS cannot answer" }, { status: 503 });
      return Response.json(status("j1", "b"));
    });
    const first = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      fetch: (req) =>
        new URL(req.url).pathname === "/v1/cluster"
          ? Response.json({ node: "a", members: [member("a", "http://127.0.0.1:1"), member("b", b), member("c", "http://0.0.0.0:2")] })
          : Response.json(status("j1", "a")),
    });
    const a = `http://127.0.0.1:${first.port}`;
    const api = new ApiClient({ server: a });
    await api.learnMembers();
    expect((await api.job("j1")).acceptedBy).toBe("a");
    await first.stop(true);
    const switches: string[] = [];
    const st = await api.failover(() => api.job("j1"), { onSwitch: (from, to) => switches.push(`${from} -> ${to}`) });
    expect(st.acceptedBy).toBe("b");
    expect(switches).toEqual([`${a} -> ${b}`]);
    expect(api.server).toBe(b);
    expect(busy).toBe(-1);
    // an answer that is an error is final: no failover
    const c = new ApiClient({ server: serve(() => Response.json({ error: 'unknown job "x"' }, { status: 404 })) });
    const err = await c.failover(() => c.job("x")).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApiError);
    expect((err as ApiError).status).toBe(404);
  });

  test("api client - a lone node that stops answering: the error says so at once", async () => {
    const api = new ApiClient({ server: "127.0.0.1:1" });
    await api.learnMembers();
    const t = Date.now();
    const err = await api.failover(() => api.job("j")).catch((e: unknown) => e);
    expect((err as ApiError).status).toBe(0);
    expect((err as ApiError).message).toMatch(/^cannot reach http:\/\/127\.0\.0\.1:1/);
    expect(Date.now() - t).toBeLessThan(2000);
  });
});
