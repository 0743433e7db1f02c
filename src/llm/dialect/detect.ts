/**
 * The dialect of each server kind, and finding out which kind a server is
 * from what it answers on the routes only one kind has.
 */
import { z } from "zod";

import { llamacpp } from "./llamacpp.ts";

import { apiBase, openai, serverRoot } from "./openai.ts";

import { sglang } from "./sglang.ts";

import { tgi } from "./tgi.ts";

import type { Dialect, ServerInfo, ServerKind } from "./types.ts";

import { vllm } from "./vllm.ts";
import { isRecord } from "../../util/record.ts";


const DIALECTS: Readonly<Record<ServerKind, Dialect>> = { vllm, sglang, llamacpp, tgi, openai };

/** The dialect of a server kind. */
export function dialectFor(kind: ServerKind): Dialect {
  return DIALECTS[kind];
}

/** What a server answered on the routes that tell kinds apart (absent: no 2xx JSON answer). */
export interface KindEvidence {
  /** its base URL (`http://host:8000/v1`) */
  baseUrl: string;
  /** the JSON of `GET {base}/models` */
  models?: unknown;
  /** the JSON of `GET /props` (llama.cpp) */
  props?: unknown;
  /** the JSON of `GET /get_server_info` (SGLang) */
  serverInfo?: unknown;
  /** the JSON of `GET /info` (TGI) */
  info?: unknown;
  /** the text of `GET /metrics` */
  metrics?: string;
}

/** A server's kind and the evidence for it, in a few words for the log. */
export interface KindFound {
  kind: ServerKind;
  why: string;
}

/** What servers put in `owned_by` (vLLM, SGLang, llama.cpp); matrixd's simulator speaks vLLM. */
// OpenAI lists its models as owned by "system", "openai" or "openai-internal"
const OWNERS: Readonly<Record<string, ServerKind>> = {
  vllm: "vllm",
  sglang: "sglang",
  llamacpp: "llamacpp",
  matrixd: "vllm",
  system: "openai",
  openai: "openai",
  "openai-internal": "openai",
};
/** The prefixes of each kind's metric names. */
const METRIC_PREFIXES: readonly [string, ServerKind][] = [
  ["vllm:", "vllm"],
  ["sglang:", "sglang"],
  ["llamacpp:", "llamacpp"],
  ["tgi_", "tgi"],
];

const ModelsAnswer = z.looseObject({ data: z.array(z.looseObject({ id: z.string().min(1), owned_by: z.string().optional().catch(undefined) })) });

function isLoopback(host: string): boolean {
  return host === "localhost" || host.endsWith(".localhost") || host === "[::1]" || host === "::1" || /^127\.\d+\.\d+\.\d+$/.test(host);
}

/** The most used kind prefix among a metrics text's sample names. */
function metricsKind(text: string): [string, ServerKind] | undefined {
  let best: [string, ServerKind] | undefined;
  let bestCount = 0;
  for (const [prefix, kind] of METRIC_PREFIXES) {
    let n = 0;
    for (const line of text.split("\n")) if (line.startsWith(prefix)) n++;
    if (n > bestCount) {
      best = [prefix, kind];
      bestCount = n;
    }
  }
  return best;
}

/**
 * A server's kind from what it answered: `owned_by` in its model list (the
 * server's own word), then the info routes only one kind has (`/props`
 * with `total_slots`: llama.cpp; `/get_server_info`: SGLang; `/info` with
 * `model_id`: TGI), then its metric names. A server with none of this is
 * a hosted API when it is a remote https host, and is spoken to as vLLM
 * (the most common OpenAI-compatible server) otherwise.
 */
export function detectKind(e: KindEvidence): KindFound {
  const models = ModelsAnswer.safeParse(e.models);
  if (models.success) {
    for (const m of models.data.data) {
      const kind = m.owned_by !== undefined ? OWNERS[m.owned_by] : undefined;
      if (kind) return { kind, why: `${pathOf(e.baseUrl)}/models owned_by ${m.owned_by}` };
    }
  }
  if (isRecord(e.props) && typeof e.props.total_slots === "number") return { kind: "llamacpp", why: "/props total_slots" };
  const si = e.serverInfo;
  if (isRecord(si) && ("max_total_num_tokens" in si || "internal_states" in si || ("model_path" in si && "tp_size" in si))) {
    return { kind: "sglang", why: "/get_server_info answered" };
  }
  if (isRecord(e.info) && typeof e.info.model_id === "string" && (typeof e.info.max_concurrent_requests === "number" || e.info.router === "text-generation-router")) {
    return { kind: "tgi", why: "/info model_id, max_concurrent_requests" };
  }
  const byMetrics = e.metrics !== undefined ? metricsKind(e.metrics) : undefined;
  if (byMetrics) return { kind: byMetrics[1], why: `/metrics names ${byMetrics[0]}*` };
  let url: URL | undefined;
  try {
    url = new URL(e.baseUrl);
  } catch {
    url = undefined;
  }
  if (url && url.protocol === "https:" && !isLoopback(url.hostname)) return { kind: "openai", why: "remote https host without server metrics or info routes" };
  return { kind: "vllm", why: "no kind's own answers: spoken to as vLLM" };
}

