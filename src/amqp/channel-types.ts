/**
 * The channel API's public types: messages, bodies, the option object of each method, the
 * channel's events. No behaviour.
 */
import type { ChannelError, ConnectionError } from "../errors.js";
import type { BasicProperties } from "../protocol/generated/spec.js";
import type { FieldTable } from "../protocol/table.js";

export type { BasicProperties };

/** A message delivered by basic.deliver or basic.get-ok. */
export interface Message {
  /** The body, whole (assembled from its body frames). */
  body: Buffer;
  /** The content header's properties (those not sent are undefined). */
  properties: BasicProperties;
  /**
   * The channel's number for this delivery: ack, nack or reject it with this tag on the same
   * channel (a tag means nothing on another channel, or after its channel closed).
   */
  deliveryTag: number;
  /** The broker delivered it before and it was not acked (requeued, or its channel died). */
  redelivered: boolean;
  /** The exchange it was published to ("" for the default exchange). */
  exchange: string;
  /** The routing key it was published with. */
  routingKey: string;
  /** Set for consumed messages. */
  consumerTag?: string;
  /** Set for basic.get: messages left in the queue. */
  messageCount?: number;
}

/** A message the broker returned (mandatory and unroutable). */
export interface ReturnedMessage {
  /** The body, as it was published. */
  body: Buffer;
  /** The properties, as they were published. */
  properties: BasicProperties;
  /** Why it came back: 312 NO_ROUTE (mandatory, and no queue is bound for it). */
  replyCode: number;
  /** The broker's text for replyCode, e.g. "NO_ROUTE". */
  replyText: string;
  /** The exchange it was published to. */
  exchange: string;
  /** The routing key it was published with. */
  routingKey: string;
}

/**
 * A message body: a string is sent as UTF-8. Bodies of 64 KiB and more are written without a copy:
 * do not change such a buffer until its publish resolved.
 */
export type Body = Buffer | Uint8Array | string;

/** `channel.exchangeDeclare()`: exchange.declare. Booleans default to false. */
export interface ExchangeDeclareOptions {
  /** The exchange's name (names starting "amq." are reserved to the broker). */
  exchange: string;
  /** direct (default), fanout, topic, headers, or a plugin's type such as x-delayed-message. */
  type?: string;
  /** Only check that it exists (404 NOT_FOUND closes the channel if not); declares nothing. */
  passive?: boolean;
  /** Survives a broker restart. */
  durable?: boolean;
  /** Deleted once its last binding (as a source) is removed. */
  autoDelete?: boolean;
  /** Takes no publishes from clients, only from other exchanges (exchange-to-exchange bindings). */
  internal?: boolean;
  /** Send without waiting for declare-ok: resolves at once, and a refusal closes the channel later. */
  noWait?: boolean;
  /** Exchange arguments, e.g. { "alternate-exchange": "unrouted" }. */
  arguments?: FieldTable;
}
/** `channel.exchangeDelete()`: exchange.delete. */
export interface ExchangeDeleteOptions {
  /** The exchange to delete. */
  exchange: string;
  /** Only if it has no bindings (else 406 PRECONDITION_FAILED closes the channel). Default false. */
  ifUnused?: boolean;
  /** Send without waiting for delete-ok. Default false. */
  noWait?: boolean;
}
/** `channel.exchangeBind()` and `exchangeUnbind()`: RabbitMQ's exchange-to-exchange bindings. */
export interface ExchangeBindOptions {
  /** The exchange that receives the messages. */
  destination: string;
  /** The exchange the messages are published to. */
  source: string;
  /** The binding key. Default "". */
  routingKey?: string;
  /** Send without waiting for bind-ok (unbind-ok). Default false. */
  noWait?: boolean;
  /** Binding arguments (a headers exchange matches on them). */
  arguments?: FieldTable;
}
/** `channel.queueDeclare()`: queue.declare. Booleans default to false. */
export interface QueueDeclareOptions {
  /** Empty (default) asks the broker to name the queue. */
  queue?: string;
  /** Only check that it exists (404 NOT_FOUND closes the channel if not); declares nothing. */
  passive?: boolean;
  /** Survives a broker restart (its messages too, when published persistent). */
  durable?: boolean;
  /** Used only by this connection, and deleted when it closes. */
  exclusive?: boolean;
  /** Deleted once its last consumer is cancelled (never if it never had one). */
  autoDelete?: boolean;
  /** Send without waiting for declare-ok: resolves at once with the name given and zero counts. */
  noWait?: boolean;
  /** e.g. { "x-queue-type": "quorum", "x-message-ttl": 60000 } */
  arguments?: FieldTable;
}
/** What queue.declare-ok says. */
export interface QueueDeclareResult {
  /** The queue's name: the one given, or the broker's for a server-named queue. */
  queue: string;
  /** Messages ready in the queue (not counting those delivered and unacked). */
  messageCount: number;
  /** Consumers of the queue. */
  consumerCount: number;
}
/** `channel.queueBind()`: queue.bind. */
export interface QueueBindOptions {
  /** The queue to bind. */
  queue: string;
  /** The exchange it receives messages from. */
  exchange: string;
  /** The binding key. Default "". */
  routingKey?: string;
  /** Send without waiting for bind-ok. Default false. */
  noWait?: boolean;
  /** Binding arguments (a headers exchange matches on them). */
  arguments?: FieldTable;
}
/** `channel.queueUnbind()`: queue.unbind (which has no no-wait form). */
export interface QueueUnbindOptions {
  /** The bound queue. */
  queue: string;
  /** The exchange it is bound to. */
  exchange: string;
  /** The binding key, as it was bound. Default "". */
  routingKey?: string;
  /** The binding's arguments, as they were bound. */
  arguments?: FieldTable;
}
/** `channel.queuePurge()`: queue.purge. */
export interface QueuePurgeOptions {
  /** The queue to empty. */
  queue: string;
  /** Send without waiting for purge-ok (resolves with 0). Default false. */
  noWait?: boolean;
}
/** `channel.queueDelete()`: queue.delete. */
export interface QueueDeleteOptions {
  /** The queue to delete. */
  queue: string;
  /** Only if it has no consumers (else 406 PRECONDITION_FAILED closes the channel). Default false. */
  ifUnused?: boolean;
  /** Only if it holds no messages (else 406 PRECONDITION_FAILED closes the channel). Default false. */
  ifEmpty?: boolean;
  /** Send without waiting for delete-ok (resolves with 0). Default false. */
  noWait?: boolean;
}
/** `channel.basicQos()`: basic.qos, the prefetch window. */
export interface QosOptions {
  /** Unacked deliveries at most (default 0: no limit). */
  prefetchCount?: number;
  /** Unacked body bytes at most (default 0: no limit; RabbitMQ refuses any other value). */
  prefetchSize?: number;
  /** RabbitMQ: true applies the limit to the whole channel, false (default) to each new consumer. */
  global?: boolean;
}
/** `channel.basicConsume()`: basic.consume. Booleans default to false. */
export interface BasicConsumeOptions {
  /** The queue to consume from. */
  queue: string;
  /** Empty (default): the broker names the consumer. */
  consumerTag?: string;
  /** Do not deliver messages published on this connection (RabbitMQ ignores it). */
  noLocal?: boolean;
  /** The broker considers a message acked once it sent it: no basicAck, and a crash loses it. */
  noAck?: boolean;
  /** The only consumer of the queue: 403 ACCESS_REFUSED closes the channel while it has another. */
  exclusive?: boolean;
  /** e.g. { "x-priority": 10 } or { "x-stream-offset": "first" } */
  arguments?: FieldTable;
}

