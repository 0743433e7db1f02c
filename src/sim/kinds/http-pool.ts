import type { Handler, Lease, SimLive } from "./types.ts";

/**
 * The HTTP requests a server handles at once. llama.cpp's server (cpp-httplib)
 * runs a fixed pool of `--threads-http` threads: past that many, requests
 * wait in arrival order until a thread is free, on every route, /health and
 * /metrics included, which is why an overloaded llama.cpp stops answering
 * its probes. A thread is held until the answer is fully written: for a
 * stream, until its end. Requests waiting here have not reached the server
 * proper, so they are not among llama.cpp's deferred requests. Other kinds
 * get an unbounded pool, which only counts.
 */
export class HttpPool {
  private readonly queue: { go: () => void; gone: () => boolean }[] = [];
  private head = 0;

  constructor(
    private readonly size: number,
    private readonly http: SimLive["http"],
  ) {}

  /** The handler run under the pool; `gone` answers a client that left while it waited. */
  wrap(h: Handler, gone: () => Response): (req: Request) => Promise<Response> {
    return async (req) => {
      if (this.http.busy >= this.size) {
        const ok = await this.wait(req.signal);
        if (!ok) return gone();
      } else this.http.busy++;
      const lease = new PoolLease(() => this.release());
      try {
        return await h(req, lease);
      } finally {
        if (!lease.held) lease.release();
      }
    };
  }

  /** Waits for a thread, in arrival order; false when the client went away first. */
  private wait(signal: AbortSignal): Promise<boolean> {
    this.http.waiting++;
    return new Promise<boolean>((resolve) => {
      let done = false;
      const entry = {
        go: () => {
          done = true;
          signal.removeEventListener("abort", onAbort);
          resolve(true);
        },
        gone: () => done,
      };
      const onAbort = (): void => {
        if (done) return;
        done = true;
        this.http.waiting--;
        resolve(false);
      };
      if (signal.aborted) return onAbort();
      signal.addEventListener("abort", onAbort, { once: true });
      this.queue.push(entry);
    });
  }

  private release(): void {
    // hand the thread straight to the oldest waiter still there
    while (this.head < this.queue.length) {
      const next = this.queue[this.head++]!;
      if (next.gone()) continue;
      this.http.waiting--;
      next.go();
      this.compact();
      return;
    }
    this.http.busy--;
    this.compact();
  }

  private compact(): void {
    if (this.head > 1024 && this.head * 2 > this.queue.length) {
      this.queue.splice(0, this.head);
      this.head = 0;
    }
  }
}

class PoolLease implements Lease {
  held = false;
  private released = false;
  constructor(private readonly onRelease: () => void) {}
  hold(): void {
    this.held = true;
  }
  release(): void {
    if (this.released) return;
    this.released = true;
    this.onRelease();
  }
}
