/**
 * What a publisher takes (messages, properties, options) and what it needs of its client. No
 * behaviour: publisher.ts.
 */
import type { Channel } from "../amqp/channel.js";
import type { Body } from "../amqp/channel-types.js";
import type { PublisherObserver } from "../observability/observers.js";
import type { Tracing } from "../observability/tracing.js";
import type { OutboxOptions } from "../outbox/outbox.js";
import type { BasicProperties } from "../protocol/generated/spec.js";
import type { NackRetryOptions } from "./nack-retry.js";

/** Message properties as publishers take them: AMQP's basic properties plus `persistent`. */
export interface PublishProperties extends BasicProperties {
  /** Shorthand for deliveryMode 2 (true) or 1 (false). */
  persistent?: boolean;
}

/** One message for `Publisher.publish()`. */
export interface OutgoingMessage {
  /** The exchange to publish to ("" for the default exchange, where the routing key is the queue). */
  exchange: string;
  /** The routing key. */
  routingKey: string;
  /** The body; a string is sent as UTF-8. */
  body: Body;
  /** Its properties; with the publisher's `messageIds`, a messageId (a UUID) is generated unless given. */
  properties?: PublishProperties;
  /** Reject with UnroutableError when no queue takes it. */
  mandatory?: boolean;
}

/** `client.publisher()` options. docs/publishing.md. */
export interface PublisherOptions {
  /**
   * Publisher confirms (default true). Without them publish() resolves once the message is
   * written and the connection's write buffer is under its high-water mark (else once it drained).
   */
  confirm?: boolean;
  /**
   * Messages queued or awaiting a confirm at most (default 1000); past it publish() waits. With an
   * outbox: rows the relay has sent and not yet had confirmed (publish() waits for storage only).
   */
  maxInFlight?: number;
  /** Publish again what was unconfirmed when a channel or connection died (default true). */
  republish?: boolean;
  /**
   * Give every message without a messageId a generated one (a UUID), so consumers can drop the
   * duplicates that republishing creates (default false: set your own IDs, or this). It costs the
   * broker: small messages with a messageId went 8-10 % slower through RabbitMQ 3.10 than without.
   */
  messageIds?: boolean;
  /**
   * How long a message may wait to be sent (reconnecting, blocked, full), in ms (default 60000);
   * past it publish() rejects with TimeoutError. With an outbox: how long a publish waits for a
   * locked file before it rejects with a recoverable OutboxError.
   */
  publishTimeout?: number;
  /** A durable outbox: publish() resolves once stored; a relay delivers. */
  outbox?: OutboxOptions;
  /**
   * Nacked publishes are sent again with jittered exponential backoff; false rejects at the
   * first nack. Default { attempts: 8, withinMs: 10000, initialDelayMs: 200, maxDelayMs: 2000 }:
   * the retries span 4.5 to 9 s, which rides out a quorum queue's leader election.
   */
  nackRetry?: false | NackRetryOptions;
  /** Nacks in a row on one channel, with no ack between them, that renew the channel (default 3; 0: never). */
  renewAfterNacks?: number;
}

/** What the publisher needs from its client. */
export interface PublisherHost {
  /** The publisher's supervised channel (confirm mode set up), waiting while it is reopened. */
  channel(timeout: number): Promise<Channel>;
  /** The channel if it is open right now (the hot path: no promise). */
  current(): Channel | undefined;
  /** Closes `ch` (if it is still the publisher's channel) and opens a fresh one. */
  renew(ch: Channel): void;
  /** True while the broker blocks the connection. */
  readonly blocked: boolean;
  /** Calls fn on every change of the client's state. */
  onStateChange(fn: (state: string) => void): void;
  readonly closed: boolean;
  /** The client's metrics, when they are on. */
  readonly observer?: PublisherObserver | undefined;
  /** The client's tracing, when it is on. */
  readonly tracing?: Tracing | undefined;
  /** Tells the application of a fault (the client's `error` event, rate-limited): the outbox's storage faults. */
  report?(error: Error): void;
}
