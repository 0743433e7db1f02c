import { JetStreamApiCodes, JetStreamApiError } from "@nats-io/jetstream";
import { jserrors } from "@nats-io/jetstream/internal";
import {
  AuthorizationError,
  ClosedConnectionError,
  ConnectionError,
  InvalidArgumentError,
  NoRespondersError,
  RequestError,
  TimeoutError,
  UserAuthenticationExpiredError,
} from "@nats-io/transport-node";

/** Errors of the NATS layer; each names what failed, `cause` keeps the client's error. */

/** NATS cannot be reached, or a JetStream request failed after its retries. */
export class NatsUnavailableError extends Error {
  override name = "NatsUnavailableError";
}

/** A message or value is larger than the server accepts. */
export class NatsPayloadError extends Error {
  override name = "NatsPayloadError";
}

/** A record in a bucket that is not one (garbage someone put there): names the record and what is wrong. */
export class BrokenRecordError extends Error {
  override name = "BrokenRecordError";
}

/** A job id that is taken, or a job that is not there. */
export class JobStoreError extends Error {
  override name = "JobStoreError";
}

/** JetStream error codes matrixd reacts to (the client's own table). */
export const ApiCodes = {
  /** "wrong last sequence": a publish expecting an empty subject found one */
  wrongLastSequence: JetStreamApiCodes.StreamWrongLastSequence,
  streamNotFound: JetStreamApiCodes.StreamNotFound,
  consumerNotFound: JetStreamApiCodes.ConsumerNotFound,
} as const;

/** True when `err` is JetStream's answer with error code `code`. */
export function isApiError(err: unknown, code: number): boolean {
  return err instanceof JetStreamApiError && err.code === code;
}

/**
 * True for errors that come from the payload being too large (never worth a
 * retry): the client's own check against the server's `max_payload`, or the
 * server refusing a message over the stream's or account's limit.
 */
export function isPayloadTooLarge(err: unknown): boolean {
  if (err instanceof InvalidArgumentError) return err.message.includes("max_payload");
  if (err instanceof JetStreamApiError) return /message size exceeds|maximum payload|max payload/i.test(err.message);
  return false;
}

/** True when an error says NATS (or its JetStream) cannot answer now: the caller may try again later. */
export function isNatsUnavailable(err: unknown): boolean {
  return (
    err instanceof NatsUnavailableError ||
    err instanceof TimeoutError ||
    err instanceof NoRespondersError ||
    err instanceof RequestError ||
    err instanceof ConnectionError ||
    err instanceof ClosedConnectionError ||
    err instanceof jserrors.JetStreamNotEnabled ||
    isApiError(err, ApiCodes.streamNotFound)
  );
}

/** True when a request got no answer in time. */
export function isTimeout(err: unknown): boolean {
  return err instanceof TimeoutError;
}

/** True when the server refused this client's credentials (trying again cannot help). */
export function isAuthRefused(err: unknown): boolean {
  return err instanceof AuthorizationError || err instanceof UserAuthenticationExpiredError;
}
