/**
 * The simulated GPU LLM server (`matrixd sim-llm`): an OpenAI-compatible chat
 * completions server with vLLM's metrics, a continuous-batching capacity
 * model and deterministic answers.
 */
export { SimOptionsSchema, ceilingTps, resolveSimOptions } from "./options.ts";
export type { ResolvedSimOptions, SimOptions } from "./options.ts";
export { startSim } from "./server.ts";
export type { SimServer, SimStats } from "./server.ts";
export { startSimFleet } from "./fleet.ts";
export { SimEngine, SeqState } from "./engine.ts";
export type { EngineClock, EngineCounters, SeqInput, SimSeq } from "./engine.ts";
export { builtinSkills } from "./skills/index.ts";
export type { Skill, SkillAnswer, SkillInput } from "./skills/types.ts";
