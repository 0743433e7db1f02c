import { wordEnds, type Composed } from "./content.ts";

/**
 * Response bodies in the OpenAI chat completions shape, as vLLM writes them:
 * the `chat.completion` object, the SSE stream of `chat.completion.chunk`
 * deltas, and errors.
 */

/** Everything an answer's body is made of. */
export interface ReplyInfo {
  id: string;
  created: number;
  model: string;
  promptTokens: number;
  cachedTokens: number;
  composed: Composed;
}

/** Error kinds by status, with vLLM's type names. */
const ERROR_TYPES: Record<number, string> = {
  400: "BadRequestError",
  404: "NotFoundError",
  405: "MethodNotAllowed",
  413: "RequestEntityTooLarge",
  429: "RateLimitError",
  500: "InternalServerError",
  503: "ServiceUnavailable",
};

/** An error response: `{error: {message, type, param, code}}`. */
export function errorResponse(status: number, message: string, param: string | null = null, headers?: Record<string, string>): Response {
  const body = { error: { message, type: ERROR_TYPES[status] ?? "Error", param, code: status } };
  return Response.json(body, { status, headers });
}

function usageOf(r: ReplyInfo): Record<string, unknown> {
  const c = r.composed.tokens;
  return {
    prompt_tokens: r.promptTokens,
    completion_tokens: c,
    total_tokens: r.promptTokens + c,
    prompt_tokens_details: { cached_tokens: r.cachedTokens },
  };
}

function toolCallsOf(c: Composed): unknown[] | undefined {
  const t = c.toolCall;
  return t ? [{ id: t.id, type: "function", function: { name: t.name, arguments: t.arguments } }] : undefined;
}

/** The non-streaming answer. */
export function completionBody(r: ReplyInfo): string {
  const c = r.composed;
  const message: Record<string, unknown> = { role: "assistant", content: c.text };
  const calls = toolCallsOf(c);
  if (calls) message.tool_calls = calls;
  return JSON.stringify({
    id: r.id,
    object: "chat.completion",
    created: r.created,
    model: r.model,
    choices: [{ index: 0, message, logprobs: null, finish_reason: c.finishReason }],
    usage: usageOf(r),
  });
}

/**
 * One streaming answer. Deltas are cut at word boundaries from the answer
 * fixed up front, so the concatenated deltas equal the non-streaming text;
 * whatever was generated since the last engine tick goes out as one chunk.
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
  private closed = false;
  private resolveBody: (() => void) | undefined;
  private readonly head: string;

  constructor(
    private readonly reply: ReplyInfo,
    private readonly includeUsage: boolean,
    private readonly onCancel: () => void,
  ) {
    this.head = `data: {"id":${JSON.stringify(reply.id)},"object":"chat.completion.chunk","created":${reply.created},"model":${JSON.stringify(reply.model)},"choices":[{"index":0,"delta":`;
    this.send(`{"role":"assistant","content":""}`, null);
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
    const t = c.toolCall;
    if (!t) {
      const piece = this.slice(c.text ?? "", from, generated, generated >= c.tokens);
      if (piece) this.send(JSON.stringify({ content: piece }), null);
      this.flush();
      return;
    }
    const parts: unknown[] = [];
    if (from === 0) parts.push({ index: 0, id: t.id, type: "function", function: { name: t.name, arguments: "" } });
    const a = Math.max(0, from - 1);
    const b = generated - 1;
    if (b > a) {
      const piece = this.slice(t.arguments, a, b, generated >= c.tokens);
      if (piece) parts.push({ index: 0, function: { arguments: piece } });
    }
    for (const p of parts) this.send(JSON.stringify({ tool_calls: [p] }), null);
    this.flush();
  }

  /** Sends the rest, the finish reason, the usage when asked for, and [DONE]. */
  finish(): void {
    if (this.closed) return;
    const c = this.reply.composed;
    this.progress(c.tokens);
    this.send("{}", c.finishReason);
    if (this.includeUsage) {
      const r = this.reply;
      const usage = JSON.stringify({
        id: r.id,
        object: "chat.completion.chunk",
        created: r.created,
        model: r.model,
        choices: [],
        usage: usageOf(r),
      });
      this.write(`data: ${usage}\n\n`);
    }
    this.write("data: [DONE]\n\n");
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
  }

  private cancelled(): void {
    if (this.closed) return;
    this.closed = true;
    this.resolveBody?.();
    this.onCancel();
  }

  /** Words [a, b) of `text`, with the separators before them; to the end when `last`. */
  private slice(text: string, a: number, b: number, last: boolean): string {
    this.ends ??= wordEnds(text);
    const ends = this.ends;
    const start = a === 0 ? 0 : (ends[a - 1] ?? text.length);
    const end = last || b >= ends.length ? text.length : ends[b - 1]!;
    return text.slice(start, end);
  }

  private send(delta: string, finish: string | null): void {
    this.write(`${this.head}${delta},"logprobs":null,"finish_reason":${finish === null ? "null" : JSON.stringify(finish)}}]}\n\n`);
  }

  private write(s: string): void {
    if (this.closed) return;
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
