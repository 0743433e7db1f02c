import { pick, uniform } from "../hash.ts";
import { Rng } from "../../util/hash.ts";
import type { SimTool } from "../request.ts";
import { objectFor, plainWords, requiredOf, spacedJson } from "./schema.ts";
import { lastTextOfRole, type Skill, type SkillInput, type SkillAnswer } from "./types.ts";

/**
 * Tool calls: when tools are offered (and the last message is not a tool
 * result), the model calls one at `toolCallRate`, and at `badToolCallRate`
 * of those it calls badly (unknown tool, arguments that are not JSON, or a
 * required argument missing), so agents' error paths run too.
 */

const SALT_CALL = 201;
const SALT_TOOL = 202;
const SALT_BAD = 203;
const SALT_BAD_KIND = 204;
const SALT_ARGS = 205;
const SALT_DROP = 206;

/** The name a bad call uses for a tool that does not exist. */
export const UNKNOWN_TOOL_NAME = "no_such_tool";

export const toolCallSkill: Skill = {
  name: "tool-call",
  answer(input: SkillInput) {
    const { body, hash: h, options } = input;
    const tools = body.tools;
    if (!tools || tools.length === 0) return undefined;
    const choice = body.tool_choice;
    if (choice === "none") return undefined;
    if (body.messages[body.messages.length - 1]?.role === "tool") return undefined;
    let tool: SimTool | undefined;
    if (typeof choice === "object" && choice !== null) {
      tool = tools.find((t) => t.function.name === choice.function.name);
    } else if (choice !== "required" && uniform(h, SALT_CALL) >= options.toolCallRate) {
      return undefined;
    }
    tool ??= tools[pick(h, SALT_TOOL, tools.length)]!;
    return callOf(input, tool, uniform(h, SALT_BAD) < options.badToolCallRate);
  },
};

function callOf(input: SkillInput, tool: SimTool, bad: boolean): SkillAnswer {
  const h = input.hash;
  const params = tool.function.parameters ?? { type: "object", properties: {} };
  const words = plainWords(lastTextOfRole(input, "user") ?? "");
  const args = objectFor(params, { rng: new Rng(h ^ SALT_ARGS), words });
  const name = tool.function.name;
  if (!bad) return { kind: "tool", name, arguments: spacedJson(args) };
  const required = requiredOf(params).filter((r) => r in args);
  const kind = pick(h, SALT_BAD_KIND, 3);
  const taken = new Set((input.body.tools ?? []).map((t) => t.function.name));
  if (kind === 0 && !taken.has(UNKNOWN_TOOL_NAME)) {
    return { kind: "tool", name: UNKNOWN_TOOL_NAME, arguments: spacedJson(args) };
  }
  if (kind === 2 && required.length > 0) {
    const { [required[pick(h, SALT_DROP, required.length)]!]: _dropped, ...rest } = args;
    return { kind: "tool", name, arguments: spacedJson(rest) };
  }
  const json = spacedJson(args);
  return { kind: "tool", name, arguments: json.slice(0, -1) };
}