/** @deprecated renamed BasicConsumeOptions (the supervised consumer's are ConsumerOptions). */
export type ConsumeOptions = BasicConsumeOptions;
/** What `channel.basicConsume()` calls. */
export interface ConsumeHandlers {
  /** Each delivery; a thrown error or rejected promise is reported through the channel's "handlerError" event. */
  onMessage: (message: Message) => void | Promise<void>;
  /** The broker cancelled the consumer (queue deleted, node down). */
  onCancel?: (consumerTag: string) => void;
}
/** The flags of basic.publish. */
export interface PublishOptions {
  /**
   * Return the message (basic.return: the `return` event, or UnroutableError from `publish()` in
   * confirm mode) when no queue is bound for it, instead of dropping it. Default false.
   */
  mandatory?: boolean;
  /** AMQP's immediate flag. RabbitMQ does not support it and closes the connection (540 NOT_IMPLEMENTED). */
  immediate?: boolean;
}
/** `channel.basicGet()`: basic.get. */
export interface GetOptions {
  /** The queue to take a message from. */
  queue: string;
  /** The broker considers the message acked once sent (no basicAck). Default false. */
  noAck?: boolean;
}

/** The events a Channel emits (`channel.on(name, listener)`). */
export interface ChannelEvents {
  /** A mandatory message came back unroutable. */
  return: (message: ReturnedMessage) => void;
  /**
   * The broker cancelled a consumer (its queue was deleted or its node went down); its onCancel is called
   * too.
   */
  cancel: (consumerTag: string) => void;
  /** channel.flow from the broker: false asks us to stop publishing on this channel, true to resume. */
  flow: (active: boolean) => void;
  /** A consumer's onMessage threw or rejected (with no listener: a process warning). */
  handlerError: (error: unknown, message: Message) => void;
  /**
   * Closed, once; error is undefined when we closed it. A ChannelClosedByBroker for a channel
   * exception, a ConnectionClosedError when the connection went, a MethodTimeoutError when a
   * synchronous method got no reply in time.
   */
  close: (error: ChannelError | ConnectionError | undefined) => void;
}

/** Told the broker's answer to one publish; called as methods (an object with state may be its own sink). */
export interface ConfirmSink {
  /** basic.ack: the broker took responsibility for the message. */
  resolve(): void;
  /** PublishNackedError, UnroutableError, or the channel's close reason when it closed first. */
  reject(e: Error): void;
}
