/**
 * The benchmark's sizes and settings per scenario: the full run (`make
 * bench`) and the quick one (`--quick`, a smoke test of a few seconds per
 * mode). A full run of one scenario is sized to take at most about ten
 * minutes on a 2-core machine.
 */
import type { FleetSettings } from "./fleet.ts";
import type { ModeName } from "./modes.ts";

export interface Plan {
  quick: boolean;
  /** seed lines of the side-by-side run (the first N lines of the seed file) */
  tasks: number;
  /** seed lines of each sweep point */
  sweepTasks: number;
  /** tasks per seed line (`matrixd run --trials`), in every mode and sweep point */
  trials: number;
  fleet: FleetSettings;
  /** the LLM client's cap per endpoint, the same in every mode */
  endpointConcurrency: number;
  /** the workflow's options, the same in every mode */
  options: Record<string, unknown>;
  /** environments each mode may hold at once, for workflows that run tools */
  envCapacity: number;
  /**
   * Settings tried per mode; the best (most tokens/s) goes to the side-by-side
   * run. matrixd's knob is its admission bound (tasks in flight, default
   * 1024); matrixd-fifo is tried at matrixd's settings.
   */
  sweep: Record<Exclude<ModeName, "matrixd-fifo">, Record<string, number>[]>;
  /** whether the scale figures (coral and coral-dummy on one node) follow the side-by-side run */
  scaleFigures: boolean;
  scale: {
    /** coral-dummy tasks for hops/s */
    dummyTasks: number;
    /** coral tasks held in flight at once on one node */
    inFlight: number;
    /** coral seeds for the utilization run at high concurrency */
    utilTasks: number;
  };
}

/** The plan of a scenario; coral's for workflows with none of their own. */
export function makePlan(quick: boolean, scenario = "coral"): Plan {
  if (scenario === "reasoning-extract") return reasoningExtractPlan(quick);
  if (scenario === "tool-use") return toolUsePlan(quick);
  return coralPlan(quick);
}

/**
 * Every fleet schedules by request priority, as vLLM started with
 * --scheduling-policy priority: matrixd sends its tasks' priorities; the
 * other modes send none, and requests of equal priority run in arrival
 * order, as under fcfs.
 */
const PRIORITY = { "scheduling-policy": "priority" } as const;

const SCALE = { dummyTasks: 100_000, inFlight: 20_000, utilTasks: 3000 };
const QUICK_SCALE = { dummyTasks: 2000, inFlight: 300, utilTasks: 60 };

function coralPlan(quick: boolean): Plan {
  const common = { quick, trials: 1, options: {}, envCapacity: 16, scaleFigures: true, endpointConcurrency: 256 };
  if (quick) {
    return {
      ...common,
      tasks: 60,
      sweepTasks: 30,
      fleet: { servers: 2, slots: 16, decodeTps: 40_000, flags: { "agree-rate": 0.3, ...PRIORITY } },
      sweep: {
        matrixd: [{ concurrency: 1024 }],
        batch: [{ batch: 16, inflight: 2 }],
        central: [{ concurrency: 32 }],
        jobqueue: [{ concurrency: 32 }],
      },
      scale: QUICK_SCALE,
    };
  }
  return {
    ...common,
    tasks: 3000,
    sweepTasks: 1200,
    // 4 servers x 64 slots; 8,000 tokens/s each: 32,000 tokens/s for the fleet
    fleet: { servers: 4, slots: 64, decodeTps: 8000, flags: { "agree-rate": 0.3, ...PRIORITY } },
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
    scale: SCALE,
  };
}

/**
 * reasoning-extract: the Yes/No filter on a small model's server, score and
 * question on three servers of a large model, by name (the workflow's
 * filterModel, scoreModel and questionModel), as bench/scenarios.ts runs it.
 * Every mode sends the same requests, so the yield is the same in all.
 * Few slots per server, so that one sequence decodes fast enough for the
 * longest questions (up to 2,048 tokens) not to outlast the bulk of a
 * 2,200-document job. The small model's server answers one-token Yes/No
 * (its time goes to prefill), so its third of the decode ceiling is never
 * used: utilization cannot pass about 0.67 in this scenario.
 */
function reasoningExtractPlan(quick: boolean): Plan {
  const common = {
    quick,
    trials: 1,
    options: { filterModel: "small", scoreModel: "large", questionModel: "large" },
    envCapacity: 16,
    scaleFigures: false,
    endpointConcurrency: 256,
    scale: quick ? QUICK_SCALE : SCALE,
  };
  if (quick) {
    return {
      ...common,
      tasks: 120,
      sweepTasks: 60,
      fleet: { servers: 2, slots: 16, decodeTps: 8000, flags: { ...PRIORITY }, models: { small: 1, large: 1 } },
      sweep: {
        matrixd: [{ concurrency: 1024 }],
        batch: [{ batch: 64, inflight: 2 }],
        central: [{ concurrency: 256 }],
        jobqueue: [{ concurrency: 256 }],
      },
    };
  }
  return {
    ...common,
    tasks: 2200,
    sweepTasks: 1100,
    fleet: { servers: 3, slots: 8, decodeTps: 900, flags: { ...PRIORITY }, models: { small: 1, large: 2 } },
    sweep: {
      matrixd: [{ concurrency: 1024 }],
      batch: [
        { batch: 64, inflight: 4 },
        { batch: 128, inflight: 4 },
        { batch: 256, inflight: 2 },
      ],
      central: [{ concurrency: 256 }, { concurrency: 1024 }],
      jobqueue: [{ concurrency: 256 }, { concurrency: 1024 }],
    },
  };
}

/**
 * tool-use: the 60 shipped scenarios, several trials each, every task in its
 * own environment from its first step to its row; `envCapacity` environments
 * per mode. The batch-level baseline's batches in flight must fit in them
 * (batch x inflight <= envCapacity).
 */
function toolUsePlan(quick: boolean): Plan {
  const common = { quick, options: {}, scaleFigures: false, endpointConcurrency: 256, scale: quick ? QUICK_SCALE : SCALE };
  if (quick) {
    return {
      ...common,
      tasks: 10,
      sweepTasks: 5,
      trials: 2,
      envCapacity: 20,
      fleet: { servers: 1, slots: 16, decodeTps: 16_000, flags: { ...PRIORITY } },
      sweep: {
        matrixd: [{ concurrency: 1024 }],
        batch: [{ batch: 10, inflight: 2 }],
        central: [{ concurrency: 20 }],
        jobqueue: [{ concurrency: 20 }],
      },
    };
  }
  return {
    ...common,
    tasks: 60,
    sweepTasks: 24,
    trials: 4,
    envCapacity: 64,
    // 2 servers x 32 slots, 2,000 tokens/s each: the fleet, not the 2 cores running the tools, bounds the run
    fleet: { servers: 2, slots: 32, decodeTps: 2000, flags: { ...PRIORITY } },
    sweep: {
      matrixd: [{ concurrency: 1024 }],
      batch: [
        { batch: 8, inflight: 8 },
        { batch: 16, inflight: 4 },
        { batch: 32, inflight: 2 },
      ],
      // No more than 64 tasks hold an environment at once: more concurrency only waits for one.
      central: [{ concurrency: 64 }, { concurrency: 256 }],
      jobqueue: [{ concurrency: 32 }, { concurrency: 64 }],
    },
  };
}
