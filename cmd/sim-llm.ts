import { ConfigError, UsageError, describe } from "../src/errors.ts";
import { startSimFleet } from "../src/sim/fleet.ts";
import { SCHEDULING_POLICIES, SIM_KINDS, type SimOptions } from "../src/sim/options.ts";
import type { SimServer } from "../src/sim/server.ts";
import { intFlag, numFlag, parseCommand } from "./args.ts";
import { handleSignals } from "./signals.ts";

export const SIM_LLM_HELP = `matrixd sim-llm: a simulated GPU LLM server (OpenAI chat completions, as vLLM, SGLang, llama.cpp, TGI or a hosted API speak it)

usage: matrixd sim-llm --port N [options]

  --kind K              server to impersonate: vllm, sglang, llamacpp, tgi, openai (default vllm)
  --port N              first port (0 = a random port for each server; default 0)
  --servers K           servers in this process, on ports N..N+K-1 (default 1)
  --host H              address to listen on (default 127.0.0.1)
  --model M             model name served (default sim-llm)
  --slots S             sequences decoded at once (default 256)
  --decode-tps T        ceiling in tokens/s of wall time (sets the time scale)
  --time-scale X        wall ms per virtual ms (default 0.05)
  --step-base-ms MS     cost of one decode step (default 25)
  --step-per-seq-ms MS  extra cost per running sequence (default 0.15)
  --prefill-tps T       prompt tokens per virtual second (default 50000)
  --len-median N        median output tokens (default 120)
  --len-sigma S         lognormal sigma of output length (default 1.0)
  --max-len N           output token cap (default 4096)
  --accuracy P          dialogue: chance of the correct option (default 0.7)
  --agree-rate P        dialogue: chance of adopting the peer's answer (default 0.5)
  --unsure-rate P       dialogue: chance of "not sure" (default 0.08)
  --tool-call-rate P    chance of a tool call when tools are offered (default 0.6)
  --bad-tool-call-rate P  chance that a tool call is malformed (default 0.05)
  --error-rate P        share of requests answered 500 (default 0)
  --rate-limit-rate P   share of requests answered 429 (default 0)
  --die-after SEC       exit with code 3 after SEC seconds (default: never)
  --sim-script FILE     scripted replies: a YAML or JSON list of rules tried in order before the
                        built-in answers (match, system, model, turn, every, share; text, json,
                        tool_call or error); checked when the server starts (see README)
  --no-prefix-cache     no prefix caching
  --scheduling-policy P fcfs, or priority: waiting requests go by their "priority" field, as with
                        vLLM's --scheduling-policy priority (lower first) or SGLang's
                        --enable-priority-scheduling (higher first, with preemption); vllm and sglang
                        kinds only (default fcfs)
  --context-tokens N    context per sequence: prompt (+ max_tokens where the kind counts it) (default 131072)
  --reasoning           a reasoning model: answers carry thinking, as the kind returns it
  --api-key KEY         requests must carry "Authorization: Bearer KEY" (as the kind checks it)
  --no-sim-metrics      /metrics without the sim:* series (openai: no /metrics at all)
  --no-metrics          llamacpp: /metrics answers 501, as without llama-server's --metrics
  --no-jinja            llamacpp: requests with tools are refused, as without --jinja
  --http-threads N      llamacpp: HTTP requests handled at once, on every route (default slots + 2)
  --max-concurrent-requests N  tgi: past N in flight, 429 "Model is overloaded" (default 128)
  --rpm N               openai: requests per minute (default: no limit)
  --tpm N               openai: tokens per minute (default: no limit)
  --help                this text

Prints one line per server, then runs until SIGINT or SIGTERM.`;

const FLAGS = {
  port: { type: "string" },
  servers: { type: "string" },
  host: { type: "string" },
  model: { type: "string" },
  slots: { type: "string" },
  "decode-tps": { type: "string" },
  "time-scale": { type: "string" },
  "step-base-ms": { type: "string" },
  "step-per-seq-ms": { type: "string" },
  "prefill-tps": { type: "string" },
  "len-median": { type: "string" },
  "len-sigma": { type: "string" },
  "max-len": { type: "string" },
  accuracy: { type: "string" },
  "agree-rate": { type: "string" },
  "unsure-rate": { type: "string" },
  "tool-call-rate": { type: "string" },
  "bad-tool-call-rate": { type: "string" },
  "error-rate": { type: "string" },
  "rate-limit-rate": { type: "string" },
  "die-after": { type: "string" },
  "sim-script": { type: "string" },
  "no-prefix-cache": { type: "boolean" },
  kind: { type: "string" },
  "scheduling-policy": { type: "string" },
  "context-tokens": { type: "string" },
  reasoning: { type: "boolean" },
  "api-key": { type: "string" },
  "no-sim-metrics": { type: "boolean" },
  "no-metrics": { type: "boolean" },
  "no-jinja": { type: "boolean" },
  "http-threads": { type: "string" },
  "max-concurrent-requests": { type: "string" },
  rpm: { type: "string" },
  tpm: { type: "string" },
  help: { type: "boolean", short: "h" },
} as const;

