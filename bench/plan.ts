/**
 * The benchmark's sizes and settings: the full run (`make bench`) and the
 * quick one (`--quick`, a smoke test of a few seconds per mode).
 */
import type { FleetSettings } from "./fleet.ts";
import type { ModeName } from "./modes.ts";

export interface Plan {
  quick: boolean;
  /** seeds of the side-by-side run (the first N lines of the seed file) */
  tasks: number;
  /** seeds of each sweep point */
  sweepTasks: number;
  fleet: FleetSettings;
  /** the LLM client's cap per endpoint, the same in every mode */
  endpointConcurrency: number;
  /**
   * Settings tried per mode; the best (most tokens/s) goes to the side-by-side
   * run. matrixd's knob is its admission bound (tasks in flight, default 1024).
   */
  sweep: Record<ModeName, Record<string, number>[]>;
  scale: {
    /** coral-dummy tasks for hops/s */
    dummyTasks: number;
    /** coral tasks held in flight at once on one node */
    inFlight: number;
    /** coral seeds for the utilization run at high concurrency */
    utilTasks: number;
  };
}

export function makePlan(quick: boolean): Plan {
  if (quick) {
    return {
      quick,
      tasks: 60,
      sweepTasks: 30,
      fleet: { servers: 2, slots: 16, decodeTps: 40_000, flags: { "agree-rate": 0.3 } },
      endpointConcurrency: 256,
      sweep: {
        matrixd: [{ concurrency: 1024 }],
        batch: [{ batch: 16, inflight: 2 }],
        central: [{ concurrency: 32 }],
        jobqueue: [{ concurrency: 32 }],
      },
      scale: { dummyTasks: 2000, inFlight: 300, utilTasks: 60 },
    };
  }
  return {
    quick,
    tasks: 3000,
    sweepTasks: 1200,
    // 4 servers x 64 slots; 8,000 tokens/s each: 32,000 tokens/s for the fleet
    fleet: { servers: 4, slots: 64, decodeTps: 8000, flags: { "agree-rate": 0.3 } },
    endpointConcurrency: 256,
    sweep: {
      matrixd: [{ concurrency: 1024 }, { concurrency: 4096 }],
      batch: [
        { batch: 64, inflight: 8 },
        { batch: 128, inflight: 4 },
        { batch: 256, inflight: 4 },
        { batch: 512, inflight: 2 },
      ],
      central: [{ concurrency: 256 }, { concurrency: 1024 }, { concurrency: 4096 }],
      jobqueue: [{ concurrency: 256 }, { concurrency: 512 }, { concurrency: 1024 }],
    },
    scale: { dummyTasks: 100_000, inFlight: 20_000, utilTasks: 3000 },
  };
}