function pathOf(baseUrl: string): string {
  try {
    return apiBase(new URL(baseUrl).pathname);
  } catch {
    return "";
  }
}

/** The `fetch` probes use: Bun's, or a test's or a proxy's. */
export type ProbeFetch = (url: string, init: { headers: Record<string, string>; signal: AbortSignal }) => Promise<Response>;

/** How to probe. */
export interface ProbeOptions {
  fetch?: ProbeFetch;
  /** sent with every probe (an API key) */
  headers?: Record<string, string>;
  /** stops every probe */
  signal?: AbortSignal;
  /** how long each probe may take (default 3000 ms) */
  timeoutMs?: number;
}

/** What probing a server found out. */
export interface ProbeResult extends KindFound {
  /** what its kind's info routes said (slots, context, version) */
  info: ServerInfo;
  /** the models its `/models` lists, when it answered one */
  models?: string[];
  /** whether anything answered at all: a server not up yet tells nothing, and its kind is a guess */
  answered: boolean;
}

interface Answer {
  status: number;
  text: string;
}

/**
 * Find out a server's kind by asking it: `GET {base}/models`, `/props`,
 * `/get_server_info`, `/info` and `/metrics` at once, each with a short
 * timeout, never throwing; then what its kind's info routes say (from the
 * same answers, so that no route is asked twice).
 */
export async function probeKind(baseUrl: string, opts: ProbeOptions = {}): Promise<ProbeResult> {
  const doFetch: ProbeFetch = opts.fetch ?? ((url, init) => fetch(url, init));
  const timeoutMs = opts.timeoutMs ?? 3000;
  let answered = false;
  const get = async (url: string): Promise<Answer | undefined> => {
    try {
      const timeout = AbortSignal.timeout(timeoutMs);
      const signal = opts.signal ? AbortSignal.any([opts.signal, timeout]) : timeout;
      const res = await doFetch(url, { headers: opts.headers ?? {}, signal });
      answered = true;
      return { status: res.status, text: await res.text() };
    } catch {
      // refused, timed out, cut off: this route tells nothing
      return undefined;
    }
  };
  const root = serverRoot(baseUrl);
  const urls = {
    models: `${apiBase(baseUrl)}/models`,
    props: `${root}/props`,
    serverInfo: `${root}/get_server_info`,
    info: `${root}/info`,
    metrics: `${root}/metrics`,
  };
  const [models, props, serverInfo, info, metrics] = await Promise.all([get(urls.models), get(urls.props), get(urls.serverInfo), get(urls.info), get(urls.metrics)]);
  const evidence: KindEvidence = { baseUrl };
  const put = (key: "models" | "props" | "serverInfo" | "info", a: Answer | undefined) => {
    const json = jsonOf(a);
    if (json !== undefined) evidence[key] = json;
  };
  put("models", models);
  put("props", props);
  put("serverInfo", serverInfo);
  put("info", info);
  if (metrics && ok(metrics)) evidence.metrics = metrics.text;
  const found = detectKind(evidence);
  const known = new Map<string, unknown>([
    [urls.models, evidence.models],
    [urls.props, evidence.props],
    [urls.serverInfo, evidence.serverInfo],
    [urls.info, evidence.info],
  ]);
  let learned: ServerInfo = {};
  for (const probe of dialectFor(found.kind).infoProbes) {
    const url = probe.url(baseUrl);
    const json = known.has(url) ? known.get(url) : jsonOf(await get(url));
    if (json !== undefined) learned = { ...learned, ...probe.read(json) };
  }
  const list = ModelsAnswer.safeParse(evidence.models);
  return {
    ...found,
    info: learned,
    ...(list.success && list.data.data.length > 0 ? { models: list.data.data.map((m) => m.id) } : {}),
    answered,
  };
}

function ok(a: Answer): boolean {
  return a.status >= 200 && a.status < 300;
}

/** The JSON of a 2xx answer; undefined for anything else (an error page, HTML of a catch-all route). */
function jsonOf(a: Answer | undefined): unknown {
  if (!a || !ok(a)) return undefined;
  try {
    return JSON.parse(a.text);
  } catch {
    return undefined;
  }
}