/** Numeric flags and the option each sets. */
const NUMERIC: [flag: keyof typeof FLAGS, option: keyof SimOptions][] = [
  ["slots", "slots"],
  ["decode-tps", "decodeTps"],
  ["time-scale", "timeScale"],
  ["step-base-ms", "stepBaseMs"],
  ["step-per-seq-ms", "stepPerSeqMs"],
  ["prefill-tps", "prefillTps"],
  ["len-median", "lenMedian"],
  ["len-sigma", "lenSigma"],
  ["max-len", "maxLen"],
  ["accuracy", "accuracy"],
  ["agree-rate", "agreeRate"],
  ["unsure-rate", "unsureRate"],
  ["tool-call-rate", "toolCallRate"],
  ["bad-tool-call-rate", "badToolCallRate"],
  ["error-rate", "errorRate"],
  ["rate-limit-rate", "rateLimitRate"],
  ["context-tokens", "contextTokens"],
  ["http-threads", "httpThreads"],
  ["max-concurrent-requests", "maxConcurrentRequests"],
  ["rpm", "rpm"],
  ["tpm", "tpm"],
];

/** Boolean flags that turn an option off (or on) */
const SWITCHES: [flag: keyof typeof FLAGS, option: keyof SimOptions, value: boolean][] = [
  ["no-prefix-cache", "prefixCache", false],
  ["no-sim-metrics", "simMetrics", false],
  ["no-metrics", "metrics", false],
  ["no-jinja", "jinja", false],
  ["reasoning", "reasoning", true],
];

/** Options from the command line; throws UsageError naming a bad flag. */
function optionsFrom(argv: string[]): { opts: SimOptions; servers: number; dieAfter: number } | "help" {
  const { values } = parseCommand("sim-llm", argv, FLAGS);
  if (values.help) return "help";
  const opts: Record<string, unknown> = {};
  for (const [flag, option] of NUMERIC) {
    const v = numFlag(flag, values[flag] as string | undefined);
    if (v !== undefined) opts[option] = v;
  }
  const port = intFlag("port", values.port, 0);
  if (port !== undefined) {
    if (port > 65535) throw new UsageError(`--port must be at most 65535, got "${values.port}"`);
    opts.port = port;
  }
  if (values.host !== undefined) opts.host = values.host;
  if (values.model !== undefined) opts.model = values.model;
  for (const [flag, option, value] of SWITCHES) if (values[flag]) opts[option] = value;
  if (values.kind !== undefined) {
    if (!(SIM_KINDS as readonly string[]).includes(values.kind)) throw new UsageError(`--kind must be one of ${SIM_KINDS.join(", ")}, got "${values.kind}"`);
    opts.kind = values.kind;
  }
  const policy = values["scheduling-policy"];
  if (policy !== undefined) {
    if (!(SCHEDULING_POLICIES as readonly string[]).includes(policy)) {
      throw new UsageError(`--scheduling-policy must be one of ${SCHEDULING_POLICIES.join(", ")}, got "${policy}"`);
    }
    opts.schedulingPolicy = policy;
  }
  if (values["api-key"] !== undefined) opts.apiKey = values["api-key"];
  if (values["sim-script"] !== undefined) {
    if (values["sim-script"] === "") throw new UsageError("--sim-script needs a file");
    opts.script = values["sim-script"];
  }
  const dieAfter = numFlag("die-after", values["die-after"]) ?? 0;
  if (dieAfter < 0) throw new UsageError(`--die-after must be 0 or more seconds, got "${values["die-after"]}"`);
  const servers = intFlag("servers", values.servers) ?? 1;
  return { opts: opts as SimOptions, servers, dieAfter };
}

/** The flag a bad option came from, for messages that name what the user typed. */
function flagOf(message: string): string {
  for (const [flag, option] of [...NUMERIC, ["scheduling-policy", "schedulingPolicy"] as const]) {
    if (message.includes(` "${option}":`)) return message.replace(` "${option}":`, ` --${flag}:`);
  }
  return message;
}

/**
 * `matrixd sim-llm`: starts the simulated servers, prints one line each,
 * runs until SIGINT or SIGTERM, then stops them. Returns the exit code: 0,
 * or 2 for a bad command line (with a line on stderr naming the flag).
 */
export async function simLlmMain(argv: string[]): Promise<number> {
  let servers: SimServer[];
  let dieAfter: number;
  try {
    const parsed = optionsFrom(argv);
    if (parsed === "help") {
      console.log(SIM_LLM_HELP);
      return 0;
    }
    dieAfter = parsed.dieAfter;
    servers = await startSimFleet(parsed.servers, parsed.opts);
  } catch (err) {
    if (err instanceof UsageError || err instanceof ConfigError) {
      console.error(`matrixd sim-llm: ${flagOf(describe(err))}`);
      return 2;
    }
    throw err;
  }
  for (const s of servers) {
    const o = s.options;
    console.log(
      `sim-llm listening on ${s.url} (model ${o.model}, slots ${o.slots}, ceiling ${Math.round(s.ceilingTps)} tok/s${o.kind === "vllm" ? "" : `, kind ${o.kind}`})`,
    );
  }
  let dieTimer: ReturnType<typeof setTimeout> | undefined;
  if (dieAfter > 0) {
    dieTimer = setTimeout(() => {
      console.error(`matrixd sim-llm: exiting after ${dieAfter} s as asked (--die-after)`);
      process.exit(3);
    }, dieAfter * 1000);
  }
  let offSignals = (): void => undefined;
  await new Promise<void>((resolve) => {
    offSignals = handleSignals({ graceful: () => resolve() });
  });
  if (dieTimer) clearTimeout(dieTimer);
  await Promise.all(servers.map((s) => s.stop()));
  offSignals();
  return 0;
}
