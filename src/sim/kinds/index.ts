import { llamacppKind } from "./llamacpp.ts";
import { openaiKind } from "./openai.ts";
import { sglangKind } from "./sglang.ts";
import { tgiKind } from "./tgi.ts";
import type { KindSurface, SimLive } from "./types.ts";
import { vllmKind } from "./vllm.ts";

/** The protocol surface of the kind a server was started as; chosen once, when it starts. */
export function kindSurface(live: SimLive): KindSurface {
  switch (live.o.kind) {
    case "vllm":
      return vllmKind(live);
    case "sglang":
      return sglangKind(live);
    case "llamacpp":
      return llamacppKind(live);
    case "tgi":
      return tgiKind(live);
    case "openai":
      return openaiKind(live);
  }
}

export type { KindSurface, ReplyInfo, SimLive, StreamEncoder } from "./types.ts";
