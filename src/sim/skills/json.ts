import { pick } from "../hash.ts";
import { Rng } from "../../util/hash.ts";
import { ARG_WORDS } from "../words.ts";
import { sampleRegex } from "./regex.ts";
import { plainWords, spacedJson, valueFor } from "./schema.ts";
import { lastTextOfRole, type Skill, type SkillInput } from "./types.ts";

const SALT_JSON = 301;
const SALT_CHOICE = 302;

/**
 * An answer in the form the server enforces: a JSON value fitting the
 * schema, `{"answer": word}` for a bare JSON object, a string matching the
 * regex, or one of the choices. It reads only `input.constraint`, which the
 * server kind extracted from its own request fields: a field that kind
 * ignores never reaches here, and the answer is what it would be without it.
 */
export const jsonFormatSkill: Skill = {
  name: "json-format",
  answer(input: SkillInput) {
    const c = input.constraint;
    if (!c) return undefined;
    const rng = new Rng(input.hash ^ SALT_JSON);
    switch (c.type) {
      case "json_schema": {
        const words = plainWords(lastTextOfRole(input, "user") ?? "");
        return { kind: "exact", text: spacedJson(valueFor(c.schema, { rng, words })) };
      }
      case "json_object":
        return { kind: "exact", text: spacedJson({ answer: ARG_WORDS[rng.below(ARG_WORDS.length)] }) };
      case "regex": {
        const text = sampleRegex(c.pattern, rng);
        return text === undefined ? undefined : { kind: "exact", text };
      }
      case "choice":
        return c.choices.length > 0 ? { kind: "exact", text: c.choices[pick(input.hash, SALT_CHOICE, c.choices.length)]! } : undefined;
    }
  },
};
