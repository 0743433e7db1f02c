import type { AnyWorkflow } from "../src/plugin/api.ts";
import { coral } from "./coral/index.ts";
import { coralDummy } from "./coral-dummy/index.ts";
import { reasoningExtract } from "./reasoning-extract/index.ts";
import { toolUse } from "./tool-use/index.ts";

/** The workflows bundled into the binary. */
export const builtinWorkflows: readonly AnyWorkflow[] = [coral, coralDummy, reasoningExtract, toolUse];
