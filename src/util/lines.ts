/** A line longer than a reader allows (it would have to be held whole in memory). */
export class LineTooLongError extends Error {
  override name = "LineTooLongError";
  constructor(
    readonly line: number,
    readonly maxChars: number,
  ) {
    super(`line ${line} is longer than ${maxChars} characters`);
  }
}

/**
 * The lines of a byte stream, decoded as UTF-8, without their line ends.
 * Holds at most one chunk and one partial line in memory; with `maxChars`, a
 * line longer than that throws LineTooLongError instead of growing.
 */
export async function* readLines(stream: ReadableStream<Uint8Array>, maxChars = Number.POSITIVE_INFINITY): AsyncGenerator<string> {
  const decoder = new TextDecoder();
  let rest = "";
  let lineNo = 0;
  for await (const chunk of stream) {
    const text = rest + decoder.decode(chunk, { stream: true });
    let start = 0;
    let nl = text.indexOf("\n", start);
    while (nl !== -1) {
      lineNo++;
      if (nl - start > maxChars) throw new LineTooLongError(lineNo, maxChars);
      yield text.charCodeAt(nl - 1) === 13 ? text.slice(start, nl - 1) : text.slice(start, nl);
      start = nl + 1;
      nl = text.indexOf("\n", start);
    }
    rest = text.slice(start);
    if (rest.length > maxChars) throw new LineTooLongError(lineNo + 1, maxChars);
  }
  rest += decoder.decode();
  if (rest.length > 0) yield rest.endsWith("\r") ? rest.slice(0, -1) : rest;
}

/** Lines of a file, streamed. */
export function fileLines(path: string): AsyncGenerator<string> {
  return readLines(Bun.file(path).stream());
}

/** Number of lines in a file (a trailing line without newline counts), read in chunks. */
export async function countLines(path: string): Promise<number> {
  let n = 0;
  let last = 10;
  for await (const chunk of Bun.file(path).stream()) {
    for (let i = 0; i < chunk.length; i++) if (chunk[i] === 10) n++;
    if (chunk.length) last = chunk[chunk.length - 1] as number;
  }
  return last === 10 ? n : n + 1;
}
