import { builtinWorkflows } from "../../plugins/index.ts";
import { type ClusterNodeOptions, type RunningClusterNode, startClusterNode } from "../../src/cluster/node.ts";
import type { ClusterNode, JobStatus } from "../../src/cluster/types.ts";
import { type Logger, silentLogger } from "../../src/log.ts";
import type { AnyWorkflow } from "../../src/plugin/api.ts";
import type { NatsServer } from "./nats-server.ts";
import { waitFor } from "./wait.ts";

/** Fast cluster timings for tests: a dead node's tasks come back within seconds. */
export const TEST_TIMINGS = { ackWaitMs: 3000, memberTtlMs: 3000 };

/** Start in-process cluster nodes on one nats-server. */
export async function startNodes(
  srv: NatsServer,
  names: string[],
  opts: Partial<ClusterNodeOptions> & { extra?: AnyWorkflow[]; log?: Logger } = {},
): Promise<RunningClusterNode[]> {
  const { extra, ...rest } = opts;
  return Promise.all(
    names.map((name) =>
      startClusterNode({
        name,
        nats: { servers: [srv.url] },
        workflows: [...builtinWorkflows, ...(extra ?? [])],
        log: opts.log ?? silentLogger,
        timings: TEST_TIMINGS,
        heartbeatMs: 500,
        ...rest,
      }),
    ),
  );
}

/** Poll a job until it leaves `running` (bounded by `timeoutMs`); the error shows its last status. */
export async function waitJob(node: ClusterNode, id: string, timeoutMs = 60_000): Promise<JobStatus> {
  let last: JobStatus | undefined;
  const ended = async () => {
    last = await node.job(id);
    return last && last.state !== "running" ? last : undefined;
  };
  try {
    return await waitFor(`job ${id} to end`, ended, timeoutMs, 100);
  } catch (err) {
    throw new Error(`${err instanceof Error ? err.message : String(err)}; last status: ${JSON.stringify(last)}`);
  }
}

// biome-ignore lint/suspicious/noExplicitAny: rows read back are checked by each test
export async function readResults(node: ClusterNode, id: string): Promise<any[]> {
  const rows = [];
  for await (const line of node.results(id)) rows.push(JSON.parse(line));
  return rows;
}
