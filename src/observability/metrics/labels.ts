/**
 * The label values warren's metrics use that applications may match on: no prom-client here, so
 * these stay importable (and their types compile) without it.
 */
import {
  ChannelClosedByBroker,
  PublishNackedError,
  TimeoutError,
  UnroutableError,
  WarrenError,
} from "../../errors.js";

/** The label value of names past the cap. */
export const OTHER_LABEL = "_other";
/** The label value of the default exchange (""). */
export const DEFAULT_EXCHANGE_LABEL = "(default)";
/** Why a publish promise rejected, as `warren_publish_failed_total{reason}` labels it. */
export type PublishFailure = "nacked" | "unroutable" | "timeout" | "closed" | "refused";
/** Every reason, each one a series from the start. */
export const PUBLISH_FAILURES: readonly PublishFailure[] = [
  "nacked",
  "unroutable",
  "timeout",
  "closed",
  "refused",
];

/** The reason label of a publish that failed with `error`. */
export function publishFailureReason(error: Error): PublishFailure {
  if (error instanceof PublishNackedError) return "nacked";
  if (error instanceof UnroutableError) return "unroutable";
  if (error instanceof TimeoutError) return "timeout";
  // The broker closed the channel because of this publish (e.g. 404 no exchange), or the
  // library would not send it (an unencodable header): refused. Everything else is a close.
  if (error instanceof ChannelClosedByBroker || !(error instanceof WarrenError)) return "refused";
  return "closed";
}
