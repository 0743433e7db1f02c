import { describe, expect, test } from "bun:test";
import { IdSet } from "../src/util/idset.ts";
import { LineTooLongError, readLines } from "../src/util/lines.ts";

function stream(parts: string[]): ReadableStream<Uint8Array> {
  const enc = new TextEncoder();
  return new ReadableStream({
    start(ctl) {
      for (const p of parts) ctl.enqueue(enc.encode(p));
      ctl.close();
    },
  });
}

async function all(it: AsyncIterable<string>): Promise<string[]> {
  const out: string[] = [];
  for await (const x of it) out.push(x);
  return out;
}

describe("util", () => {
  test("util - IdSet finds every repeated id with the line it was first on, across growth", () => {
    const ids = new IdSet(16);
    for (let i = 0; i < 100_000; i++) expect(ids.add(`id-${i}`, i + 1)).toBe(0);
    expect(ids.size).toBe(100_000);
    for (let i = 0; i < 100_000; i += 997) expect(ids.add(`id-${i}`, 200_000)).toBe(i + 1);
    expect(ids.add("", 5)).toBe(0);
    expect(ids.add("", 6)).toBe(5);
    expect(ids.add("é", 7)).toBe(0);
    expect(ids.add("e", 8)).toBe(0);
    expect(() => ids.add("x", 0)).toThrow("line numbers count from 1");
  });

  test("util - readLines keeps a line to a limit: a longer one, ended or not, is an error naming it", async () => {
    expect(await all(readLines(stream(["ab\r\ncd", "e\nfg"]), 3))).toEqual(["ab", "cde", "fg"]);
    const ended = all(readLines(stream(["ok\n", "toolong\n"]), 4));
    await expect(ended).rejects.toBeInstanceOf(LineTooLongError);
    await expect(all(readLines(stream(["ok\n", "too", "long", "still"]), 4))).rejects.toThrow("line 2 is longer than 4 characters");
  });
});
