import { answerPrefixKey, composeAnswer, prepareRequest } from "./content.ts";
import { SeqState, SimEngine, type SimSeq } from "./engine.ts";
import { uniform } from "./hash.ts";
import { ServerCounters, renderMetrics } from "./metrics.ts";
import { ceilingTps, resolveSimOptions, type ResolvedSimOptions, type SimOptions } from "./options.ts";
import { PrefixCache } from "./prefix.ts";
import { ChatBodySchema, describeIssue, type ChatBody } from "./request.ts";
import { ChatStream, completionBody, errorResponse, type ReplyInfo } from "./respond.ts";
import { builtinSkills } from "./skills/index.ts";

/** Live figures of one simulated server, cumulative since it started. */
export interface SimStats {
  running: number;
  waiting: number;
  promptTokens: number;
  generationTokens: number;
  /** chat completion requests received (including refused ones) */
  requests: number;
  /** requests answered with a completion */
  completed: number;
  /** requests whose client went away before the answer */
  aborted: number;
  /** prompt tokens found in the prefix cache */
  prefixHits: number;
  /** prompt tokens looked up in the prefix cache */
  prefixQueries: number;
  /** integral of running/slots over wall time, seconds */
  runningSeconds: number;
  /** decode steps completed */
  steps: number;
  /** epoch ms */
  startedAt: number;
}

/** A running simulated LLM server. */
export interface SimServer {
  /** `http://HOST:PORT`, no trailing slash; the OpenAI base URL is `${url}/v1` */
  url: string;
  port: number;
  options: ResolvedSimOptions;
  /** most generated tokens per second of wall time */
  ceilingTps: number;
  stats(): SimStats;
  /** stops answering; requests in flight are dropped */
  stop(): Promise<void>;
}

const SALT_INJECT = 401;
const JSON_HEADERS = { "content-type": "application/json" };
const SSE_HEADERS = { "content-type": "text/event-stream", "cache-control": "no-cache" };

/** Reads a body of at most `max` bytes; undefined when it is larger. */
async function readBody(req: Request, max: number): Promise<string | undefined> {
  const len = req.headers.get("content-length");
  if (len !== null) {
    if (Number(len) > max) return undefined;
    return await req.text();
  }
  if (!req.body) return "";
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of req.body) {
    size += chunk.byteLength;
    if (size > max) return undefined;
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString("utf8");
}

/**
 * Starts one simulated GPU LLM server: an OpenAI-compatible chat completions
 * endpoint with vLLM's metrics and a continuous-batching capacity model.
 *
 * @example
 * ```ts
 * const sim = await startSim({ slots: 64, decodeTps: 20000 });
 * const res = await fetch(`${sim.url}/v1/chat/completions`, {
 *   method: "POST",
 *   body: JSON.stringify({ messages: [{ role: "user", content: "hi" }] }),
 * });
 * await sim.stop();
 * ```
 */
