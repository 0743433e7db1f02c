/**
 * The per-kind dialects of the servers matrixd speaks to: how each reports
 * its load and size, which structured-output field it honours, what its
 * grammar converter takes and what its errors mean; and finding out an
 * endpoint's kind.
 */
export { dialectFor, detectKind, probeKind } from "./detect.ts";
export type { KindEvidence, KindFound, ProbeFetch, ProbeOptions, ProbeResult } from "./detect.ts";
export { KIND_SETTINGS, SERVER_KINDS } from "./types.ts";
export type { Dialect, ErrorClass, InfoProbe, KindSetting, RateLimitReport, ServerInfo, ServerKind, ServerLoad } from "./types.ts";
