import { answerPrefixKey, composeAnswer, prepareRequest } from "./content.ts";
import { SeqState, SimEngine, type SimSeq } from "./engine.ts";
import { uniform } from "./hash.ts";
import { kindSurface } from "./kinds/index.ts";
import type { Handler, Lease, Refusal, ReplyInfo, SimLive } from "./kinds/types.ts";
import { ServerCounters } from "./metrics.ts";
import { ceilingTps, resolveSimOptions, type ResolvedSimOptions, type SimKind, type SimOptions } from "./options.ts";
import { PrefixCache } from "./prefix.ts";
import { ChatBodySchema, describeIssue, type ChatBody } from "./request.ts";
import { ChatStream } from "./respond.ts";
import { SimScript, type ScriptedReply } from "./script.ts";
import { builtinSkills } from "./skills/index.ts";
import type { Skill } from "./skills/types.ts";

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
  /** HTTP requests being handled, and waiting for a thread (llama.cpp's pool; 0 for other kinds) */
  httpBusy: number;
  httpWaiting: number;
}

/** A running simulated LLM server. */
export interface SimServer {
  /** `http://HOST:PORT`, no trailing slash; the OpenAI base URL is `${url}/v1` */
  url: string;
  port: number;
  /** the server kind it impersonates */
  kind: SimKind;
  options: ResolvedSimOptions;
  /** most generated tokens per second of wall time */
  ceilingTps: number;
  stats(): SimStats;
  /** stops answering; requests in flight are dropped */
  stop(): Promise<void>;
}

const SALT_INJECT = 401;

/** The one-skill list that gives a rule's answer. */
function scriptedSkills(r: Extract<ScriptedReply, { answer: unknown }>): readonly Skill[] {
  return [{ name: `script#${r.rule}`, answer: () => r.answer }];
}

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

/** A lease for servers without an HTTP thread pool: nothing to hold. */
const NO_LEASE: Lease = { hold() {}, release() {} };

/**
 * Starts one simulated GPU LLM server: an OpenAI-compatible chat completions
 * endpoint with a continuous-batching capacity model, speaking the protocol
 * of the server kind it was started as (vLLM by default: its metrics, info
 * routes, errors and fields; see kinds/).
 *
 * @example
 * ```ts
 * const sim = await startSim({ slots: 64, decodeTps: 20000, kind: "llamacpp" });
 * const res = await fetch(`${sim.url}/v1/chat/completions`, {
 *   method: "POST",
 *   body: JSON.stringify({ messages: [{ role: "user", content: "hi" }] }),
 * });
 * await sim.stop();
 * ```
 */
