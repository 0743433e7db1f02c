/**
 * The per-kind dialects: load read off each kind's metrics (llama.cpp's
 * from its real b4748 answers in test/fixtures/llama.cpp-b4748), info
 * routes, structured-output fields, schema rewriting, error meanings,
 * rate-limit headers, and finding out a server's kind, over HTTP too.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { TOOL_SPECS } from "../plugins/tool-use/tools.ts";
import { z } from "zod";
import { type Dialect, detectKind, dialectFor, probeKind, SERVER_KINDS } from "../src/llm/dialect/index.ts";
import { parseDuration, readRateLimitHeaders } from "../src/llm/dialect/openai.ts";
import { llamaCppPattern, regexToGbnf, rewriteForLlamaCpp, strictCompatible } from "../src/llm/dialect/schema.ts";
import { parsePrometheus, parsePrometheusSamples, vllmLoad } from "../src/services/prom.ts";

const FIXTURES = join(import.meta.dir, "fixtures", "llama.cpp-b4748");
const fixture = (name: string) => readFileSync(join(FIXTURES, name), "utf8");
const fixtureJson = (name: string): unknown => JSON.parse(fixture(name));

const vllm = dialectFor("vllm");
const sglang = dialectFor("sglang");
const llamacpp = dialectFor("llamacpp");
const tgi = dialectFor("tgi");
const openai = dialectFor("openai");

/** A vLLM V1 /metrics, two engines (data parallelism) of one model. */
const VLLM_TEXT = `# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="Qwen/Qwen3-8B"} 12.0
vllm:num_requests_running{engine="1",model_name="Qwen/Qwen3-8B"} 10.0
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="Qwen/Qwen3-8B"} 3.0
vllm:num_requests_waiting{engine="1",model_name="Qwen/Qwen3-8B"} 1.0
# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="Qwen/Qwen3-8B"} 0.5
vllm:kv_cache_usage_perc{engine="1",model_name="Qwen/Qwen3-8B"} 0.25
# HELP vllm:prefix_cache_queries_total Prefix cache queries, in terms of number of queried tokens.
# TYPE vllm:prefix_cache_queries_total counter
vllm:prefix_cache_queries_total{engine="0",model_name="Qwen/Qwen3-8B"} 1000.0
vllm:prefix_cache_queries_total{engine="1",model_name="Qwen/Qwen3-8B"} 500.0
# TYPE vllm:prefix_cache_hits_total counter
vllm:prefix_cache_hits_total{engine="0",model_name="Qwen/Qwen3-8B"} 400.0
vllm:prefix_cache_hits_total{engine="1",model_name="Qwen/Qwen3-8B"} 100.0
# TYPE vllm:prompt_tokens_total counter
vllm:prompt_tokens_total{engine="0",model_name="Qwen/Qwen3-8B"} 1.5e+04
vllm:prompt_tokens_total{engine="1",model_name="Qwen/Qwen3-8B"} 5000.0
# TYPE vllm:generation_tokens_total counter
vllm:generation_tokens_total{engine="0",model_name="Qwen/Qwen3-8B"} 700.0
vllm:generation_tokens_total{engine="1",model_name="Qwen/Qwen3-8B"} 300.0
# TYPE vllm:iteration_tokens_total histogram
vllm:iteration_tokens_total_bucket{engine="0",le="1.0",model_name="Qwen/Qwen3-8B"} 3.0
`;

/** SGLang v0.5 with tensor parallelism 2: both ranks publish the scheduler's gauges. */
const SGLANG_TEXT = `# HELP sglang:num_running_reqs The number of running requests.
# TYPE sglang:num_running_reqs gauge
sglang:num_running_reqs{engine_type="unified",model_name="meta-llama/Llama-3.1-8B-Instruct",pp_rank="0",tp_rank="0"} 162.0
sglang:num_running_reqs{engine_type="unified",model_name="meta-llama/Llama-3.1-8B-Instruct",pp_rank="0",tp_rank="1"} 162.0
# HELP sglang:num_queue_reqs The number of requests in the waiting queue.
# TYPE sglang:num_queue_reqs gauge
sglang:num_queue_reqs{engine_type="unified",model_name="meta-llama/Llama-3.1-8B-Instruct",pp_rank="0",tp_rank="0"} 2826.0
sglang:num_queue_reqs{engine_type="unified",model_name="meta-llama/Llama-3.1-8B-Instruct",pp_rank="0",tp_rank="1"} 2826.0
# HELP sglang:token_usage The token usage.
# TYPE sglang:token_usage gauge
sglang:token_usage{engine_type="unified",model_name="meta-llama/Llama-3.1-8B-Instruct",pp_rank="0",tp_rank="0"} 0.28
sglang:token_usage{engine_type="unified",model_name="meta-llama/Llama-3.1-8B-Instruct",pp_rank="0",tp_rank="1"} 0.28
# HELP sglang:prompt_tokens_total Number of prefill tokens processed.
# TYPE sglang:prompt_tokens_total counter
sglang:prompt_tokens_total{model_name="meta-llama/Llama-3.1-8B-Instruct"} 8.128902e+06
# HELP sglang:generation_tokens_total Number of generation tokens processed.
# TYPE sglang:generation_tokens_total counter
sglang:generation_tokens_total{model_name="meta-llama/Llama-3.1-8B-Instruct"} 7.557572e+06
# HELP sglang:cached_tokens_total Number of cached prompt tokens.
# TYPE sglang:cached_tokens_total counter
sglang:cached_tokens_total{cache_source="device",model_name="meta-llama/Llama-3.1-8B-Instruct"} 3.0e+06
sglang:cached_tokens_total{cache_source="host",model_name="meta-llama/Llama-3.1-8B-Instruct"} 1.0e+06
# HELP sglang:cache_hit_rate The prefix cache hit rate.
# TYPE sglang:cache_hit_rate gauge
sglang:cache_hit_rate{model_name="meta-llama/Llama-3.1-8B-Instruct"} 0.49
`;

