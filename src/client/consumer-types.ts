/**
 * The supervised consumer's public types: its options, what a handler receives, its events and
 * counts, and what it needs from its client (ConsumerHost). No behaviour (consumer.ts).
 */
import type { Channel } from "../amqp/channel.js";
import type { WarrenError } from "../errors.js";
import type { ConsumeStats } from "../observability/observers.js";
import type { Tracing } from "../observability/tracing.js";
import type { BasicProperties } from "../protocol/generated/spec.js";
import type { FieldTable } from "../protocol/table.js";
import type { TopologySpec } from "./topology.js";

/** What a failed delivery becomes. */
export type FailurePolicy = "requeue" | "reject" | "retry";

/** Where a stream consumer starts (x-stream-offset): a keyword, an offset, or a point in time. */
export type StreamOffset = "first" | "last" | "next" | number | bigint | Date;

/** `consume({ retry })`: the delays of the retry topology and what happens after the last attempt. */
export interface RetryOptions {
  /**
   * Delay before each retry, ms: one value, or one per retry (the last repeats), e.g.
   * [1000, 10000, 60000]. Default 5000. Each distinct delay is one delay queue.
   */
  delays?: number | number[];
  /**
   * After the last attempt: `"reject"` (default) nacks it without requeue, so the queue's
   * dead-letter exchange gets it (the broker drops it when the queue has none); `"queue"`
   * moves it to `warren.dead.<queue>`, a durable queue warren declares; `{ queue }` to a queue
   * of that name warren declares.
   */
  deadLetter?: "reject" | "queue" | { queue: string };
  /**
   * The first part of the retry topology's names, in place of `warren`: `<prefix>.retry` (the
   * exchange), `<prefix>.retry.<ms>ms` (the delay queues) and `<prefix>.dead.<queue>` (`deadLetter:
   * "queue"`). Default "warren". For applications that share a vhost, or whose permissions
   * (configure/write regexes) cover only their own names. Not empty, not starting with "amq.", and
   * short enough for the names to fit AMQP's 255 bytes. docs/consumers.md.
   */
  prefix?: string;
}

/** `client.consume()` options. docs/consumers.md. */
export interface ConsumerOptions {
  /** Queue name, or the name a server-named queue declared through the client was first given. */
  queue: string;
  /** Unacknowledged deliveries at a time (basic.qos prefetch-count). Default 50, and at least `concurrency`. */
  prefetch?: number;
  /**
   * Handlers running at once (default: the prefetch). 1 handles deliveries one by one, in order;
   * past the limit, deliveries wait in arrival order.
   */
  concurrency?: number;
  /**
   * A failed handler (throw, rejection, timeout): `"requeue"` (default) nacks with requeue until
   * `maxAttempts`, then rejects; `"reject"` rejects at once (the queue's dead-letter exchange);
   * `"retry"` (the default when `retry` is given) sends it to a delay queue and back, until
   * `maxAttempts`, then dead-letters it (`retry.deadLetter`). On a stream queue, which keeps
   * every message, requeue and reject are not possible: the failure is reported and acked.
   */
  onFailure?: FailurePolicy;
  /**
   * Attempts in all, the first delivery included. Default 2 for "requeue" (requeued once, rejected
   * when it fails again) and 5 for "retry". Under "requeue", past the second attempt on a classic
   * queue (which cannot count redeliveries) a copy carrying the count goes to the queue instead.
   * A quorum queue's delivery limit (20 by default since RabbitMQ 4.0) dead-letters or drops a message
   * first if lower. `Infinity` requeues for ever, or until that limit.
   */
  maxAttempts?: number;
  /** The retry topology's delays and dead-lettering (onFailure "retry"). */
  retry?: RetryOptions;
  /**
   * A handler still running after this long (ms) fails with a TimeoutError: the policy applies,
   * its slot is freed, `message.signal` is aborted, and its late result is ignored. Default none.
   * Keep it below the broker's delivery acknowledgement timeout (`consumer_timeout`, 30 min by
   * default): on RabbitMQ 4.3+ warren sends `x-consumer-timeout` = timeoutMs + 60 s on basic.consume;
   * on older brokers raise the queue's `x-consumer-timeout` (3.12+) instead. docs/rabbitmq-4.md.
   */
  timeoutMs?: number;
  /** Stream queues: where to start reading (the x-stream-offset consumer argument). */
  streamOffset?: StreamOffset;
  /** Automatic acknowledgement: the broker forgets a message once sent. Default false. */
  noAck?: boolean;
  /**
   * The only consumer of the queue: while another holds it, subscribing is retried (403, reported). Default
   * false.
   */
  exclusive?: boolean;
  /** basic.consume arguments, e.g. { "x-priority": 10 }. */
  arguments?: FieldTable;
  /** Consumer tag prefix; the broker names the consumer when absent. */
  tag?: string;
  /**
   * How long cancel() and client.close() wait for running handlers, in ms (default: the client's
   * `closeTimeout`, else 10000). Past it a handler's `signal` is aborted and its message is left to
   * the broker to redeliver.
   */
  drainTimeout?: number;
  /** @internal deliveries are handed over unsettled (client.messages()) */
  manual?: boolean;
}

