import { Rng } from "../hash.ts";
import { ARG_WORDS } from "../words.ts";
import { plainWords, spacedJson, valueFor } from "./schema.ts";
import { lastTextOfRole, type Skill, type SkillInput } from "./types.ts";

const SALT_JSON = 301;

/**
 * A JSON answer when the request asks for one through `response_format`:
 * a value fitting the given schema, or `{"answer": word}` for json_object.
 */
export const jsonFormatSkill: Skill = {
  name: "json-format",
  answer(input: SkillInput) {
    const fmt = input.body.response_format;
    if (!fmt || fmt.type === "text") return undefined;
    const rng = new Rng(input.hash ^ SALT_JSON);
    const schema = fmt.type === "json_schema" ? fmt.json_schema?.schema : undefined;
    if (schema) {
      const words = plainWords(lastTextOfRole(input, "user") ?? "");
      return { kind: "exact", text: spacedJson(valueFor(schema, { rng, words })) };
    }
    return { kind: "exact", text: spacedJson({ answer: ARG_WORDS[rng.below(ARG_WORDS.length)] }) };
  },
};