/** TGI v3 /metrics (no labels; token counts as histograms). */
const TGI_TEXT = `# TYPE tgi_queue_size gauge
tgi_queue_size 7
# TYPE tgi_batch_current_size gauge
tgi_batch_current_size 32
# TYPE tgi_batch_current_max_tokens gauge
tgi_batch_current_max_tokens 41234
# TYPE tgi_request_input_length histogram
tgi_request_input_length_bucket{le="1024"} 90
tgi_request_input_length_bucket{le="+Inf"} 100
tgi_request_input_length_sum 51200
tgi_request_input_length_count 100
# TYPE tgi_request_generated_tokens histogram
tgi_request_generated_tokens_bucket{le="+Inf"} 98
tgi_request_generated_tokens_sum 12544
tgi_request_generated_tokens_count 98
`;

describe("llm dialect", () => {
  test("llm dialect - llama.cpp load from the real b4748 metrics", () => {
    expect(llamacpp.parseLoad(fixture("metrics.txt"))).toEqual({
      running: 0,
      waiting: 0,
      cacheUsage: 0,
      promptTokens: 0,
      generationTokens: 0,
      prefixQueries: 0,
      prefixHits: 0,
      missing: [],
    });
    const busy = llamacpp.parseLoad(fixture("metrics-under-load.txt"));
    expect(busy.missing).toEqual([]);
    expect(busy.cacheUsage).toBeCloseTo(0.144958, 6);
    expect(busy.promptTokens).toBe(1_416_330);
    expect(busy.generationTokens).toBe(150_561);
    expect(busy.running).toBe(0);
    expect(busy.waiting).toBe(0);
  });

  test("llm dialect - a server's metrics of another kind are said missing, not read as idle", () => {
    expect(llamacpp.parseLoad(VLLM_TEXT).missing).toEqual(["llamacpp:requests_processing", "llamacpp:requests_deferred"]);
    expect(vllm.parseLoad(fixture("metrics-under-load.txt")).missing).toEqual(["vllm:num_requests_running", "vllm:num_requests_waiting"]);
    expect(sglang.parseLoad(TGI_TEXT).missing).toEqual(["sglang:num_running_reqs", "sglang:num_queue_reqs"]);
    expect(tgi.parseLoad(SGLANG_TEXT).missing).toEqual(["tgi_batch_current_size", "tgi_queue_size"]);
    // one gauge of two present: the other is still said
    expect(vllm.parseLoad("vllm:num_requests_running 3\n").missing).toEqual(["vllm:num_requests_waiting"]);
    expect(openai.parseLoad("").missing).toEqual([]);
  });

  test("llm dialect - vLLM load sums engines, averages the cache, reads old names and the simulator's slots", () => {
    expect(vllm.parseLoad(VLLM_TEXT)).toEqual({
      running: 22,
      waiting: 4,
      cacheUsage: 0.375,
      promptTokens: 20_000,
      generationTokens: 1000,
      prefixQueries: 1500,
      prefixHits: 500,
      missing: [],
    });
    const old = `vllm:num_requests_running{model_name="m"} 2
vllm:num_requests_waiting{model_name="m"} 1
vllm:gpu_cache_usage_perc{model_name="m"} 0.9
vllm:gpu_prefix_cache_queries_total{model_name="m"} 10
vllm:gpu_prefix_cache_hits_total{model_name="m"} 4
sim:slots{model_name="m"} 16
`;
    const l = vllm.parseLoad(old);
    expect(l.cacheUsage).toBe(0.9);
    expect([l.prefixQueries, l.prefixHits, l.slots]).toEqual([10, 4, 16]);
    // the supervisor's reader is the same
    expect(vllmLoad(old)).toEqual(l);
    expect(vllmLoad("").missing).toEqual(["vllm:num_requests_running", "vllm:num_requests_waiting"]);
  });

  test("llm dialect - SGLang load counts one tensor-parallel rank and its radix-cache hits", () => {
    const l = sglang.parseLoad(SGLANG_TEXT);
    expect(l).toEqual({
      running: 162,
      waiting: 2826,
      cacheUsage: 0.28,
      promptTokens: 8_128_902,
      generationTokens: 7_557_572,
      prefixQueries: 8_128_902,
      prefixHits: 4_000_000,
      missing: [],
    });
  });

  test("llm dialect - TGI load from its queue and batch gauges and its histograms' sums", () => {
    expect(tgi.parseLoad(TGI_TEXT)).toEqual({
      running: 32,
      waiting: 7,
      promptTokens: 51_200,
      generationTokens: 12_544,
      prefixQueries: 0,
      prefixHits: 0,
      missing: [],
    });
  });

  test("llm dialect - the Prometheus reader takes labels with spaces, quotes and commas, and leaves timestamps and NaN", () => {
    const text = [
      "# TYPE m gauge",
      'm{model_name="a model, \\"quoted\\"",engine="0"} 2 1712345678901',
      'm{model_name="b"} 3',
      "m_nan NaN",
      "m_inf +Inf",
      "broken{unclosed 4",
      "  ",
      "bare 5\r",
    ].join("\n");
    const samples = parsePrometheusSamples(text);
    expect(samples).toEqual([
      { name: "m", labels: { model_name: 'a model, "quoted"', engine: "0" }, value: 2 },
      { name: "m", labels: { model_name: "b" }, value: 3 },
      { name: "bare", labels: {}, value: 5 },
    ]);
    expect(parsePrometheus(text)).toEqual(new Map([["m", 5], ["bare", 5]]));
  });

  test("llm dialect - metrics and info routes are beside the base URL, hosted APIs have none", () => {
    for (const d of [vllm, sglang, llamacpp, tgi]) {
      expect(d.metricsUrl("http://gpu1:8000/v1")).toBe("http://gpu1:8000/metrics");
      expect(d.metricsUrl("http://gpu1:8000/v1/")).toBe("http://gpu1:8000/metrics");
      // behind a proxy's path prefix
      expect(d.metricsUrl("https://lab.example/llm/v1")).toBe("https://lab.example/llm/metrics");
    }
    expect(openai.metricsUrl("https://api.openai.com/v1")).toBeUndefined();
    expect(openai.infoProbes).toEqual([]);
    expect(llamacpp.infoProbes.map((p) => p.url("http://h:8080/v1"))).toEqual(["http://h:8080/props"]);
    expect(sglang.infoProbes.map((p) => p.url("http://h:30000/v1"))).toEqual(["http://h:30000/get_server_info"]);
    expect(tgi.infoProbes.map((p) => p.url("http://h:3000/v1"))).toEqual(["http://h:3000/info"]);
    expect(vllm.infoProbes.map((p) => p.url("http://h:8000/v1/"))).toEqual(["http://h:8000/v1/models"]);
  });

  test("llm dialect - info routes read slots and context, and nothing from what they do not expect", () => {
    const read = (d: Dialect, json: unknown) => d.infoProbes[0]?.read(json);
    expect(read(llamacpp, fixtureJson("props.json"))).toEqual({ slots: 2, contextTokens: 2048, version: "b4748-c392e5094" });
    expect(read(vllm, { object: "list", data: [{ id: "Qwen/Qwen3-8B", object: "model", owned_by: "vllm", max_model_len: 32768 }] })).toEqual({ contextTokens: 32768 });
    // llama.cpp's model list has no max_model_len
    expect(read(vllm, fixtureJson("models.json"))).toEqual({});
    const sglangInfo = {
      model_path: "meta-llama/Llama-3.1-8B-Instruct",
      tp_size: 1,
      dp_size: 2,
      context_length: null,
      max_running_requests: null,
      max_total_num_tokens: 20480,
      max_req_input_len: 8191,
      internal_states: [
        { last_gen_throughput: 129.3, memory_usage: { weight: 0.98, kvcache: 0.23, token_capacity: 20480, graph: 0 }, effective_max_running_requests_per_dp: 128 },
        { last_gen_throughput: 121.0, effective_max_running_requests_per_dp: 128 },
      ],
      version: "0.5.4",
    };
    expect(read(sglang, sglangInfo)).toEqual({ slots: 256, contextTokens: 8192, version: "0.5.4" });
    // an older one, started with --max-running-requests and --context-length
    expect(read(sglang, { max_running_requests: 64, context_length: 4096, version: "0.4.3" })).toEqual({ slots: 64, contextTokens: 4096, version: "0.4.3" });
    const tgiInfo = {
      model_id: "meta-llama/Llama-3.1-8B-Instruct",
      model_sha: null,
      model_pipeline_tag: "text-generation",
      max_concurrent_requests: 128,
      max_best_of: 2,
      max_stop_sequences: 4,
      max_input_tokens: 8191,
      max_total_tokens: 8192,
      validation_workers: 2,
      max_client_batch_size: 4,
      router: "text-generation-router",
      version: "3.3.6",
      sha: null,
      docker_label: null,
    };
    expect(read(tgi, tgiInfo)).toEqual({ maxRequests: 128, contextTokens: 8192, version: "3.3.6" });
    for (const d of [vllm, sglang, llamacpp, tgi]) {
      for (const junk of [null, "ok", [1, 2], { total_slots: "two", data: "none", max_concurrent_requests: -1, internal_states: "x" }]) {
        expect(read(d, junk)).toEqual({});
      }
    }
    // one field of the wrong type does not lose the others
    expect(read(llamacpp, { total_slots: 4, default_generation_settings: "?", build_info: 7 })).toEqual({ slots: 4 });
  });

  const schema = { type: "object", properties: { ok: { type: "boolean" } }, required: ["ok"], additionalProperties: false };
  const asked = {
    schema: { type: "json_schema", json_schema: { name: "verdict", schema } },
    object: { type: "json_object" },
    regex: { type: "regex", pattern: "^(yes|no)$" },
    text: { type: "text" },
  };
  const bodyOf = (d: Dialect, format: Record<string, unknown>, base: Record<string, unknown> = {}) => {
    const body: Record<string, unknown> = { ...base };
    d.applyFormat(body, format);
    return body;
  };

  test("llm dialect - each kind gets structured output in the one field it honours", () => {
    expect(bodyOf(vllm, asked.schema)).toEqual({ response_format: { type: "json_schema", json_schema: { name: "verdict", schema } } });
    expect(bodyOf(vllm, asked.object)).toEqual({ response_format: { type: "json_object" } });
    expect(bodyOf(vllm, asked.regex)).toEqual({ structured_outputs: { regex: "^(yes|no)$" }, guided_regex: "^(yes|no)$" });

    expect(bodyOf(sglang, asked.schema)).toEqual({ response_format: { type: "json_schema", json_schema: { name: "verdict", schema } } });
    expect(bodyOf(sglang, asked.regex)).toEqual({ regex: "^(yes|no)$" });

    // b4748 ignores response_format json_schema: the top-level field it honours, and nothing else
    expect(bodyOf(llamacpp, asked.schema)).toEqual({ json_schema: schema });
    expect(bodyOf(llamacpp, { type: "json_object", schema })).toEqual({ json_schema: schema });
    expect(bodyOf(llamacpp, asked.object)).toEqual({ response_format: { type: "json_object" } });
    expect(bodyOf(llamacpp, asked.regex)).toEqual({ grammar: 'root ::= ( "yes" | "no" )' });
    // a regex beyond the subset, or beside tools, goes unconstrained rather than refused
    expect(bodyOf(llamacpp, { type: "regex", pattern: "(?<=a)b" })).toEqual({});
    const tools = [{ type: "function", function: { name: "f", description: "f" } }];
    expect(bodyOf(llamacpp, asked.regex, { tools })).toEqual({ tools });

    expect(bodyOf(tgi, asked.schema)).toEqual({ response_format: { type: "json_object", value: schema } });
    expect(bodyOf(tgi, asked.object)).toEqual({ response_format: { type: "json_object", value: { type: "object" } } });
    expect(bodyOf(tgi, asked.regex)).toEqual({ response_format: { type: "regex", value: "^(yes|no)$" } });
    // TGI refuses a grammar beside tools
    expect(bodyOf(tgi, asked.schema, { tools })).toEqual({ tools });

    expect(bodyOf(openai, asked.schema)).toEqual({ response_format: { type: "json_schema", json_schema: { name: "verdict", schema, strict: true } } });
    // an optional property: strict mode would refuse the request
    const loose = { type: "object", properties: { ok: { type: "boolean" }, why: { type: "string" } }, required: ["ok"], additionalProperties: false };
    expect(bodyOf(openai, { type: "json_schema", json_schema: { name: "v", schema: loose } })).toEqual({ response_format: { type: "json_schema", json_schema: { name: "v", schema: loose, strict: false } } });
    expect(bodyOf(openai, asked.object)).toEqual({ response_format: { type: "json_object" } });
    expect(bodyOf(openai, asked.regex)).toEqual({});

    for (const kind of SERVER_KINDS) expect(bodyOf(dialectFor(kind), asked.text)).toEqual({});
    // a format this layer does not know goes on as it is, for the server to take or refuse
    const tag = { type: "structural_tag", structures: [], triggers: [] };
    expect(bodyOf(vllm, tag)).toEqual({ response_format: tag });
    // a schema name servers refuse is replaced
    expect(bodyOf(sglang, { type: "json_schema", json_schema: { name: "a name with spaces", schema } })).toEqual({ response_format: { type: "json_schema", json_schema: { name: "output", schema } } });
  });

  test("llm dialect - the completion cap's field and tool descriptions", () => {
    expect(openai.maxTokensField).toBe("max_completion_tokens");
    for (const d of [vllm, sglang, llamacpp, tgi]) expect(d.maxTokensField).toBe("max_tokens");
    expect(llamacpp.toolsNeedDescription).toBe(true);
    for (const d of [vllm, sglang, tgi, openai]) expect(d.toolsNeedDescription).toBe(false);
  });

  test("llm dialect - the tool-use schemas rewritten for llama.cpp's grammar converter", () => {
    const before = JSON.stringify(TOOL_SPECS);
    const rewritten = TOOL_SPECS.map((t) => (t.function.parameters ? llamacpp.rewriteSchema(t.function.parameters) : {}));
    const sent = JSON.stringify(rewritten);
    expect(sent).not.toContain("\\\\d");
    expect(sent).toContain('"^A[0-9]{4}$"');
    expect(sent).toContain('"^[0-9]{3}-[0-9]{4}$"');
    // the workflow's own objects are not changed
    expect(JSON.stringify(TOOL_SPECS)).toBe(before);
    // nothing else moved
    expect(JSON.parse(sent.replaceAll("[0-9]", "\\\\d"))).toEqual(TOOL_SPECS.map((t) => t.function.parameters ?? {}));
    // the other kinds' converters take the schemas as they are
    const params = TOOL_SPECS[0]?.function.parameters ?? {};
    for (const d of [vllm, sglang, tgi, openai]) expect(d.rewriteSchema(params)).toEqual(params);
  });

  test("llm dialect - patterns re-spelled in llama.cpp's regex subset, or dropped", () => {
    const cases: [string, string | undefined][] = [
      ["^A\\d{4}$", "^A[0-9]{4}$"],
      ["^\\d{3}-\\d{4}$", "^[0-9]{3}-[0-9]{4}$"],
      ["^[\\d-]+$", "^[0-9-]+$"],
      ["^\\w+@\\w+\\.com$", "^[A-Za-z0-9_]+@[A-Za-z0-9_]+\\.com$"],
      ["^\\s*\\S+$", "^[ \\t\\n\\r]*[^ \\t\\n\\r]+$"],
      ["^[^\\d]$", "^[^0-9]$"],
      ["^(?:ab)+$", "^(ab)+$"],
      ["^(?<year>\\d{4})$", "^([0-9]{4})$"],
      ["^[a-z\\-_]$", "^[a-z_-]$"],
      ["^\\/\\d+$", "^/[0-9]+$"],
      ["^a\\.+$", "^a(\\.)+$"],
      ["^(a|b)*?$", "^(a|b)*$"],
      // unanchored: a search, which the converter refuses
      ["\\d+", undefined],
      ["^\\d+", undefined],
      // lookarounds, backreferences, word boundaries, negated shorthands in brackets
      ["^(?=.*\\d).+$", undefined],
      ["^(a)\\1$", undefined],
      ["^\\bword\\b$", undefined],
      ["^[\\D]$", undefined],
      ["^\\p{L}+$", undefined],
      ["^(a$", undefined],
      ["^*a$", undefined],
    ];
    for (const [pattern, want] of cases) expect([pattern, llamaCppPattern(pattern)]).toEqual([pattern, want]);
    // what is re-spelled still matches what it matched
    for (const [pattern, want] of cases) {
      if (want === undefined) continue;
      for (const s of ["A1042", "555-0142", "12-3", "joe@example.com", "  x", "7", "abab", "2025", "q", "/12", "a...", "abba", ""]) {
        expect([pattern, s, new RegExp(want).test(s)]).toEqual([pattern, s, new RegExp(pattern).test(s)]);
      }
    }
  });

  test("llm dialect - other schema fixes for llama.cpp, and data left alone", () => {
    const s = {
      type: "object",
      properties: {
        anything: { description: "any JSON value" },
        n: { type: "integer", minimum: 1, exclusiveMinimum: true, maximum: 9, exclusiveMaximum: false },
        when: { type: "string", format: 7 },
        tags: { type: "array", items: { type: "string", pattern: "^#\\w+$" } },
        either: { anyOf: [{ type: "string", pattern: "^\\d+$" }, { type: "null" }] },
        search: { type: "string", pattern: "\\d" },
      },
      $defs: { id: { type: "string", pattern: "^\\d{2}$" } },
      // data, not schemas: their "pattern" keys are the workflow's
      default: { pattern: "\\d" },
      examples: [{ pattern: "\\d" }],
      enum: [{ pattern: "\\d" }],
    };
    const copy = structuredClone(s);
    const out = llamacpp.rewriteSchema(s);
    expect(s).toEqual(copy);
    expect(out).toEqual({
      type: "object",
      properties: {
        anything: { description: "any JSON value", type: ["object", "array", "string", "number", "boolean", "null"] },
        n: { type: "integer", exclusiveMinimum: 1, maximum: 9 },
        when: { type: "string" },
        tags: { type: "array", items: { type: "string", pattern: "^#[A-Za-z0-9_]+$" } },
        either: { anyOf: [{ type: "string", pattern: "^[0-9]+$" }, { type: "null" }] },
        search: { type: "string" },
      },
      $defs: { id: { type: "string", pattern: "^[0-9]{2}$" } },
      default: { pattern: "\\d" },
      examples: [{ pattern: "\\d" }],
      enum: [{ pattern: "\\d" }],
    });
    expect(rewriteForLlamaCpp({})).toEqual({});
  });

  test("llm dialect - a regex as a GBNF grammar for llama.cpp", () => {
    expect(regexToGbnf("^[A-Z]{2}\\d{3}$")).toBe("root ::= [A-Z]{2} [0-9]{3}");
    expect(regexToGbnf("yes|no")).toBe('root ::= "yes" | "no"');
    expect(regexToGbnf("^ab+c$")).toBe('root ::= "a" "b"+ "c"');
    expect(regexToGbnf("a.b")).toBe('root ::= "a" [^\\n\\r] "b"');
    expect(regexToGbnf('^say "hi"\\\\$')).toBe('root ::= "say \\"hi\\"\\\\"');
    expect(regexToGbnf("^(\\d{1,3}\\.){3}\\d{1,3}$")).toBe('root ::= ( [0-9]{1,3} "." ){3} [0-9]{1,3}');
    for (const bad of ["^(|a)$", "(a|)", "()", "^a$b", "(?!x)y", "\\bx", ""]) expect([bad, regexToGbnf(bad)]).toEqual([bad, undefined]);
  });

  test("llm dialect - OpenAI's strict mode only for closed schemas", () => {
    expect(strictCompatible({ type: "object", properties: { a: { type: "string" } }, required: ["a"], additionalProperties: false })).toBe(true);
    expect(strictCompatible({ type: "object", properties: { a: { type: "string" } }, required: ["a"] })).toBe(false);
    const nested = { type: "object", properties: { o: { type: "object", properties: { x: { type: "number" } }, required: [] } }, required: ["o"], additionalProperties: false };
    expect(strictCompatible(nested)).toBe(false);
    expect(strictCompatible({ type: "array", items: { type: "string" } })).toBe(false);
    expect(strictCompatible({ type: "object", properties: {}, additionalProperties: false, allOf: [] })).toBe(false);
  });

  test("llm dialect - llama.cpp's errors, from its own answers", () => {
    const fromFixture = z.object({ error: z.object({ message: z.string() }) }).parse(fixtureJson("tools-backslash-d.json")).error.message;
    expect(fromFixture).toContain("key 'description' not found");
    expect(llamacpp.classifyError(500, fromFixture)).toBe("config");
    expect(llamacpp.classifyError(500, "tools param requires --jinja flag")).toBe("config");
    expect(llamacpp.classifyError(500, "Unsupported param: tool_choice")).toBe("config");
    expect(llamacpp.classifyError(500, "Cannot use custom grammar constraints with tools.")).toBe("config");
    expect(llamacpp.classifyError(500, "Input prompt is too big compared to KV size. Please try increasing KV size.")).toBe("context");
    expect(llamacpp.classifyError(400, "the request exceeds the available context size, try increasing it")).toBe("context");
    expect(llamacpp.classifyError(503, "Loading model")).toBe("transient");
    expect(llamacpp.classifyError(500, "Internal Server Error")).toBe("transient");
    expect(llamacpp.classifyError(400, "Invalid request")).toBe("config");
  });

  test("llm dialect - vLLM, SGLang and TGI errors in their own words", () => {
    expect(vllm.classifyError(400, "This model's maximum context length is 4096 tokens. However, you requested 5000 tokens (4000 in the messages, 1000 in the completion). Please reduce the length of the messages or completion.")).toBe("context");
    expect(vllm.classifyError(400, "'max_tokens' or 'max_completion_tokens' is too large: 1000. This model's maximum context length is 2048 tokens and your request has 1500 input tokens (1000 > 2048 - 1500).")).toBe("context");
    expect(vllm.classifyError(400, "The decoder prompt (length 5000) is longer than the maximum model length of 4096. Make sure that `max_model_len` is no smaller than the number of text tokens.")).toBe("context");
    expect(vllm.classifyError(404, "The model `gpt-4` does not exist.")).toBe("config");
    expect(vllm.classifyError(400, '"auto" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set')).toBe("config");
    expect(vllm.classifyError(500, "EngineCore encountered an issue.")).toBe("transient");
    expect(vllm.classifyError(503, "Service Unavailable")).toBe("transient");
    // past --max-queued-requests: full, not down
    expect(vllm.classifyError(503, "The request queue is full.")).toBe("overload");

    expect(sglang.classifyError(400, "The input (5000 tokens) is longer than the model's context length (4096 tokens).")).toBe("context");
    expect(sglang.classifyError(400, "Requested token count exceeds the model's maximum context length of 4096 tokens. You requested a total of 5000 tokens.")).toBe("context");

    expect(tgi.classifyError(422, "Input validation error: `inputs` tokens + `max_new_tokens` must be <= 8192. Given: 8000 `inputs` tokens and 512 `max_new_tokens`")).toBe("context");
    expect(tgi.classifyError(422, "Input validation error: `inputs` must have less than 8191 tokens. Given: 9000")).toBe("context");
    expect(tgi.classifyError(422, "Input validation error: `temperature` must be strictly positive")).toBe("config");
    expect(tgi.classifyError(422, "Tool error: Grammar and tools are mutually exclusive")).toBe("config");
    expect(tgi.classifyError(429, "Model is overloaded")).toBe("overload");
    expect(tgi.classifyError(424, "Request failed during generation: Server error: CUDA out of memory")).toBe("transient");

    for (const d of [vllm, sglang, llamacpp, tgi, openai]) {
      expect(d.classifyError(413, "Payload Too Large")).toBe("context");
      expect(d.classifyError(408, "Request Timeout")).toBe("transient");
      expect(d.classifyError(502, "Bad Gateway")).toBe("transient");
      expect(d.classifyError(401, "Unauthorized")).toBe("config");
    }
  });

  test("llm dialect - hosted APIs' errors: context, rate limits, spent quotas, overload", () => {
    expect(openai.classifyError(400, "This model's maximum context length is 8192 tokens. However, your messages resulted in 9000 tokens. Please reduce the length of the messages.")).toBe("context");
    expect(openai.classifyError(400, "The input (250000 tokens) is longer than the model's context length (200000 tokens).")).toBe("context");
    expect(openai.classifyError(429, "Rate limit reached for gpt-4o in organization org-x on tokens per min (TPM): Limit 30000, Used 29000, Requested 2000. Please try again in 2s.")).toBe("overload");
    expect(openai.classifyError(429, "Request too large for gpt-4o in organization org-x on tokens per min (TPM): Limit 30000, Requested 45000. The input or output tokens must be reduced in order to run successfully.")).toBe("context");
    expect(openai.classifyError(429, "You exceeded your current quota, please check your plan and billing details.")).toBe("config");
    expect(openai.classifyError(503, "The engine is currently overloaded, please try again later")).toBe("overload");
    expect(openai.classifyError(500, "The server had an error while processing your request.")).toBe("transient");
    expect(openai.classifyError(404, "The model `gpt-9` does not exist or you do not have access to it.")).toBe("config");
  });

  test("llm dialect - rate-limit durations as hosted APIs write them", () => {
    const cases: [string, number | undefined][] = [
      ["1s", 1000],
      ["6m0s", 360_000],
      ["20ms", 20],
      ["1h2m3.5s", 3_723_500],
      ["59.56s", 59_560],
      ["2", 2000],
      ["0s", 0],
      ["soon", undefined],
      ["1x", undefined],
      ["", undefined],
    ];
    for (const [text, ms] of cases) expect([text, parseDuration(text)]).toEqual([text, ms]);
  });

  test("llm dialect - rate-limit headers of OpenAI, Together, Fireworks and OpenRouter", () => {
    const now = 1_750_000_000_000;
    const openaiHeaders = new Headers({
      "x-ratelimit-limit-requests": "5000",
      "x-ratelimit-remaining-requests": "4999",
      "x-ratelimit-reset-requests": "12ms",
      "x-ratelimit-limit-tokens": "160000",
      "x-ratelimit-remaining-tokens": "159976",
      "x-ratelimit-reset-tokens": "6m0s",
    });
    expect(openai.readRateLimit?.(openaiHeaders, now)).toEqual({
      limitRequests: 5000,
      remainingRequests: 4999,
      resetRequestsMs: 12,
      limitTokens: 160_000,
      remainingTokens: 159_976,
      resetTokensMs: 360_000,
    });
    const together = new Headers({ "x-ratelimit-limit": "600", "x-ratelimit-remaining": "0", "x-ratelimit-reset": "2", "x-tokenlimit-limit": "180000", "x-tokenlimit-remaining": "1000" });
    expect(readRateLimitHeaders(together, now)).toEqual({ limitRequests: 600, remainingRequests: 0, resetRequestsMs: 2000, limitTokens: 180_000, remainingTokens: 1000 });
    const fireworks = new Headers({
      "x-ratelimit-limit-requests": "60",
      "x-ratelimit-remaining-requests": "59",
      "x-ratelimit-limit-tokens-prompt": "60000",
      "x-ratelimit-remaining-tokens-prompt": "50000",
      "x-ratelimit-limit-tokens-generated": "6000",
      "x-ratelimit-remaining-tokens-generated": "600",
    });
    expect(readRateLimitHeaders(fireworks, now)).toEqual({ limitRequests: 60, remainingRequests: 59, limitTokens: 6000, remainingTokens: 600 });
    // OpenRouter: its reset is an epoch in milliseconds
    const openrouter = new Headers({ "X-RateLimit-Limit": "20", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": String(now + 5000) });
    expect(readRateLimitHeaders(openrouter, now)).toEqual({ limitRequests: 20, remainingRequests: 0, resetRequestsMs: 5000 });
    expect(readRateLimitHeaders(new Headers({ "content-type": "application/json" }), now)).toBeUndefined();
    expect(readRateLimitHeaders(new Headers({ "x-ratelimit-remaining-requests": "lots" }), now)).toBeUndefined();
  });

  test("llm dialect - a server's kind from each kind's own answers", () => {
    const base = "http://127.0.0.1:8080/v1";
    expect(detectKind({ baseUrl: base, models: fixtureJson("models.json") })).toEqual({ kind: "llamacpp", why: "/v1/models owned_by llamacpp" });
    expect(detectKind({ baseUrl: base, props: fixtureJson("props.json") })).toEqual({ kind: "llamacpp", why: "/props total_slots" });
    expect(detectKind({ baseUrl: base, metrics: fixture("metrics.txt") }).kind).toBe("llamacpp");
    const vllmModels = { object: "list", data: [{ id: "m", object: "model", owned_by: "vllm", max_model_len: 4096 }] };
    expect(detectKind({ baseUrl: base, models: vllmModels })).toEqual({ kind: "vllm", why: "/v1/models owned_by vllm" });
    // matrixd's simulator says itself and speaks vLLM
    expect(detectKind({ baseUrl: base, models: { object: "list", data: [{ id: "m", owned_by: "matrixd" }] } }).kind).toBe("vllm");
    expect(detectKind({ baseUrl: base, models: { data: [{ id: "m", owned_by: "sglang" }] } }).kind).toBe("sglang");
    expect(detectKind({ baseUrl: base, serverInfo: { model_path: "m", tp_size: 1, max_total_num_tokens: 20480, version: "0.5.4" } }).kind).toBe("sglang");
    // TGI's model list names the model as its owner: its /info tells it
    const tgiModels = { object: "list", data: [{ id: "meta-llama/Llama-3.1-8B-Instruct", owned_by: "meta-llama/Llama-3.1-8B-Instruct" }] };
    expect(detectKind({ baseUrl: base, models: tgiModels, info: { model_id: "meta-llama/Llama-3.1-8B-Instruct", max_concurrent_requests: 128 } }).kind).toBe("tgi");
    expect(detectKind({ baseUrl: base, metrics: VLLM_TEXT })).toEqual({ kind: "vllm", why: "/metrics names vllm:*" });
    expect(detectKind({ baseUrl: base, metrics: SGLANG_TEXT }).kind).toBe("sglang");
    expect(detectKind({ baseUrl: base, metrics: TGI_TEXT }).kind).toBe("tgi");
    // nothing of any kind's own
    const hosted = { object: "list", data: [{ id: "gpt-4o", owned_by: "system" }, { id: "gpt-4o-mini", owned_by: "openai" }] };
    expect(detectKind({ baseUrl: "https://api.openai.com/v1", models: hosted }).kind).toBe("openai");
    expect(detectKind({ baseUrl: "https://api.together.xyz/v1" }).kind).toBe("openai");
    expect(detectKind({ baseUrl: "https://localhost:8443/v1" }).kind).toBe("vllm");
    expect(detectKind({ baseUrl: "http://10.0.0.5:8000/v1", models: { data: [{ id: "x", owned_by: "library" }] } }).kind).toBe("vllm");
    expect(detectKind({ baseUrl: "not a url" }).kind).toBe("vllm");
  });
});

type Route = (req: Request) => Response | Promise<Response>;
const servers: { stop: (closeActiveConnections?: boolean) => Promise<void> }[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) await s.stop(true);
});

