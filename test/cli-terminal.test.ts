import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { LiveLine } from "../src/log.ts";
import { tempDir, writeLines } from "./support/files.ts";
import { BUN, ROOT } from "./support/matrixd.ts";

/**
 * `matrixd run` on a real terminal (a pty from util-linux `script`): the
 * JSON log lines written while the progress line is shown go above it,
 * and nothing tears it. The screen is rebuilt from the bytes as a terminal
 * draws them (\r, erase-line, newline): every line on it must be whole.
 */

const tmp = tempDir("matrixd-cli-terminal-");
const CHATTY = join(import.meta.dir, "fixtures/chatty-workflow.js");
const script = Bun.which("script");
if (!script) console.warn("cli-terminal: util-linux script is missing; the pty cases are skipped");

const PROGRESS =
  /^done \d+\/\d+ \(ok \d+, failed \d+\), in flight \d+ \| [\d.]+ tasks\/s, [\d.]+ gen tok\/s, [\d.]+ tok\/s all, [\d.]+ hops\/s \| [\d.]+% done, ETA \S+, elapsed \d+s$/;

/** The lines a terminal shows after drawing `raw`. */
function screen(raw: string): string[] {
  const lines: string[] = [];
  let line = "";
  let col = 0;
  for (let i = 0; i < raw.length; i++) {
    const c = raw[i];
    if (raw.startsWith("\x1b[K", i)) {
      line = line.slice(0, col);
      i += 2;
    } else if (c === "\r") col = 0;
    else if (c === "\n") {
      lines.push(line);
      line = "";
      col = 0;
    } else {
      line = line.slice(0, col) + c + line.slice(col + 1);
      col++;
    }
  }
  if (line) lines.push(line);
  return lines;
}

async function onTerminal(args: string[]): Promise<string> {
  const cmd = [BUN, "cmd/matrixd.ts", ...args].map((a) => `'${a.replace(/'/g, "'\\''")}'`).join(" ");
  const proc = Bun.spawn([script as string, "-qfec", cmd, "/dev/null"], { cwd: ROOT, stdout: "pipe", stderr: "pipe", stdin: "ignore" });
  const [out, code] = await Promise.all([new Response(proc.stdout).text(), proc.exited]);
  expect(code).toBe(0);
  return out;
}

beforeAll(() => {
  // a workflow that logs at each of its slow steps: logs come all through the run
  writeLines(tmp.path("chatty.jsonl"), Array.from({ length: 12 }, (_, i) => ({ id: `c${i}`, steps: 8 })));
});
afterAll(() => tmp.remove());

describe.skipIf(!script)("cli terminal", () => {
  test("cli terminal - JSON log lines written while the progress line is shown go above it: every line on the screen is whole", async () => {
    const raw = await onTerminal(["run", "--workflow", "chatty", "--plugin", CHATTY, "--seeds", tmp.path("chatty.jsonl"), "--out", tmp.path("a.jsonl"), "--concurrency", "4"]);
    // the case is exercised: logs came while a progress line was up
    expect(raw).toMatch(/elapsed \d+s\r\x1b\[K\{"level"/);
    const lines = screen(raw).filter((l) => l.length > 0);
    const logs = lines.filter((l) => l.startsWith("{"));
    expect(logs.length).toBe(12 * 8);
    for (const l of logs) expect(() => JSON.parse(l)).not.toThrow();
    const rest = lines.filter((l) => !l.startsWith("{"));
    // no log glued to a progress line, no progress line cut by a log: the rest is the summary
    expect(rest[0]).toMatch(/^chatty: 12 rows \(ok 12, failed 0;/);
    for (const l of lines) expect(l.includes('{"level"') && !l.startsWith('{"level"')).toBe(false);
    // the last progress line drawn is whole (the screen cleared it before the summary)
    const drawn = raw.split("\r\x1b[K").filter((s) => s.startsWith("done "));
    expect(drawn.length).toBeGreaterThan(2);
    for (const d of drawn) expect(d.split(/\r|\n/)[0]).toMatch(PROGRESS);
  }, 60_000);

  test("cli terminal - with --log-file the log goes to the file and the terminal shows only progress and the summary", async () => {
    const log = tmp.path("run.log");
    const raw = await onTerminal(["run", "--workflow", "chatty", "--plugin", CHATTY, "--seeds", tmp.path("chatty.jsonl"), "--out", tmp.path("b.jsonl"), "--concurrency", "4", "--log-file", log]);
    expect(raw).not.toContain('{"level"');
    expect(screen(raw).filter((l) => l.length > 0)[0]).toMatch(/^chatty: 12 rows/);
    const lines = readFileSync(log, "utf8").trim().split("\n");
    expect(lines.filter((l) => l.includes('"msg":"chatty step"')).length).toBe(12 * 8);
    for (const l of lines) expect(JSON.parse(l).name).toBe("matrixd");
  }, 60_000);
});

describe("live line", () => {
  test("live line - text written while the line is shown goes above it, the line drawn again under it; cut to the terminal's width", () => {
    let out = "";
    const live = new LiveLine({ write: (t: string) => (out += t), columns: 20 });
    live.write("before\n");
    live.show("done 1/10 with a long tail past the width");
    live.write('{"level":30}\n');
    live.show("done 2/10");
    live.clear();
    live.write("after\n");
    expect(out).toBe('before\n\r\x1b[Kdone 1/10 with a l…\r\x1b[K{"level":30}\ndone 1/10 with a l…\r\x1b[Kdone 2/10\r\x1b[Kafter\n');
    expect(screen(out)).toEqual(["before", '{"level":30}', "after"]);
  });
});
