import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { ConfigError } from "../src/errors.ts";
import { loadPlugin } from "../src/plugin/registry.ts";
import { readRows, tempDir, writeLines } from "./support/files.ts";
import { matrixdBin, runProcess } from "./support/matrixd.ts";

/** Loading plugin files that do not build, and files that live outside the source tree, as a user's do. */

const tmp = tempDir("matrixd-plugin-");
let bin = "";
beforeAll(async () => {
  bin = await matrixdBin();
}, 120_000);
afterAll(() => tmp.remove());

/** The ConfigError loadPlugin throws for a file, or a failure when it loads. */
async function loadError(path: string): Promise<string> {
  try {
    await loadPlugin(path);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as Error).message;
  }
  throw new Error(`${path} loaded`);
}

/** A workflow with one role and no LLM, for the load tests: `head` is the file's imports. */
function oneRole(head: string, name: string, z = "z"): string {
  return `${head}
export default {
  name: "${name}",
  description: "test workflow",
  seedSchema: ${z}.looseObject({ word: ${z}.string() }),
  configSchema: ${z}.strictObject({}),
  roles: { say: { kind: "cpu", async run(state) { return { turns: [{ text: state.seed.word }] }; } } },
  start: () => ({ next: "say", vars: {} }),
  next: () => null,
  output: (state) => ({ output: { said: state.seed.word }, metrics: {} }),
};
`;
}

describe("plugin", () => {
  test("plugin - a file that does not build names each error with its file:line:column and message", async () => {
    const syntax = tmp.path("syntax.ts");
    writeFileSync(syntax, 'export default {\n  name: "x",\n  roles: { a: { kind: "cpu", run( } },\n};\n');
    const text = await loadError(syntax);
    const lines = text.split("\n");
    expect(lines[0]).toBe(`cannot load plugin ${syntax}: ${lines.length - 1} errors building it:`);
    expect(lines.length).toBeGreaterThan(2);
    expect(lines[1]).toBe(`  ${syntax}:3:35: Expected identifier but found "}"`);
    for (const l of lines.slice(1)) expect(l).toMatch(new RegExp(`^  ${syntax}:\\d+:\\d+: \\S`));

    // A syntax error in a file the plugin imports is shown at that file.
    const importer = tmp.path("importer.ts");
    writeFileSync(importer, 'import w from "./syntax.ts";\nexport default w;\n');
    expect((await loadError(importer)).split("\n")[1]).toBe(`  ${syntax}:3:35: Expected identifier but found "}"`);

    const one = tmp.path("one.ts");
    writeFileSync(one, "const n: number = ;\nexport default n;\n");
    expect(await loadError(one)).toBe(`cannot load plugin ${one}: ${one}:1:19: Unexpected ;`);

    const missing = tmp.path("missing.ts");
    writeFileSync(missing, 'import { z } from "zod";\nimport { helper } from "./helpers/none.ts";\nexport default helper(z);\n');
    expect(await loadError(missing)).toBe(`cannot load plugin ${missing}: ${missing}:2:24: cannot resolve "./helpers/none.ts" from ${missing}: no such file`);

    const pkg = tmp.path("package.ts");
    writeFileSync(pkg, oneRole('import { z } from "zod";\nimport { kebabCase } from "left-pad-and-more";\nconsole.log(kebabCase);', "pkg"));
    const why = await loadError(pkg);
    expect(why).toStartWith(`cannot load plugin ${pkg}: ${pkg}:2:27: cannot resolve "left-pad-and-more" from ${pkg}: no node_modules folder at or above ${tmp.dir} has it.`);
    expect(why).toContain("the factory form export default (api) => ... gets api.z (zod)");

    const thrower = tmp.path("thrower.ts");
    writeFileSync(thrower, 'const ready = false;\nif (!ready) throw new Error("not configured");\nexport default {};\n');
    expect(await loadError(thrower)).toMatch(new RegExp(`^cannot load plugin ${thrower}: ${thrower}:2:\\d+: not configured$`));
  });

  test("plugin - matrixd run --plugin with a file that does not build exits 2 showing the errors", async () => {
    writeFileSync(tmp.path("bad.ts"), 'export default {\n  name: "x",\n  roles: { a: { kind: "cpu", run( } },\n};\n');
    writeLines(tmp.path("s.jsonl"), [{ word: "hi" }]);
    const r = await runProcess([bin, "run", "--plugin", "bad.ts", "--workflow", "x", "--seeds", "s.jsonl", "--out", "o.jsonl"], { cwd: tmp.dir });
    expect(r.code).toBe(2);
    const lines = r.stderr.trim().split("\n");
    expect(lines[0]).toMatch(/^matrixd run: cannot load plugin bad.ts: \d+ errors building it:$/);
    expect(lines[1]).toBe(`  ${tmp.path("bad.ts")}:3:35: Expected identifier but found "}"`);
  });

  test("plugin - a plugin file outside any package tree imports zod, in the binary and in-process", async () => {
    const away = tempDir("matrixd-away-");
    try {
      writeFileSync(away.path("zodder.ts"), oneRole('import { z } from "zod";', "zodder"));
      writeFileSync(away.path("star.ts"), oneRole('import * as zod from "zod/v4";', "star", "zod"));
      writeLines(away.path("s.jsonl"), [{ id: "a", word: "hey" }]);
      for (const [file, name] of [
        ["zodder.ts", "zodder"],
        ["star.ts", "star"],
      ] as const) {
        const r = await runProcess([bin, "run", "--plugin", file, "--workflow", name, "--seeds", "s.jsonl", "--out", `${name}.jsonl`], { cwd: away.dir });
        expect(r.stderr).toBe("");
        expect(r.code).toBe(0);
        expect(readRows(away.path(`${name}.jsonl`))[0].output).toEqual({ said: "hey" });
      }
      const [w] = await loadPlugin(away.path("zodder.ts"));
      expect(w?.seedSchema.safeParse({ word: 1 }).success).toBe(false);
      expect(w?.seedSchema.safeParse({ word: "x" }).success).toBe(true);
    } finally {
      away.remove();
    }
  });
});
