/** Lines are sent in chunks of about this many bytes, so a large dataset is not one write per row. */
const CHUNK_BYTES = 64 * 1024;

const NOT_YET = Symbol("not yet");

/**
 * An NDJSON byte stream of `lines` (each without its newline). The stream
 * pulls from the source only when the client has read what was sent, so a
 * slow reader slows the source down instead of filling memory; when the
 * client goes away the source is closed (its `return` runs).
 */
export function ndjsonStream(lines: AsyncIterable<string>): ReadableStream<Uint8Array> {
  const it = lines[Symbol.asyncIterator]();
  const enc = new TextEncoder();
  let pending: Promise<IteratorResult<string>> | undefined;
  return new ReadableStream<Uint8Array>(
    {
      async pull(ctl) {
        let batch = "";
        let done = false;
        // Lines the source has ready within one turn of the event loop go out as one chunk;
        // a line the source is still waiting for never holds back the ones already read.
        const turn = new Promise<typeof NOT_YET>((r) => setImmediate(() => r(NOT_YET)));
        for (;;) {
          const next = pending ?? it.next();
          pending = undefined;
          const r = batch.length === 0 ? await next : await Promise.race([next, turn]);
          if (r === NOT_YET) {
            pending = next;
            break;
          }
          if (r.done) {
            done = true;
            break;
          }
          batch += `${r.value}\n`;
          if (batch.length >= CHUNK_BYTES) break;
        }
        if (batch.length > 0) ctl.enqueue(enc.encode(batch));
        if (done) ctl.close();
      },
      async cancel() {
        await it.return?.();
      },
    },
    { highWaterMark: 2 },
  );
}

const NL = 10;

/**
 * The whole lines of an NDJSON byte stream read in chunks: `push` answers
 * the bytes up to and including the last newline seen so far (undefined
 * while no line is whole yet) and keeps the rest for the next chunk;
 * `pending` is the bytes kept of a line not yet ended (a stream that ends
 * with some was cut inside a line).
 */
export class WholeLines {
  #rest: Uint8Array = new Uint8Array(0);

  push(chunk: Uint8Array): Uint8Array | undefined {
    let data = chunk;
    if (this.#rest.length > 0) {
      data = new Uint8Array(this.#rest.length + chunk.length);
      data.set(this.#rest, 0);
      data.set(chunk, this.#rest.length);
    }
    const last = data.lastIndexOf(NL);
    if (last < 0) {
      this.#rest = data;
      return undefined;
    }
    this.#rest = data.slice(last + 1);
    return data.subarray(0, last + 1);
  }

  get pending(): number {
    return this.#rest.length;
  }
}
