import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { type Browser, chromium, type Page } from "playwright-core";
import { waitFor } from "./wait.ts";

/** Where Debian's `chromium` package puts the browser. */
export const CHROMIUM = "/usr/bin/chromium";

/** Where dashboard tests keep their screenshots (ignored by git). */
export const ARTIFACTS = join(import.meta.dir, "..", "artifacts");

/** True when the headless browser is installed (`apt-get install chromium`). */
export function haveChromium(): boolean {
  return existsSync(CHROMIUM);
}

/**
 * A headless page of Debian's Chromium driven by playwright-core, with
 * every page error and console message of type error collected, so a test
 * can assert there were none.
 */
export interface WatchedPage {
  browser: Browser;
  page: Page;
  /** page errors and console errors (with the URL they came from), in order */
  errors: string[];
  /**
   * Poll a JavaScript expression in the page until it is truthy; returns its
   * value. (Playwright's waitForFunction evaluates strings with eval, which
   * the dashboard's Content-Security-Policy refuses.)
   */
  until<T>(expression: string, ms?: number): Promise<T>;
  /** save a PNG of the whole page under ARTIFACTS; returns its path */
  shot(name: string): Promise<string>;
  close(): Promise<void>;
}

/** Launch the browser with one page of the given viewport. */
export async function openPage(width = 1400, height = 1000): Promise<WatchedPage> {
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"] });
  const page = await browser.newPage({ viewport: { width, height } });
  const errors: string[] = [];
  page.on("pageerror", (err) => errors.push(`page error: ${err.message}`));
  page.on("console", (m) => {
    if (m.type() === "error") errors.push(`console error: ${m.text()} (${m.location().url})`);
  });
  mkdirSync(ARTIFACTS, { recursive: true });
  return {
    browser,
    page,
    errors,
    until<T>(expression: string, ms = 15_000) {
      const truthy = async () => (await page.evaluate<T>(expression).catch(() => undefined)) || undefined;
      return waitFor(`the page's ${expression}`, truthy, ms, 100);
    },
    async shot(name) {
      const path = join(ARTIFACTS, `${name}.png`);
      await page.screenshot({ path, fullPage: true });
      console.log(`screenshot: ${path}`);
      return path;
    },
    close: () => browser.close(),
  };
}
