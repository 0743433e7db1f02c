/**
 * The simulated GPU LLM server (`matrixd sim-llm`): an OpenAI-compatible chat
 * completions server with a continuous-batching capacity model and
 * deterministic answers, speaking the protocol of vLLM, SGLang, llama.cpp,
 * TGI or a hosted OpenAI-style API (its metrics, info routes, errors,
 * fields and limits).
 */
export { SIM_KINDS, SimOptionsSchema, ceilingTps, resolveSimOptions } from "./options.ts";
export type { ResolvedSimOptions, SimKind, SimOptions } from "./options.ts";
export { startSim } from "./server.ts";
export type { SimServer, SimStats } from "./server.ts";
export { startSimFleet } from "./fleet.ts";
export { SimEngine, SeqState } from "./engine.ts";
export type { EngineClock, EngineCounters, SeqInput, SimSeq } from "./engine.ts";
export { MATCH_IN, SimScript } from "./script.ts";
export type { ScriptedReply } from "./script.ts";
export { builtinSkills } from "./skills/index.ts";
export type { OutputConstraint, Skill, SkillAnswer, SkillInput } from "./skills/types.ts";
