/** Errors of the NATS layer; each names what failed, `cause` keeps the client's error. */

/** NATS cannot be reached, or a JetStream request failed after its retries. */
export class NatsUnavailableError extends Error {
  override name = "NatsUnavailableError";
}

/** A message or value is larger than the server accepts. */
export class NatsPayloadError extends Error {
  override name = "NatsPayloadError";
}

/** A job id that is taken, or a job that is not there. */
export class JobStoreError extends Error {
  override name = "JobStoreError";
}

/** The JetStream API error code of an error, when it is one. */
export function apiErrorCode(err: unknown): number | undefined {
  if (err && typeof err === "object" && "code" in err && typeof err.code === "number") return err.code;
  return undefined;
}

/** JetStream error codes matrixd reacts to. */
export const ApiCodes = {
  /** "wrong last sequence": a publish expecting an empty subject found one */
  wrongLastSequence: 10071,
  streamNotFound: 10059,
  consumerNotFound: 10014,
} as const;

/** True for errors that come from the payload being too large (never worth a retry). */
export function isPayloadTooLarge(err: unknown): boolean {
  const msg = err instanceof Error ? err.message.toLowerCase() : String(err).toLowerCase();
  return msg.includes("max_payload") || msg.includes("max payload") || msg.includes("maximum payload") || msg.includes("message size exceeds");
}

/** Names of the NATS client's errors that mean "cannot reach NATS or JetStream now", not a bad request. */
const UNAVAILABLE_NAMES = new Set(["TimeoutError", "NoRespondersError", "RequestError", "ConnectionError", "ClosedConnectionError", "JetStreamNotEnabled"]);

/** True when an error says NATS (or its JetStream) cannot answer now: the caller may try again later. */
export function isNatsUnavailable(err: unknown): boolean {
  if (err instanceof NatsUnavailableError) return true;
  return err instanceof Error && (UNAVAILABLE_NAMES.has(err.name) || apiErrorCode(err) === ApiCodes.streamNotFound);
}

/** True when a request got no answer in time. */
export function isTimeout(err: unknown): boolean {
  return err instanceof Error && err.name === "TimeoutError";
}
