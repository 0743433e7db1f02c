import { z } from "zod";
import type { ClusterNode } from "../../src/cluster/types.ts";
import { builtinWorkflows } from "../../plugins/index.ts";
import { defineWorkflow } from "../../src/plugin/api.ts";
import { Registry } from "../../src/plugin/registry.ts";

/** A gate the `gated` workflow's steps wait on: tasks stay running until it opens. */
export interface Gate {
  open(): void;
  readonly promise: Promise<void>;
}

export function gate(): Gate {
  let open!: () => void;
  const promise = new Promise<void>((r) => {
    open = r;
  });
  return { open, promise };
}

/**
 * The built-in workflows plus `gated`: one role whose step waits for the gate
 * (or the node's shutdown), so a test can look at a job while it runs.
 */
export function testRegistry(g: Gate = gate()): Registry {
  const gated = defineWorkflow({
    name: "gated",
    description: "test workflow whose steps wait for a gate",
    seedSchema: z.looseObject({ id: z.string(), n: z.number().int() }),
    configSchema: z.strictObject({}),
    roles: {
      wait: {
        kind: "cpu",
        async run(state, ctx) {
          await Promise.race([
            g.promise,
            new Promise((r) => ctx.signal.addEventListener("abort", r, { once: true })),
          ]);
          return { turns: [{ text: `n=${state.seed.n}` }] };
        },
      },
    },
    start: () => ({ next: "wait", vars: {} }),
    next: () => null,
    output: (state) => ({ output: { n: state.seed.n }, metrics: {} }),
  });
  return new Registry([...builtinWorkflows, gated]);
}

/** NDJSON text of rows. */
export function ndjson(rows: readonly unknown[]): string {
  return rows.map((r) => (typeof r === "string" ? r : JSON.stringify(r))).join("\n") + "\n";
}

/** A response body read as JSON, for tests to pick apart. */
// biome-ignore lint/suspicious/noExplicitAny: each test checks the fields it reads
export async function json(res: Response): Promise<any> {
  return res.json();
}

/** A ClusterNode that answers like `node` except for the methods given. */
export function overriding(node: ClusterNode, over: Partial<ClusterNode>): ClusterNode {
  return {
    name: over.name ?? node.name,
    submit: over.submit ?? ((j) => node.submit(j)),
    intake: over.intake ?? ((j) => node.intake(j)),
    jobs: over.jobs ?? (() => node.jobs()),
    job: over.job ?? ((id) => node.job(id)),
    cancel: over.cancel ?? ((id) => node.cancel(id)),
    purge: over.purge ?? ((id) => node.purge(id)),
    retryFailed: over.retryFailed ?? ((id) => node.retryFailed(id)),
    results: over.results ?? ((id) => node.results(id)),
    tail: over.tail ?? ((id, n) => node.tail(id, n)),
    rowsAfter: over.rowsAfter ?? ((id, after) => node.rowsAfter(id, after)),
    followed: over.followed ?? ((id, seq) => node.followed(id, seq)),
    task: over.task ?? ((job, id) => node.task(job, id)),
    members: over.members ?? (() => node.members()),
    events: over.events ?? ((q) => node.events(q)),
    metrics: over.metrics ?? (() => node.metrics()),
    close: over.close ?? (() => node.close()),
  };
}
