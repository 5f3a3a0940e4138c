/**
 * A consumer's `timeoutMs` and the broker's own delivery acknowledgement timeout, kept in step.
 *
 * RabbitMQ times out a delivery left unacknowledged too long (`consumer_timeout`, 30 min by default
 * since 3.8.17; checked once a minute). Before 4.3 it closes the channel with 406 PRECONDITION_FAILED
 * (every delivery on it is requeued); from 4.3 only quorum queues time out, cancelling the one
 * consumer (basic.cancel) and returning its message without counting a delivery. A queue may set its
 * own limit from 3.12 (`x-consumer-timeout` argument, `consumer-timeout` policy); a consumer from 4.3
 * (`x-consumer-timeout` on basic.consume, which overrides both; 3.12 to 4.2 ignore it).
 *
 * warren's `timeoutMs` must fire first, so that the failure policy settles the message rather than
 * the broker tearing down the channel. On 4.3 and later warren asks for `timeoutMs` plus a minute
 * (the broker's granularity) on basic.consume, so a handler allowed more than 30 minutes is not cut
 * short, and a hung process is still caught. Older brokers get nothing they would ignore: there,
 * raise the queue's limit when `timeoutMs` exceeds it (docs/rabbitmq-4.md).
 */
import type { FieldTable } from "../protocol/table.js";

/** The consumer argument (and queue argument) naming the broker's timeout, in ms. */
export const CONSUMER_TIMEOUT_ARG = "x-consumer-timeout";

/** Added to `timeoutMs`: the broker checks its timeouts once a minute. */
export const CONSUMER_TIMEOUT_MARGIN_MS = 60_000;

/** A broker version string ("3.10.7", "4.3.0-rc.1", "4.1.0+12-g…") as [major, minor], if it is one. */
export function versionOf(version: unknown): [number, number] | undefined {
  if (typeof version !== "string") return undefined;
  const m = /^(\d+)\.(\d+)/.exec(version);
  return m ? [Number(m[1]), Number(m[2])] : undefined;
}

/** The broker honours `x-consumer-timeout` on basic.consume: RabbitMQ 4.3 and later. */
export function honoursConsumerTimeoutArgument(version: unknown): boolean {
  const v = versionOf(version);
  return v !== undefined && (v[0] > 4 || (v[0] === 4 && v[1] >= 3));
}

/**
 * basic.consume's arguments for a consumer with `timeoutMs` on a broker of `version`: with
 * `x-consumer-timeout` = timeoutMs + a minute when the broker honours it, the consumer acks manually
 * and the caller did not set one; otherwise `args` unchanged.
 */
export function withConsumerTimeout(
  args: FieldTable | undefined,
  o: { timeoutMs?: number | undefined; noAck?: boolean | undefined },
  version: unknown,
): FieldTable | undefined {
  if (o.timeoutMs === undefined || o.noAck === true) return args;
  if (args?.[CONSUMER_TIMEOUT_ARG] !== undefined || !honoursConsumerTimeoutArgument(version)) return args;
  return { ...args, [CONSUMER_TIMEOUT_ARG]: Math.ceil(o.timeoutMs) + CONSUMER_TIMEOUT_MARGIN_MS };
}
