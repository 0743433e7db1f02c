import { ConfigError } from "../errors.ts";
import { startSim, type SimServer } from "./server.ts";
import type { SimOptions } from "./options.ts";

/**
 * Starts `n` simulated servers in this process, each on its own port: ports
 * `port`..`port + n - 1` when a port is given, else a random port each. If
 * one fails to start, those already started are stopped.
 */
export async function startSimFleet(n: number, opts: SimOptions = {}): Promise<SimServer[]> {
  if (!Number.isInteger(n) || n < 1) throw new ConfigError(`Bad sim-llm fleet size ${n}: must be a whole number of at least 1`);
  const base = opts.port ?? 0;
  if (base > 0 && base + n - 1 > 65535) throw new ConfigError(`Bad sim-llm ports ${base}..${base + n - 1}: past 65535`);
  const servers: SimServer[] = [];
  try {
    for (let i = 0; i < n; i++) servers.push(await startSim({ ...opts, port: base > 0 ? base + i : 0 }));
  } catch (err) {
    await Promise.all(servers.map((s) => s.stop()));
    throw err;
  }
  return servers;
}