export async function startSim(opts: SimOptions = {}): Promise<SimServer> {
  const o = resolveSimOptions(opts);
  const engine = new SimEngine(o);
  const counters = new ServerCounters();
  const prefix = new PrefixCache(Math.min(1_000_000, o.slots * 64));
  const ceiling = ceilingTps(o);
  const startedAt = Date.now();
  let injectCounter = 0;
  let replyCounter = 0;
  let stopped = false;

  const refuse = (status: number, message: string, param: string | null = null): Response => {
    counters.rejected++;
    return errorResponse(status, message, param);
  };

  let port = o.port;
  const chat = async (req: Request): Promise<Response> => {
    counters.requests++;
    if (stopped) return errorResponse(503, "The server is stopping.");
    const raw = await readBody(req, o.maxBodyBytes);
    if (raw === undefined) return refuse(413, `Request body is larger than ${o.maxBodyBytes} bytes.`);
    let json: unknown;
    try {
      json = JSON.parse(raw);
    } catch (err) {
      return refuse(400, `Invalid JSON body: ${err instanceof Error ? err.message : String(err)}`);
    }
    const parsed = ChatBodySchema.safeParse(json);
    if (!parsed.success) {
      const { message, param } = describeIssue(parsed.error);
      return refuse(400, message, param);
    }
    const body: ChatBody = parsed.data;
    if (body.model != null && body.model !== o.model) {
      return refuse(404, `The model \`${body.model}\` does not exist.`, "model");
    }
    const prep = prepareRequest(body, o.model);
    if (o.errorRate > 0 || o.rateLimitRate > 0) {
      const u = uniform(prep.hash, SALT_INJECT + injectCounter++);
      if (u < o.errorRate) {
        counters.injected["500"]!++;
        return errorResponse(500, "Simulated internal server error.");
      }
      if (u < o.errorRate + o.rateLimitRate) {
        counters.injected["429"]!++;
        return errorResponse(429, "Simulated rate limit: try again shortly.", null, { "retry-after": "1" });
      }
    }
    const composed = composeAnswer(prep, o, builtinSkills);
    const cachedTokens = o.prefixCache
      ? prefix.lookupAndInsert(prep.prefixKeys, prep.prefixTokens, prep.promptTokens)
      : 0;
    const reply: ReplyInfo = {
      id: `chatcmpl-sim${port}-${++replyCounter}`,
      created: Math.floor(Date.now() / 1000),
      model: o.model,
      promptTokens: prep.promptTokens,
      cachedTokens,
      composed,
    };
    const finished = (seq: SimSeq): boolean => {
      if (seq.state !== SeqState.DONE) return false;
      counters.success[composed.finishReason === "length" ? "length" : "stop"]!++;
      counters.observeLatency((performance.now() - seq.arrivedAt) / 1000);
      if (o.prefixCache) prefix.insert(answerPrefixKey(prep, composed));
      return true;
    };
    const aborted = (): void => {
      counters.success.abort!++;
    };
    const seqInput = {
      promptTokens: prep.promptTokens,
      prefillTokens: prep.promptTokens - cachedTokens,
      len: composed.tokens,
    };

    if (body.stream) {
      let seq: SimSeq | undefined;
      const cancel = (): void => {
        if (seq && (seq.state === SeqState.WAITING || seq.state === SeqState.RUNNING)) {
          engine.cancel(seq);
          aborted();
        }
      };
      const stream = new ChatStream(reply, body.stream_options?.include_usage === true, cancel);
      seq = engine.submit({
        ...seqInput,
        onProgress: (s) => stream.progress(s.generated()),
        onEnd: (s) => (finished(s) ? stream.finish() : stream.fail()),
      });
      req.signal.addEventListener("abort", cancel, { once: true });
      return new Response(stream.readable, { headers: SSE_HEADERS });
    }

    return await new Promise<Response>((resolve) => {
      const seq = engine.submit({
        ...seqInput,
        onEnd: (s) => {
          req.signal.removeEventListener("abort", onAbort);
          resolve(
            finished(s)
              ? new Response(completionBody(reply), { headers: JSON_HEADERS })
              : errorResponse(503, "The server stopped before answering."),
          );
        },
      });
      function onAbort(): void {
        if (seq.state !== SeqState.WAITING && seq.state !== SeqState.RUNNING) return;
        engine.cancel(seq);
        aborted();
        resolve(errorResponse(499, "Client closed the request."));
      }
      if (req.signal.aborted) onAbort();
      else req.signal.addEventListener("abort", onAbort, { once: true });
    });
  };

  const models = (): Response =>
    Response.json({
      object: "list",
      data: [
        {
          id: o.model,
          object: "model",
          created: Math.floor(startedAt / 1000),
          owned_by: "matrixd",
          root: o.model,
          parent: null,
          max_model_len: o.maxLen,
        },
      ],
    });

  const metrics = (): Response =>
    new Response(
      renderMetrics({
        model: o.model,
        slots: o.slots,
        ceilingTps: ceiling,
        engine: engine.counters(),
        server: counters,
        prefixQueries: prefix.queries,
        prefixHits: prefix.hits,
      }),
      { headers: { "content-type": "text/plain; version=0.0.4; charset=utf-8" } },
    );

  const known = new Set(["/v1/chat/completions", "/v1/models", "/health", "/metrics"]);
  const server = Bun.serve({
    hostname: o.host,
    port: o.port,
    // queued requests may wait far longer than Bun's default 10 s idle limit
    idleTimeout: 0,
    // a safety net only: bodies past maxBodyBytes get a JSON 413 from readBody
    maxRequestBodySize: o.maxBodyBytes * 2 + 65536,
    routes: {
      "/v1/chat/completions": { POST: chat },
      "/v1/models": { GET: models },
      "/health": { GET: () => new Response(null, { status: 200 }) },
      "/metrics": { GET: metrics },
    },
    fetch(req) {
      const path = new URL(req.url).pathname;
      if (known.has(path)) return errorResponse(405, `Method ${req.method} is not allowed on ${path}.`);
      return errorResponse(404, `No route ${path}.`);
    },
  });

  let dieTimer: ReturnType<typeof setTimeout> | undefined;
  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      stopped = true;
      if (dieTimer) clearTimeout(dieTimer);
      engine.stop();
      await server.stop(true);
    })();
    return stopping;
  };
  if (o.dieAfterSec > 0) dieTimer = setTimeout(() => void stop(), o.dieAfterSec * 1000);

  port = server.port ?? o.port;
  // a wildcard address is not one to connect to: name loopback instead
  const connectHost = o.host === "0.0.0.0" ? "127.0.0.1" : o.host === "::" ? "::1" : o.host;
  const host = connectHost.includes(":") ? `[${connectHost}]` : connectHost;
  return {
    url: `http://${host}:${port}`,
    port,
    options: o,
    ceilingTps: ceiling,
    stop,
    stats(): SimStats {
      const e = engine.counters();
      return {
        running: e.running,
        waiting: e.waiting,
        promptTokens: e.promptTokens,
        generationTokens: e.generationTokens,
        requests: counters.requests,
        completed: counters.success.stop! + counters.success.length!,
        aborted: counters.success.abort!,
        prefixHits: prefix.hits,
        prefixQueries: prefix.queries,
        runningSeconds: e.runningSeconds,
        steps: e.steps,
        startedAt,
      };
    },
  };
}
