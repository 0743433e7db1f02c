import { coralDialogueSkill, coralExtractSkill } from "./coral.ts";
import { jsonFormatSkill } from "./json.ts";
import { reasoningExtractSkills } from "./reasoning-extract.ts";
import { toolUseSkills } from "./tool-use.ts";
import { toolCallSkill } from "./tools.ts";
import type { Skill } from "./types.ts";

/**
 * The skills of the simulated model, in the order they are tried: the first
 * whose `answer` returns something answers the request; when none does, the
 * answer is generic filler text. Add a skill by writing it in its own file
 * here and listing it below, narrowest match first.
 */
export const builtinSkills: readonly Skill[] = [
  ...reasoningExtractSkills,
  ...toolUseSkills,
  coralExtractSkill,
  toolCallSkill,
  coralDialogueSkill,
  jsonFormatSkill,
];
