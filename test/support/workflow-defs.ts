import { loadDefinition, WorkflowError } from "../../src/workflow/index.ts";

/** Workflow definitions the tests of carried workflows submit. */

/** Code roles only: it runs with no LLM. */
export const COUNTER_YAML = `
name: counter
description: counts to the seed's n, one step at a time
seed: { type: object, properties: { n: { type: integer, minimum: 0, maximum: 50 } }, required: [n] }
options: { label: a }
vars: { i: 0 }
start: step
roles:
  step:
    kind: code
    set: { i: "vars.i + 1" }
    next:
      - { if: "vars.i >= seed.n", then: end }
      - { then: step }
output: { n: "seed.n", i: "vars.i", label: "options.label" }
metrics: { steps: "vars.i" }
`;

/** Three problems: an expression that does not compile, a role and a start that do not exist. */
export const BROKEN = {
  name: "broken",
  seed: { type: "object" },
  start: "nowhere",
  roles: { a: { kind: "code", set: { x: "vars.y +" }, next: "b" } },
  output: { x: "vars.x" },
};

/** The problems every node names for a definition. */
export function problemsOf(raw: unknown): string[] {
  try {
    loadDefinition(raw);
  } catch (err) {
    if (err instanceof WorkflowError) return err.problems;
    throw err;
  }
  throw new Error("the definition has no problem");
}