/** A local server answering `routes` (404 elsewhere), and the requests it had. */
function serve(routes: Record<string, Route>) {
  const hits: { path: string; authorization: string | null }[] = [];
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch(req) {
      const path = new URL(req.url).pathname;
      hits.push({ path, authorization: req.headers.get("authorization") });
      const route = routes[path];
      return route ? route(req) : new Response("Not Found", { status: 404 });
    },
  });
  servers.push(server);
  return { base: `http://127.0.0.1:${server.port}/v1`, hits, server };
}

const json = (name: string): Route => () => new Response(fixture(name), { headers: { "content-type": "application/json" } });

describe("llm dialect probes", () => {
  test("llm dialect - probeKind finds a llama.cpp b4748 from its real answers over HTTP", async () => {
    const s = serve({
      "/v1/models": json("models.json"),
      "/props": json("props.json"),
      "/health": json("health.json"),
      "/metrics": () => new Response(fixture("metrics.txt"), { headers: { "content-type": "text/plain; version=0.0.4" } }),
    });
    const found = await probeKind(s.base, { headers: { authorization: "Bearer k" } });
    expect(found).toEqual({
      kind: "llamacpp",
      why: "/v1/models owned_by llamacpp",
      info: { slots: 2, contextTokens: 2048, version: "b4748-c392e5094" },
      models: ["tiny.gguf"],
      answered: true,
    });
    // every route asked once, with the endpoint's key
    const paths = s.hits.map((h) => h.path).sort();
    expect(paths).toEqual(["/get_server_info", "/info", "/metrics", "/props", "/v1/models"]);
    expect(s.hits.every((h) => h.authorization === "Bearer k")).toBe(true);
  });

  test("llm dialect - probeKind finds a vLLM and its context, a TGI and its admission cap", async () => {
    const v = serve({
      "/v1/models": () => Response.json({ object: "list", data: [{ id: "Qwen/Qwen3-8B", object: "model", owned_by: "vllm", max_model_len: 40960 }] }),
      "/metrics": () => new Response(VLLM_TEXT),
    });
    expect(await probeKind(v.base)).toEqual({ kind: "vllm", why: "/v1/models owned_by vllm", info: { contextTokens: 40960 }, models: ["Qwen/Qwen3-8B"], answered: true });
    const t = serve({
      "/v1/models": () => Response.json({ object: "list", data: [{ id: "tgi-model", object: "model", owned_by: "tgi-model" }] }),
      "/info": () => Response.json({ model_id: "tgi-model", max_concurrent_requests: 128, max_input_tokens: 4095, max_total_tokens: 4096, router: "text-generation-router", version: "3.3.6" }),
      // a catch-all HTML page where JSON was expected tells nothing
      "/props": () => new Response("<html>hi</html>", { headers: { "content-type": "text/html" } }),
    });
    expect(await probeKind(t.base)).toEqual({
      kind: "tgi",
      why: "/info model_id, max_concurrent_requests",
      info: { maxRequests: 128, contextTokens: 4096, version: "3.3.6" },
      models: ["tgi-model"],
      answered: true,
    });
  });

  test("llm dialect - probeKind never throws: a route that hangs times out, a server that is not up answers nothing", async () => {
    const s = serve({
      "/v1/models": () => Response.json({ data: [{ id: "m", owned_by: "llamacpp" }] }),
      "/props": json("props.json"),
      // llama.cpp with every HTTP thread busy: /metrics does not answer
      "/metrics": () => new Promise<Response>(() => {}),
    });
    const t0 = performance.now();
    const found = await probeKind(s.base, { timeoutMs: 200 });
    expect(performance.now() - t0).toBeLessThan(2000);
    expect(found.kind).toBe("llamacpp");
    expect(found.info.slots).toBe(2);

    const gone = serve({});
    const url = gone.base;
    await gone.server.stop(true);
    const nothing = await probeKind(url, { timeoutMs: 500 });
    expect(nothing.answered).toBe(false);
    expect(nothing.info).toEqual({});
    expect(nothing.models).toBeUndefined();

    // the caller's signal stops it too
    const ctl = new AbortController();
    ctl.abort();
    const stopped = await probeKind(s.base, { signal: ctl.signal });
    expect(stopped.answered).toBe(false);
  });

  test("llm dialect - probeKind goes through the fetch it is given", async () => {
    const asked: string[] = [];
    const found = await probeKind("https://api.example.com/v1", {
      fetch: async (url) => {
        asked.push(url);
        return url.endsWith("/v1/models") ? Response.json({ data: [{ id: "gpt-4o", owned_by: "system" }] }) : new Response("no", { status: 404 });
      },
    });
    expect(found).toEqual({ kind: "openai", why: "/v1/models owned_by system", info: {}, models: ["gpt-4o"], answered: true });
    expect(asked.sort()).toEqual([
      "https://api.example.com/get_server_info",
      "https://api.example.com/info",
      "https://api.example.com/metrics",
      "https://api.example.com/props",
      "https://api.example.com/v1/models",
    ]);
  });
});
