/**
 * Environment service throughput, per driver: environments acquired and
 * released per second, and exec round trips (`true`) per second, one at a
 * time and with several at once. Docker runs against a dockerd of its own
 * (test/support/dockerd.ts) with the image built by configs/env/build-image.sh; bwrap
 * on the busybox root folder the same script makes.
 *
 *   bun bench/env.ts [--driver bwrap|docker|all] [--seconds N] [--concurrency N]
 *
 * Prints a table and writes bench/results/env.json.
 */
import { mkdirSync, mkdtempSync, rmSync, chmodSync, writeFileSync } from "node:fs";
import { cpus, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { createEnvService, parseEnvConfig, type EnvConfigInput, type EnvService } from "../src/env/index.ts";
import { silentLogger } from "../src/log.ts";
import { startDockerd } from "../test/support/dockerd.ts";

const ROOT = join(import.meta.dir, "..");

function flag(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? (process.argv[i + 1] as string) : fallback;
}

const seconds = Number(flag("seconds", "4"));
const concurrency = Number(flag("concurrency", "4"));
const which = flag("driver", "all");

interface Figures {
  driver: string;
  /** acquire + release cycles per second, one at a time */
  lifecyclesPerSec: number;
  /** the same with `concurrency` workers */
  lifecyclesPerSecConcurrent: number;
  /** `true` exec round trips per second in one environment */
  execsPerSec: number;
  /** the same over `concurrency` environments at once */
  execsPerSecConcurrent: number;
  /** milliseconds: median acquire+release, median exec */
  lifecycleMedianMs: number;
  execMedianMs: number;
  note?: string;
}

/** Run `op` from `workers` loops for `seconds`; ops per second and the median latency. */
async function measure(workers: number, op: (worker: number) => Promise<void>): Promise<{ rate: number; medianMs: number }> {
  const latencies: number[] = [];
  const end = performance.now() + seconds * 1000;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: workers }, async (_, w) => {
      while (performance.now() < end) {
        const t = performance.now();
        await op(w);
        latencies.push(performance.now() - t);
      }
    }),
  );
  const elapsed = (performance.now() - started) / 1000;
  latencies.sort((a, b) => a - b);
  return { rate: latencies.length / elapsed, medianMs: latencies[Math.floor(latencies.length / 2)] ?? 0 };
}

async function benchDriver(driver: string, envs: EnvService): Promise<Figures> {
  const cycle = async () => {
    const env = await envs.acquire("bench");
    await env.release();
  };
  await cycle();
  const life1 = await measure(1, cycle);
  const lifeN = await measure(concurrency, cycle);
  const held = await Promise.all(Array.from({ length: concurrency }, (_, i) => envs.acquire(`bench-${i}`)));
  const first = held[0];
  if (!first) throw new Error("no environment");
  const exec1 = await measure(1, async () => {
    const r = await first.exec(["true"]);
    if (r.exitCode !== 0) throw new Error(`exec failed: ${r.stderr}`);
  });
  const execN = await measure(concurrency, async (w) => {
    const env = held[w];
    if (!env) throw new Error("no environment");
    const r = await env.exec(["true"]);
    if (r.exitCode !== 0) throw new Error(`exec failed: ${r.stderr}`);
  });
  await Promise.all(held.map((e) => e.release()));
  const round = (n: number) => Math.round(n * 10) / 10;
  return {
    driver,
    lifecyclesPerSec: round(life1.rate),
    lifecyclesPerSecConcurrent: round(lifeN.rate),
    execsPerSec: round(exec1.rate),
    execsPerSecConcurrent: round(execN.rate),
    lifecycleMedianMs: round(life1.medianMs),
    execMedianMs: round(exec1.medianMs),
  };
}

async function buildImage(args: string[], env: Record<string, string> = {}): Promise<void> {
  const proc = Bun.spawn(["bash", join(ROOT, "configs/env/build-image.sh"), ...args], { env: { ...process.env, ...env }, stdout: "ignore", stderr: "pipe" });
  if ((await proc.exited) !== 0) throw new Error(`build-image.sh failed: ${await new Response(proc.stderr).text()}`);
}

async function withService(config: EnvConfigInput, run: (envs: EnvService) => Promise<Figures>): Promise<Figures> {
  const envs = await createEnvService(parseEnvConfig({ capacity: concurrency * 2, ...config }), silentLogger);
  try {
    return await run(envs);
  } finally {
    await envs.close();
  }
}

const results: Figures[] = [];
const tmp = mkdtempSync(join(tmpdir(), "matrixd-bench-env-"));
chmodSync(tmp, 0o755);
try {
  if (which === "all" || which === "bwrap") {
    const rootfs = join(tmp, "rootfs");
    await buildImage(["--rootfs", rootfs, "--no-import"]);
    const base = { driver: "bwrap" as const, node: `bench-${process.pid}`, stateDir: join(tmp, "state"), rootfs };
    results.push(await withService(base, (envs) => benchDriver("bwrap", envs)));
  }
  if (which === "all" || which === "docker") {
    const dockerd = await startDockerd();
    if ("skip" in dockerd) {
      console.warn(`docker: skipped: ${dockerd.skip}`);
    } else {
      try {
        await buildImage([], dockerd.env);
        const base = { driver: "docker" as const, node: `bench-${process.pid}`, socketPath: dockerd.socketPath };
        const figures = await withService(base, (envs) => benchDriver("docker", envs));
        figures.note = `own dockerd, ${dockerd.storageDriver} storage`;
        results.push(figures);
      } finally {
        await dockerd.stop();
      }
    }
  }
} finally {
  rmSync(tmp, { recursive: true, force: true });
}

const machine = { cpus: cpus().length, cpuModel: cpus()[0]?.model ?? "unknown", loadavg: loadavg().map((n) => Math.round(n * 100) / 100) };
console.log(`environments, ${seconds} s per figure, ${concurrency} at once for the concurrent columns; load average ${machine.loadavg.join(" ")} on ${machine.cpus} CPUs`);
console.table(results);
mkdirSync(join(ROOT, "bench/results"), { recursive: true });
writeFileSync(
  join(ROOT, "bench/results/env.json"),
  `${JSON.stringify({ when: new Date().toISOString(), seconds, concurrency, machine, results }, null, 2)}\n`,
);
console.log("written: bench/results/env.json");
