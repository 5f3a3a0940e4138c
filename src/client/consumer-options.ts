/**
 * A consumer's options checked and resolved: a bad value is a ConfigError naming it, before
 * anything is subscribed; the defaults are the ones docs/consumers.md states.
 */
import { ConfigError } from "../errors.js";
import type { ConsumerOptions, FailurePolicy } from "./consumer-types.js";
import { DEFAULT_RETRY_PREFIX, deadLetterQueueName, delayQueueName } from "./retry.js";

/** The retry delay when `retry.delays` is not given (ms). */
const DEFAULT_DELAY = 5000;

export interface ResolvedConsumeOptions {
  policy: FailurePolicy;
  maxAttempts: number;
  /** basic.qos prefetch: at least the concurrency. */
  prefetch: number;
  /** Handlers at once (unbounded for a manual consumer: the iterator pulls). */
  concurrency: number;
  /** Retry delays by retry number (the last one repeats), in whole ms. */
  delays: number[];
  /** warren's dead-letter queue for messages out of retries, if asked for. */
  deadLetterQueue: string | undefined;
  /** The first part of the retry topology's names. */
  retryPrefix: string;
  /** How long a drain waits for running handlers (ms). */
  drainTimeout: number;
  manual: boolean;
}

export function resolveConsumeOptions(o: ConsumerOptions): ResolvedConsumeOptions {
  const manual = o.manual === true;
  const policy = o.onFailure ?? (o.retry !== undefined ? "retry" : "requeue");
  const positive = (n: number | undefined, what: string) => {
    if (n !== undefined && !(n >= 1))
      throw new ConfigError(`consume(): ${what} must be at least 1 (got ${n})`);
  };
  positive(o.concurrency, "concurrency");
  positive(o.prefetch, "prefetch");
  positive(o.maxAttempts, "maxAttempts");
  if (o.timeoutMs !== undefined && !(o.timeoutMs > 0))
    throw new ConfigError(`consume(): timeoutMs must be positive (got ${o.timeoutMs})`);
  if (o.streamOffset !== undefined && o.noAck)
    throw new ConfigError("consume(): a stream consumer needs manual acks (noAck false)");
  const prefetch = Math.max(o.prefetch ?? 50, o.concurrency ?? 1);
  const d = o.retry?.delays ?? DEFAULT_DELAY;
  const delays = (Array.isArray(d) ? d : [d]).map((ms) => Math.round(ms));
  if (delays.length === 0 || delays.some((ms) => !(ms >= 0)))
    throw new ConfigError("consume(): retry.delays must be one or more delays in ms, each 0 or more");
  const dl = o.retry?.deadLetter;
  const retryPrefix = o.retry?.prefix ?? DEFAULT_RETRY_PREFIX;
  const deadLetterQueue =
    dl === "queue"
      ? deadLetterQueueName(o.queue, retryPrefix)
      : typeof dl === "object"
        ? dl.queue
        : undefined;
  checkRetryNames(retryPrefix, delays, deadLetterQueue);
  return {
    policy,
    maxAttempts: o.maxAttempts ?? (policy === "retry" ? 5 : 2),
    prefetch,
    concurrency: manual ? Number.POSITIVE_INFINITY : (o.concurrency ?? prefetch),
    delays,
    deadLetterQueue,
    retryPrefix,
    drainTimeout: o.drainTimeout ?? 10_000,
    manual,
  };
}

/** AMQP names are short strings: 255 bytes at most. */
const MAX_NAME_BYTES = 255;

/**
 * `retry.prefix` and the names it makes: a ConfigError now rather than a channel closed by the
 * broker at the first retry (403 for an `amq.` name, a frame error for a name past 255 bytes).
 */
function checkRetryNames(
  prefix: string,
  delays: readonly number[],
  deadLetterQueue: string | undefined,
): void {
  if (typeof prefix !== "string" || prefix === "")
    throw new ConfigError('consume(): retry.prefix must be a non-empty string (default "warren")');
  if (prefix.startsWith("amq."))
    throw new ConfigError(
      `consume(): retry.prefix "${prefix}" starts with "amq.", which the broker reserves`,
    );
  const names = [...delays.map((ms) => delayQueueName(ms, prefix)), deadLetterQueue ?? ""];
  const long = names.find((n) => Buffer.byteLength(n) > MAX_NAME_BYTES);
  if (long !== undefined)
    throw new ConfigError(
      `consume(): the retry topology's name "${long.slice(0, 40)}…" is longer than AMQP's ${MAX_NAME_BYTES} bytes: shorten retry.prefix (or the queue's name)`,
    );
}