/** @deprecated renamed ConsumerOptions. */
export type ConsumeOptions = ConsumerOptions;

/** `client.messages()` options: the iterator settles explicitly, so no policy, concurrency or timeout. */
export type MessagesOptions = Omit<
  ConsumerOptions,
  "manual" | "concurrency" | "onFailure" | "maxAttempts" | "retry" | "timeoutMs"
>;

/** What a handler (or the message iterator) receives. */
export interface ConsumedMessage {
  /** The body, whole. */
  body: Buffer;
  /**
   * The message's properties (those not sent are undefined); headers hold `x-death` and warren's retry
   * headers.
   */
  properties: BasicProperties;
  /** The basic.deliver fields. */
  fields: {
    /** The delivery's tag on its channel (warren acks with it; use ack(), nack(), reject()). */
    deliveryTag: number;
    /** The broker delivered it before and it was not acked (see `attempt` for how often). */
    redelivered: boolean;
    /** The exchange it was published to ("" for the default exchange, as retried copies come back). */
    exchange: string;
    /** The routing key it was published with. */
    routingKey: string;
    /** The broker's name for the consumer. */
    consumerTag: string;
  };
  /**
   * Which attempt this is, from headers that survive redelivery: 1 + retries (x-death of warren's
   * delay queues, warren-retries) + redeliveries (x-delivery-count on quorum queues; 1 if
   * flagged redelivered elsewhere).
   */
  readonly attempt: number;
  /** Aborted when the handler timed out, or when a drain stopped waiting for it. */
  readonly signal: AbortSignal;
  /** Settled already (acked, nacked, rejected, or abandoned because its channel died). */
  readonly settled: boolean;
  /** Acks it (a no-op once settled, or when its channel died: the broker redelivers it). */
  ack(): void;
  /** Nacks it: requeued by default; `{ requeue: false }` dead-letters it. */
  nack(options?: { requeue?: boolean }): void;
  /** Rejects it without requeue (to the queue's dead-letter exchange, if it has one). */
  reject(): void;
}

/**
 * A consumer's handler: returning (or resolving) acks the message; throwing, rejecting or timing
 * out applies the failure policy. Its result is otherwise ignored.
 */
export type MessageHandler = (message: ConsumedMessage) => unknown | Promise<unknown>;

/** The consumer machine's states (machines/consumer.ts), as `state` events and `consumer.state` name them. */
export type ConsumerState =
  | "waiting"
  | "subscribing"
  | "consuming"
  | "resubscribing"
  | "draining"
  | "failed"
  | "cancelled";

/** The events a Consumer emits (`consumer.on(name, listener)`). */
export interface ConsumerEvents {
  /**
   * Every transition of the consumer's machine; `error` is what caused it (a QueueNotFoundError
   * on → resubscribing, a refusal on → failed), else undefined.
   */
  state: (change: { from: ConsumerState; to: ConsumerState; error: WarrenError | Error | undefined }) => void;
  /** A handler threw, rejected or timed out (the policy applied). With no listener: a process warning. */
  error: (error: unknown, message: ConsumedMessage) => void;
}

/** A consumer's counts since it started. */
export interface ConsumerStats {
  /** Deliveries received. */
  readonly delivered: number;
  /** Acked (handlers that succeeded, and stream failures). */
  readonly acked: number;
  /** Handlers that threw, rejected or timed out. */
  readonly failed: number;
  /** Nacked with requeue (failures under "requeue", and deliveries released by a drain). */
  readonly requeued: number;
  /** Sent to a delay queue (confirmed) and acked. */
  readonly retried: number;
  /** Rejected without requeue, or moved to warren's dead-letter queue. */
  readonly deadLettered: number;
  /** Received and not settled yet: running, waiting for a slot, or being retried. */
  readonly inFlight: number;
  /**
   * Subscription attempts that failed (a missing queue, a refusal, the channel or connection lost
   * while subscribing): each one is retried with backoff, unless it was permanent (`failed`).
   */
  readonly subscribeErrors: number;
  /** The `code` of the last failed subscription attempt (e.g. `QUEUE_NOT_FOUND`), until one succeeds. */
  readonly lastSubscribeError: string | undefined;
}

/** What the consumer needs from its client. */
export interface ConsumerHost {
  openChannel(): Promise<Channel>;
  /**
   * Re-declares the queue and its bindings if the client declared it (`lost`: the broker
   * cancelled us, the queue may be gone); resolves with its current name.
   */
  prepareQueue(ch: Channel, key: string, lost: boolean): Promise<string>;
  /** Declares and records topology (the retry topology), so recoveries restore it. */
  declare?: (ch: Channel, spec: TopologySpec) => Promise<unknown>;
  consumerRandom: () => number;
  /** The broker's version (server properties), when connected: decides x-consumer-timeout (consumer-timeout.ts). */
  brokerVersion?: () => unknown;
  /** The client's tracing, when it is on. */
  tracing?: Tracing | undefined;
  /** Instrumentation for the consumer's queue, if metrics are on. */
  consumeStats?: (queue: string) => ConsumeStats;
  /**
   * Tells the application of a fault it must hear about (the client's `error` event, rate-limited
   * by the client): a missing queue, a refused subscription. See faults.ts.
   */
  report?: (error: Error) => void;
}
