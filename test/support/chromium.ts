import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { waitFor } from "./wait.ts";

/** Where Debian's `chromium` package puts the browser. */
export const CHROMIUM = "/usr/bin/chromium";

/** True when the headless browser is installed (`apt-get install chromium`). */
export function haveChromium(): boolean {
  return existsSync(CHROMIUM);
}

const FLAGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
  "--disable-dev-shm-usage",
];

/**
 * Load a page and return its DOM once its scripts have run: `--dump-dom`
 * with a virtual time budget, so timers and fetches of the page settle
 * before the dump without the test sleeping.
 */
export async function dumpDom(url: string, budgetMs = 5000): Promise<string> {
  const profile = mkdtempSync(join(tmpdir(), "matrixd-chromium-"));
  try {
    const proc = Bun.spawn([CHROMIUM, ...FLAGS, `--user-data-dir=${profile}`, `--virtual-time-budget=${budgetMs}`, "--dump-dom", url], {
      stdout: "pipe",
      stderr: "ignore",
    });
    const timer = setTimeout(() => proc.kill(), 30_000);
    const dom = await new Response(proc.stdout).text();
    clearTimeout(timer);
    await proc.exited;
    return dom;
  } finally {
    rmSync(profile, { recursive: true, force: true });
  }
}

interface CdpMessage {
  id?: number;
  method?: string;
  params?: Record<string, unknown>;
  result?: Record<string, unknown>;
  error?: { message: string };
}

/**
 * One headless Chromium page driven over the DevTools protocol: navigate,
 * evaluate in the page, answer its dialogs (prompt, confirm) with a given text.
 */
export class Browser {
  readonly dialogs: { type: string; message: string }[] = [];
  /** what a prompt() of the page is answered with */
  promptText = "";
  #proc: ReturnType<typeof Bun.spawn>;
  #profile: string;
  #ws!: WebSocket;
  #next = 1;
  #waiting = new Map<number, { resolve: (v: Record<string, unknown>) => void; reject: (e: Error) => void }>();

  private constructor(proc: ReturnType<typeof Bun.spawn>, profile: string) {
    this.#proc = proc;
    this.#profile = profile;
  }

  static async launch(): Promise<Browser> {
    const profile = mkdtempSync(join(tmpdir(), "matrixd-chromium-"));
    const proc = Bun.spawn([CHROMIUM, ...FLAGS, `--user-data-dir=${profile}`, "--remote-debugging-port=0", "about:blank"], {
      stdout: "ignore",
      stderr: "pipe",
    });
    const b = new Browser(proc, profile);
    try {
      const port = await devtoolsPort(proc.stderr as ReadableStream<Uint8Array>);
      let page: { type: string; webSocketDebuggerUrl: string } | undefined;
      for (let i = 0; i < 100 && !page; i++) {
        const targets = (await (await fetch(`http://127.0.0.1:${port}/json/list`)).json()) as { type: string; webSocketDebuggerUrl: string }[];
        page = targets.find((t) => t.type === "page");
        if (!page) await Bun.sleep(50);
      }
      if (!page) throw new Error("chromium opened no page");
      await b.#connect(page.webSocketDebuggerUrl);
      await b.send("Page.enable");
      await b.send("Runtime.enable");
      return b;
    } catch (err) {
      await b.close();
      throw err;
    }
  }

  async #connect(url: string): Promise<void> {
    const ws = new WebSocket(url);
    this.#ws = ws;
    await new Promise<void>((resolve, reject) => {
      ws.onopen = () => resolve();
      ws.onerror = () => reject(new Error(`cannot connect to ${url}`));
    });
    ws.onmessage = (ev) => {
      const msg = JSON.parse(String(ev.data)) as CdpMessage;
      if (msg.id !== undefined) {
        const w = this.#waiting.get(msg.id);
        this.#waiting.delete(msg.id);
        if (msg.error) w?.reject(new Error(msg.error.message));
        else w?.resolve(msg.result ?? {});
      } else if (msg.method === "Page.javascriptDialogOpening") {
        const p = msg.params as { type: string; message: string };
        this.dialogs.push({ type: p.type, message: p.message });
        void this.send("Page.handleJavaScriptDialog", { accept: true, promptText: this.promptText });
      }
    };
  }

  send(method: string, params: Record<string, unknown> = {}): Promise<Record<string, unknown>> {
    const id = this.#next++;
    return new Promise((resolve, reject) => {
      this.#waiting.set(id, { resolve, reject });
      this.#ws.send(JSON.stringify({ id, method, params }));
    });
  }

  async goto(url: string): Promise<void> {
    await this.send("Page.navigate", { url });
  }

  async reload(): Promise<void> {
    await this.send("Page.reload");
  }

  /** The value of a JavaScript expression in the page (awaited when it is a promise). */
  async eval<T>(expression: string): Promise<T> {
    const r = (await this.send("Runtime.evaluate", { expression, returnByValue: true, awaitPromise: true })) as {
      result: { value?: T };
      exceptionDetails?: { text: string };
    };
    if (r.exceptionDetails) throw new Error(`in page: ${r.exceptionDetails.text}`);
    return r.result.value as T;
  }

  /** Poll an expression until it is truthy; returns its value. */
  waitFor<T>(expression: string, ms = 10_000): Promise<T> {
    const truthy = async () => (await this.eval<T>(expression).catch(() => undefined)) || undefined;
    return waitFor(`the page's ${expression}`, truthy, ms, 50);
  }

  async close(): Promise<void> {
    try {
      this.#ws?.close();
    } catch {}
    this.#proc.kill();
    await this.#proc.exited;
    rmSync(this.#profile, { recursive: true, force: true });
  }
}

/** The port from Chromium's "DevTools listening on ws://127.0.0.1:PORT/..." line. */
async function devtoolsPort(stderr: ReadableStream<Uint8Array>): Promise<number> {
  const dec = new TextDecoder();
  let text = "";
  const reader = stderr.getReader();
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline) {
    const { done, value } = await reader.read();
    if (done) break;
    text += dec.decode(value, { stream: true });
    const m = /DevTools listening on ws:\/\/[^:]+:(\d+)\//.exec(text);
    if (m) {
      // Keep draining stderr so the browser never blocks on a full pipe.
      void (async () => {
        try {
          for (;;) if ((await reader.read()).done) break;
        } catch {}
      })();
      return Number(m[1]);
    }
  }
  throw new Error(`chromium did not start its DevTools server: ${text.slice(-500)}`);
}
