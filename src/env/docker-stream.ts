import type Docker from "dockerode";
import type { Logger } from "../log.ts";
import type { CappedOutput } from "./util.ts";

/**
 * The two byte streams of the Docker API the docker driver reads: an exec's
 * multiplexed output, and the engine's event feed (for OOM kills).
 */

/**
 * Split Docker's multiplexed exec stream (frames of an 8-byte header: stream
 * type, three zero bytes, a big-endian 32-bit length; then the payload) into
 * stdout and stderr.
 */
export class Demuxer {
  private pending: Uint8Array = new Uint8Array(0);

  constructor(
    private readonly stdout: CappedOutput,
    private readonly stderr: CappedOutput,
  ) {}

  push(chunk: Uint8Array): void {
    let buf = this.pending.byteLength === 0 ? chunk : joinTwo(this.pending, chunk);
    while (buf.byteLength >= 8) {
      const size = ((buf[4] as number) << 24) | ((buf[5] as number) << 16) | ((buf[6] as number) << 8) | (buf[7] as number);
      const length = size >>> 0;
      if (buf.byteLength < 8 + length) break;
      const payload = buf.subarray(8, 8 + length);
      if (buf[0] === 2) this.stderr.push(payload);
      else this.stdout.push(payload);
      buf = buf.subarray(8 + length);
    }
    this.pending = buf.byteLength === 0 ? new Uint8Array(0) : buf.slice();
  }
}

function joinTwo(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.byteLength + b.byteLength);
  out.set(a, 0);
  out.set(b, a.byteLength);
  return out;
}

/**
 * Feed stdin, collect output until the stream ends, the deadline passes, or
 * `stopped` resolves (the environment is being released).
 */
export function collectExec(
  stream: NodeJS.ReadWriteStream,
  stdout: CappedOutput,
  stderr: CappedOutput,
  stdin: Uint8Array | undefined,
  timeoutMs: number,
  stopped: Promise<void>,
): Promise<"ended" | "timeout" | "cancelled"> {
  const demux = new Demuxer(stdout, stderr);
  return new Promise((resolve) => {
    let done = false;
    const finish = (how: "ended" | "timeout" | "cancelled") => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (how !== "ended") destroyStream(stream);
      resolve(how);
    };
    const timer = setTimeout(() => finish("timeout"), timeoutMs);
    void stopped.then(() => finish("cancelled"));
    stream.on("data", (chunk: Uint8Array | string) => demux.push(typeof chunk === "string" ? new TextEncoder().encode(chunk) : chunk));
    stream.on("end", () => finish("ended"));
    stream.on("close", () => finish("ended"));
    stream.on("error", () => finish("ended"));
    if (stdin !== undefined) {
      try {
        stream.end(stdin);
      } catch {
        // the command ended before reading its input
      }
    }
  });
}

function destroyStream(stream: NodeJS.ReadWriteStream): void {
  const s = stream as NodeJS.ReadWriteStream & { destroy?: () => void };
  try {
    s.destroy?.();
  } catch {
    // already closed
  }
}

/** The engine's OOM events for this node's containers, counted per container; reconnects while open. */
export class DockerEvents {
  private readonly ooms = new Map<string, number>();
  private stream: NodeJS.ReadableStream | undefined;
  private stopped = false;
  private retry: ReturnType<typeof setTimeout> | undefined;

  constructor(
    private readonly docker: Docker,
    private readonly node: string,
    private readonly log: Logger,
  ) {}

  oomCount(containerId: string): number {
    return this.ooms.get(containerId) ?? 0;
  }

  forget(containerId: string): void {
    this.ooms.delete(containerId);
  }

  async start(): Promise<void> {
    if (this.stopped) return;
    const stream = await this.docker.getEvents({
      filters: { type: ["container"], event: ["oom"], label: [`matrixd.node=${this.node}`] },
    });
    this.stream = stream;
    let partial = "";
    stream.on("data", (chunk: Uint8Array | string) => {
      partial += typeof chunk === "string" ? chunk : new TextDecoder().decode(chunk);
      let nl: number;
      while ((nl = partial.indexOf("\n")) >= 0) {
        const line = partial.slice(0, nl).trim();
        partial = partial.slice(nl + 1);
        if (line) this.onLine(line);
      }
    });
    const reconnect = () => {
      if (this.stopped || this.stream !== stream) return;
      this.stream = undefined;
      this.retry = setTimeout(() => {
        this.start().catch((err) => {
          this.log.warn({ err: String(err) }, "docker event feed lost; OOM kills are not told apart until it is back");
          reconnect();
        });
      }, 1000);
    };
    stream.on("end", reconnect);
    stream.on("error", reconnect);
  }

  private onLine(line: string): void {
    let event: unknown;
    try {
      event = JSON.parse(line);
    } catch {
      return;
    }
    if (typeof event !== "object" || event === null) return;
    const e = event as { Action?: unknown; id?: unknown; Actor?: { ID?: unknown } };
    const id = typeof e.Actor?.ID === "string" ? e.Actor.ID : typeof e.id === "string" ? e.id : undefined;
    if (e.Action === "oom" && id) this.ooms.set(id, this.oomCount(id) + 1);
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.retry);
    const s = this.stream as (NodeJS.ReadableStream & { destroy?: () => void }) | undefined;
    this.stream = undefined;
    s?.destroy?.();
  }
}
