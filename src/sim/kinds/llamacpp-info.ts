import { PromText, simSeries } from "../metrics.ts";
import type { SimLive } from "./types.ts";

/**
 * llama.cpp b4748's info routes (/props, /v1/models, /metrics), shaped as
 * the captured answers in test/fixtures/llama.cpp-b4748 and
 * examples/server/server.cpp of that build.
 */

/** The build the sim imitates, as it names itself in answers. */
export const BUILD_INFO = "b4748-c392e5094";

/** A double as C++'s `ostream << double` writes it (%g, 6 significant digits): 1.41633e+06, 0.144958, 30748. */
export function cppDouble(v: number): string {
  if (!Number.isFinite(v)) return v > 0 ? "inf" : v < 0 ? "-inf" : "nan";
  if (v === 0) return "0";
  const exp = Math.floor(Math.log10(Math.abs(Number(v.toPrecision(6)))));
  if (exp < -4 || exp >= 6) {
    const [m, e] = v.toExponential(5).split("e");
    const mant = m!.includes(".") ? m!.replace(/0+$/, "").replace(/\.$/, "") : m!;
    const n = Number(e);
    return `${mant}e${n < 0 ? "-" : "+"}${String(Math.abs(n)).padStart(2, "0")}`;
  }
  const s = v.toPrecision(6);
  return s.includes(".") ? s.replace(/0+$/, "").replace(/\.$/, "") : s;
}

const PARAMS = {
  n_predict: -1,
  seed: 4294967295,
  temperature: 0.800000011920929,
  dynatemp_range: 0.0,
  dynatemp_exponent: 1.0,
  top_k: 40,
  top_p: 0.949999988079071,
  min_p: 0.05000000074505806,
  xtc_probability: 0.0,
  xtc_threshold: 0.10000000149011612,
  typical_p: 1.0,
  repeat_last_n: 64,
  repeat_penalty: 1.0,
  presence_penalty: 0.0,
  frequency_penalty: 0.0,
  dry_multiplier: 0.0,
  dry_base: 1.75,
  dry_allowed_length: 2,
  dry_penalty_last_n: 4096,
  dry_sequence_breakers: ["\n", ":", '"', "*"],
  mirostat: 0,
  mirostat_tau: 5.0,
  mirostat_eta: 0.10000000149011612,
  stop: [],
  max_tokens: -1,
  n_keep: 0,
  n_discard: 0,
  ignore_eos: false,
  stream: true,
  logit_bias: [],
  n_probs: 0,
  min_keep: 0,
  grammar: "",
  grammar_trigger_words: [],
  grammar_trigger_tokens: [],
  preserved_tokens: [],
  chat_format: "Content-only",
  samplers: ["penalties", "dry", "top_k", "typ_p", "top_p", "min_p", "xtc", "temperature"],
  "speculative.n_max": 16,
  "speculative.n_min": 0,
  "speculative.p_min": 0.75,
  timings_per_token: false,
  post_sampling_probs: false,
  lora: [],
};

/** A ChatML template with tool support, standing in for the model's own. */
const CHAT_TEMPLATE =
  "{%- for message in messages %}{{- '<|im_start|>' + message.role + '\\n' + (message.content or '') + '<|im_end|>\\n' }}{%- endfor %}" +
  "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}\n";

/** GET /props: `total_slots` = slots, `default_generation_settings.n_ctx` = the per-slot context. */
export function props(live: SimLive): Record<string, unknown> {
  const o = live.o;
  return {
    default_generation_settings: {
      id: 0,
      id_task: -1,
      n_ctx: o.contextTokens,
      speculative: false,
      is_processing: false,
      non_causal: false,
      params: PARAMS,
      prompt: "",
      next_token: { has_next_token: true, has_new_line: false, n_remain: -1, n_decoded: 0, stopping_word: "" },
    },
    total_slots: o.slots,
    model_path: o.model,
    chat_template: CHAT_TEMPLATE,
    bos_token: "<s>",
    eos_token: "<|im_end|>",
    build_info: BUILD_INFO,
  };
}

/** GET /v1/models (and /models): the GGUF file's id, owned_by "llamacpp", its metadata. */
export function models(live: SimLive): Record<string, unknown> {
  const o = live.o;
  return {
    object: "list",
    data: [
      {
        id: o.model,
        object: "model",
        created: Math.floor(Date.now() / 1000),
        owned_by: "llamacpp",
        meta: { vocab_type: 2, n_vocab: 151936, n_ctx_train: Math.max(o.contextTokens, 32768), n_embd: 4096, n_params: 7615616512, size: 4683073536 },
      },
    ],
  };
}

/** GET /metrics with --metrics: the series, HELP texts, types and order of the build, values printed as C++ does. */
export function metricsText(live: SimLive): string {
  const o = live.o;
  const e = live.engine();
  // prefill at prefillTps tokens per virtual second, time-scaled to wall seconds
  const promptSeconds = (e.promptTokens / o.prefillTps) * o.timeScale;
  const busySlotSeconds = e.runningSeconds * o.slots;
  const usage = e.running / o.slots;
  const rows: [string, string, string, number][] = [
    ["prompt_tokens_total", "counter", "Number of prompt tokens processed.", e.promptTokens],
    ["prompt_seconds_total", "counter", "Prompt process time", promptSeconds],
    ["tokens_predicted_total", "counter", "Number of generation tokens processed.", e.generationTokens],
    ["tokens_predicted_seconds_total", "counter", "Predict process time", Math.max(0, busySlotSeconds - promptSeconds)],
    ["n_decode_total", "counter", "Total number of llama_decode() calls", e.steps],
    // every step gives each running sequence one token: busy slots per call = tokens / calls
    ["n_busy_slots_per_decode", "counter", "Average number of busy slots per llama_decode() call", e.generationTokens / Math.max(e.steps, 1)],
    // per-bucket throughputs that this build leaves at 0 (see metrics-under-load.txt)
    ["prompt_tokens_seconds", "gauge", "Average prompt throughput in tokens/s.", 0],
    ["predicted_tokens_seconds", "gauge", "Average generation throughput in tokens/s.", 0],
    ["kv_cache_usage_ratio", "gauge", "KV-cache usage. 1 means 100 percent usage.", usage],
    ["kv_cache_tokens", "gauge", "KV-cache tokens.", Math.round(usage * o.slots * o.contextTokens)],
    ["requests_processing", "gauge", "Number of requests processing.", e.running],
    ["requests_deferred", "gauge", "Number of requests deferred.", e.waiting],
  ];
  let out = "";
  for (const [name, type, help, value] of rows) {
    out += `# HELP llamacpp:${name} ${help}\n# TYPE llamacpp:${name} ${type}\nllamacpp:${name} ${cppDouble(value)}\n`;
  }
  if (!o.simMetrics) return out;
  const p = new PromText();
  simSeries(p, live);
  return out + p.text();
}
