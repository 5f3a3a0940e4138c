/**
 * A consumer's options checked and resolved: a bad value is a ConfigError naming it, before
 * anything is subscribed; the defaults are the ones docs/consumers.md states.
 */
import { ConfigError } from "../errors.js";
import type { ConsumerOptions, FailurePolicy } from "./consumer-types.js";
import { deadLetterQueueName } from "./retry.js";

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
  return {
    policy,
    maxAttempts: o.maxAttempts ?? (policy === "retry" ? 5 : 2),
    prefetch,
    concurrency: manual ? Number.POSITIVE_INFINITY : (o.concurrency ?? prefetch),
    delays,
    deadLetterQueue:
      dl === "queue" ? deadLetterQueueName(o.queue) : typeof dl === "object" ? dl.queue : undefined,
    drainTimeout: o.drainTimeout ?? 10_000,
    manual,
  };
}