export async function startSim(opts: SimOptions = {}): Promise<SimServer> {
  const o = resolveSimOptions(opts);
  const script = o.script === undefined ? undefined : SimScript.load(o.script);
  const counters = new ServerCounters();
  counters.scripted = new Array<number>(script?.size ?? 0).fill(0);
  const prefix = new PrefixCache(Math.min(1_000_000, o.slots * 64));
  const ceiling = ceilingTps(o);
  const startedAt = Date.now();
  const live: SimLive = { o, port: o.port, startedAt, ceilingTps: ceiling, engine: () => engine.counters(), server: counters, prefix, http: { busy: 0, waiting: 0 } };
  const kind = kindSurface(live);
  // after the kind: its scheduler decides whether a waiting request may preempt a running one
  const engine = new SimEngine(kind.preemptGap === undefined ? o : { ...o, preemptGap: kind.preemptGap });
  let injectCounter = 0;
  let replyCounter = 0;
  let stopped = false;

  const refuse = (r: Refusal): Response => {
    counters.rejected++;
    return kind.refuse(r);
  };

  const chat: Handler = async (req, lease) => {
    counters.requests++;
    if (stopped) return kind.refuse({ why: "stopping" });
    const raw = await readBody(req, o.maxBodyBytes);
    if (raw === undefined) return refuse({ why: "size", max: o.maxBodyBytes });
    let json: unknown;
    try {
      json = JSON.parse(raw);
    } catch (err) {
      return refuse({ why: "json", detail: err instanceof Error ? err.message : String(err) });
    }
    const screened = kind.screen(json);
    if (screened) {
      counters.rejected++;
      return screened;
    }
    const parsed = ChatBodySchema.safeParse(json);
    if (!parsed.success) {
      const { message, param } = describeIssue(parsed.error);
      return refuse({ why: "schema", message, param, missing: /received undefined$/.test(parsed.error.issues[0]?.message ?? "") });
    }
    const body: ChatBody = parsed.data;
    const prep = prepareRequest(body, o.model);
    const adm = kind.admit(body, prep.promptTokens);
    if (adm instanceof Response) {
      counters.rejected++;
      return adm;
    }
    if (o.errorRate > 0 || o.rateLimitRate > 0) {
      const u = uniform(prep.hash, SALT_INJECT + injectCounter++);
      if (u < o.errorRate) {
        counters.injected["500"]!++;
        return kind.refuse({ why: "injected", status: 500 });
      }
      if (u < o.errorRate + o.rateLimitRate) {
        counters.injected["429"]!++;
        return kind.refuse({ why: "injected", status: 429 });
      }
    }
    // a scripted reply is one more composed answer: it is decoded, counted and timed like any other
    const scripted = script?.reply(prep, body.model ?? o.model);
    if (scripted) {
      counters.scripted[scripted.rule - 1]!++;
      if ("error" in scripted) {
        const code = String(scripted.error.status);
        counters.injected[code] = (counters.injected[code] ?? 0) + 1;
        return kind.refuse({ why: "scripted", ...scripted.error });
      }
    }
    const composed = composeAnswer(prep, o, scripted ? scriptedSkills(scripted) : builtinSkills, adm);
    // a prompt the server cut is not the prompt whose prefixes the cache knows
    const whole = adm.promptTokens === prep.promptTokens;
    const cachedTokens = o.prefixCache && whole ? prefix.lookupAndInsert(prep.prefixKeys, prep.prefixTokens, prep.promptTokens) : 0;
    const n = ++replyCounter;
    const reply: ReplyInfo = {
      id: kind.replyId(n),
      created: Math.floor(Date.now() / 1000),
      model: adm.model,
      promptTokens: adm.promptTokens,
      cachedTokens,
      composed,
      toolCallId: composed.toolCall ? kind.toolCallId(prep.hash) : "",
      includeUsage: body.stream_options?.include_usage === true,
    };
    const finished = (seq: SimSeq): boolean => {
      if (seq.state !== SeqState.DONE) return false;
      const ms = performance.now() - seq.arrivedAt;
      reply.elapsedMs = ms;
      counters.success[composed.finishReason === "length" ? "length" : "stop"]!++;
      counters.observeLatency(ms / 1000);
      kind.done?.(reply, ms / 1000);
      if (o.prefixCache && whole) prefix.insert(answerPrefixKey(prep, composed));
      return true;
    };
    const aborted = (): void => {
      counters.success.abort!++;
    };
    const seqInput = {
      promptTokens: adm.promptTokens,
      prefillTokens: adm.promptTokens - cachedTokens,
      len: composed.tokens,
      priority: adm.priority,
    };

    if (body.stream) {
      let seq: SimSeq | undefined;
      const cancel = (): void => {
        if (seq && (seq.state === SeqState.WAITING || seq.state === SeqState.RUNNING)) {
          engine.cancel(seq);
          aborted();
        }
      };
      // the stream keeps its HTTP thread (llama.cpp) until it ends
      lease.hold();
      const stream = new ChatStream(reply, kind.stream(reply), cancel, () => lease.release());
      seq = engine.submit({
        ...seqInput,
        onProgress: (s) => stream.progress(s.generated()),
        onEnd: (s) => (finished(s) ? stream.finish() : stream.fail()),
      });
      req.signal.addEventListener("abort", cancel, { once: true });
      return new Response(stream.readable, { headers: adm.headers ? { ...kind.sseHeaders, ...adm.headers } : kind.sseHeaders });
    }

    const headers = adm.headers ? { ...kind.jsonHeaders, ...adm.headers } : kind.jsonHeaders;
    return await new Promise<Response>((resolve) => {
      const seq = engine.submit({
        ...seqInput,
        onEnd: (s) => {
          req.signal.removeEventListener("abort", onAbort);
          resolve(finished(s) ? new Response(kind.completion(reply), { headers }) : kind.refuse({ why: "dropped" }));
        },
      });
      function onAbort(): void {
        if (seq.state !== SeqState.WAITING && seq.state !== SeqState.RUNNING) return;
        engine.cancel(seq);
        aborted();
        resolve(kind.refuse({ why: "gone" }));
      }
      if (req.signal.aborted) onAbort();
      else req.signal.addEventListener("abort", onAbort, { once: true });
    });
  };

  /** A handler behind the kind's gate (API key) when `path` is given, and its HTTP pool. */
  const serve = (path: string | undefined, h: Handler): ((req: Request) => Response | Promise<Response>) => {
    const gated: Handler = kind.gate && path !== undefined ? (req, lease) => kind.gate!(req, path) ?? h(req, lease) : h;
    return kind.wrap ? kind.wrap(gated) : (req) => gated(req, NO_LEASE);
  };
  const routes: Record<string, Record<string, (req: Request) => Response | Promise<Response>>> = {
    "/v1/chat/completions": { POST: serve("/v1/chat/completions", chat) },
  };
  for (const [path, h] of Object.entries(kind.routes)) routes[path] = { GET: serve(path, h) };
  const unrouted = serve(undefined, (req) => {
    const path = new URL(req.url).pathname;
    return kind.gate?.(req, path) ?? kind.refuse({ why: "route", method: req.method, path, known: path in routes });
  });

  const server = Bun.serve({
    hostname: o.host,
    port: o.port,
    // queued requests may wait far longer than Bun's default 10 s idle limit
    idleTimeout: 0,
    // a safety net only: bodies past maxBodyBytes get the kind's 413 from readBody
    maxRequestBodySize: o.maxBodyBytes * 2 + 65536,
    routes,
    fetch: unrouted,
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

  const port = server.port ?? o.port;
  live.port = port;
  // a wildcard address is not one to connect to: name loopback instead
  const connectHost = o.host === "0.0.0.0" ? "127.0.0.1" : o.host === "::" ? "::1" : o.host;
  const host = connectHost.includes(":") ? `[${connectHost}]` : connectHost;
  return {
    url: `http://${host}:${port}`,
    port,
    kind: o.kind,
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
        httpBusy: live.http.busy,
        httpWaiting: live.http.waiting,
      };
    },
  };
}
