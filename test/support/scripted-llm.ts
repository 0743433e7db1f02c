/**
 * Scripted OpenAI-compatible servers for the LLM client tests: real HTTP on
 * 127.0.0.1, answers decided per request by the test.
 */

/** What a test decides for the n-th chat request (n from 1). */
export type Reply = (n: number, body: Record<string, unknown>, req: Request) => Response | Promise<Response>;

export interface ScriptedServer {
  /** base URL with /v1 */
  url: string;
  /** chat requests received */
  hits: number;
  /** chat requests being answered now, and the most ever at once */
  active: number;
  maxActive: number;
  /** performance.now() at each chat request's arrival */
  arrivals: number[];
  bodies: Record<string, unknown>[];
  headers: Headers[];
  stop(): Promise<void>;
}

/**
 * Start a server answering `POST /v1/chat/completions` with `reply`, and
 * `GET /v1/models` with `models` (404 when not given).
 */
export function startServer(
  reply: Reply,
  opts: { models?: string[]; /** other GET routes, by path (e.g. `/props`, `/metrics`) */ routes?: Record<string, () => Response> } = {},
): ScriptedServer {
  const state: ScriptedServer = {
    url: "",
    hits: 0,
    active: 0,
    maxActive: 0,
    arrivals: [],
    bodies: [],
    headers: [],
    stop: async () => {
      await server.stop(true);
    },
  };
  const server = Bun.serve({
    port: 0,
    hostname: "127.0.0.1",
    idleTimeout: 30,
    async fetch(req) {
      const path = new URL(req.url).pathname;
      const route = req.method === "GET" ? opts.routes?.[path] : undefined;
      if (route) return route();
      if (path === "/v1/models" && req.method === "GET") {
        if (!opts.models) return new Response("not found", { status: 404 });
        return Response.json({ object: "list", data: opts.models.map((id) => ({ id, object: "model" })) });
      }
      if (path !== "/v1/chat/completions" || req.method !== "POST") return new Response("not found", { status: 404 });
      const n = ++state.hits;
      state.arrivals.push(performance.now());
      state.active++;
      state.maxActive = Math.max(state.maxActive, state.active);
      try {
        const json: unknown = await req.json();
        const body: Record<string, unknown> = typeof json === "object" && json !== null ? { ...json } : {};
        state.bodies.push(body);
        state.headers.push(req.headers);
        return await reply(n, body, req);
      } finally {
        state.active--;
      }
    },
  });
  state.url = `http://127.0.0.1:${server.port}/v1`;
  return state;
}

/** A chat completion answer. */
export function completion(
  text: string,
  opts: { prompt?: number; completion?: number; model?: string; toolCalls?: unknown[]; finish?: string } = {},
): Response {
  const message: Record<string, unknown> = { role: "assistant", content: text };
  if (opts.toolCalls) message.tool_calls = opts.toolCalls;
  return Response.json({
    id: "chatcmpl-1",
    object: "chat.completion",
    created: 1,
    model: opts.model ?? "test-model",
    choices: [{ index: 0, message, finish_reason: opts.finish ?? (opts.toolCalls ? "tool_calls" : "stop") }],
    usage: { prompt_tokens: opts.prompt ?? 5, completion_tokens: opts.completion ?? 3, total_tokens: (opts.prompt ?? 5) + (opts.completion ?? 3) },
  });
}

/** A gate requests wait on until the test opens it. */
export function gate(): { wait: Promise<void>; open: () => void } {
  let open = () => {};
  const wait = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { wait, open };
}

/** A port nothing listens on (connections are refused). */
export async function deadUrl(): Promise<string> {
  const s = Bun.serve({ port: 0, hostname: "127.0.0.1", fetch: () => new Response("") });
  const port = s.port;
  await s.stop(true);
  return `http://127.0.0.1:${port}/v1`;
}
