import { wordEnds } from "./content.ts";
import type { ReplyInfo, StreamEncoder } from "./kinds/types.ts";

/**
 * The streaming side of an answer, whatever the server kind: which words
 * go out when. The kind's StreamEncoder writes the chunks.
 */

/**
 * One streaming answer. Deltas are cut at word boundaries from the answer
 * fixed up front, so the concatenated deltas equal the non-streaming text;
 * whatever was generated since the last engine tick goes out as one chunk
 * (the thinking first, for a reasoning model, then the text or tool call).
 * The body is a Bun "direct" stream: chunks are written straight to the
 * socket, without the queueing of a default ReadableStream, which cost more
 * than everything else the server does per streamed token.
 */
export class ChatStream {
  readonly readable: ReadableStream<Uint8Array>;
  private controller: ReadableStreamDirectController | undefined;
  /** chunks written before Bun asked for the body */
  private early: string[] = [];
  private emitted = 0;
  private ends: Uint32Array | undefined;
  private thinkEnds: Uint32Array | undefined;
  private closed = false;
  private resolveBody: (() => void) | undefined;

  /** `onClose` runs once when the stream ends, however it ends */
  constructor(
    private readonly reply: ReplyInfo,
    private readonly enc: StreamEncoder,
    private readonly onCancel: () => void,
    private readonly onClose?: () => void,
  ) {
    this.write(enc.open());
    this.readable = new ReadableStream<Uint8Array>({
      type: "direct",
      pull: (c) => {
        this.controller = c;
        for (const s of this.early) c.write(s);
        this.early = [];
        c.flush();
        if (this.closed) {
          c.close();
          return;
        }
        return new Promise<void>((resolve) => {
          this.resolveBody = resolve;
        });
      },
      cancel: () => this.cancelled(),
    });
  }

  /** Sends what was generated beyond what was sent. */
  progress(generated: number): void {
    if (this.closed || generated <= this.emitted) return;
    const from = this.emitted;
    this.emitted = generated;
    const c = this.reply.composed;
    const r = c.reasoningTokens;
    let out = "";
    if (from < r) {
      const to = Math.min(generated, r);
      this.thinkEnds ??= wordEnds(c.reasoning ?? "");
      const piece = slice(c.reasoning ?? "", this.thinkEnds, from, to, to >= r);
      out += this.enc.reasoning(piece, from === 0, to >= r);
    }
    if (generated > r) out += this.answer(Math.max(0, from - r), generated - r, generated >= c.tokens);
    if (out) this.write(out);
    this.flush();
  }

  /** The deltas of answer tokens [from, to): text words, or the tool call's name then its arguments. */
  private answer(from: number, to: number, last: boolean): string {
    const c = this.reply.composed;
    const t = c.toolCall;
    if (!t) {
      const text = c.text ?? "";
      this.ends ??= wordEnds(text);
      const piece = slice(text, this.ends, from, to, last);
      return piece ? this.enc.content(piece) : "";
    }
    let out = from === 0 ? this.enc.toolName() : "";
    const a = Math.max(0, from - 1);
    const b = to - 1;
    if (b > a) {
      this.ends ??= wordEnds(t.arguments);
      const piece = slice(t.arguments, this.ends, a, b, last);
      if (piece) out += this.enc.toolArgs(piece);
    }
    return out;
  }

  /** Sends the rest, then the kind's end of stream (finish reason, usage, end marker). */
  finish(): void {
    if (this.closed) return;
    this.progress(this.reply.composed.tokens);
    this.write(this.enc.close());
    this.close();
  }

  /** Ends the stream without an answer (the server is stopping). */
  fail(): void {
    if (this.closed) return;
    this.closed = true;
    try {
      this.controller?.close(new Error("server stopped"));
    } catch {
      // the client is gone already
    }
    this.resolveBody?.();
    this.onClose?.();
  }

  private close(): void {
    if (this.closed) return;
    this.closed = true;
    try {
      this.controller?.close();
    } catch {
      // the client is gone already
    }
    this.resolveBody?.();
    this.onClose?.();
  }

  private cancelled(): void {
    if (this.closed) return;
    this.closed = true;
    this.resolveBody?.();
    this.onCancel();
    this.onClose?.();
  }

  private write(s: string): void {
    if (this.closed || !s) return;
    if (!this.controller) {
      this.early.push(s);
      return;
    }
    try {
      if (this.controller.write(s) === 0) this.cancelled();
    } catch {
      this.cancelled();
    }
  }

  private flush(): void {
    if (this.closed || !this.controller) return;
    try {
      this.controller.flush();
    } catch {
      this.cancelled();
    }
  }
}

/** Words [a, b) of `text` (word ends in `ends`), with the separators before them; to the end when `last`. */
function slice(text: string, ends: Uint32Array, a: number, b: number, last: boolean): string {
  const start = a === 0 ? 0 : (ends[a - 1] ?? text.length);
  const end = last || b >= ends.length ? text.length : ends[b - 1]!;
  return text.slice(start, end);
}
