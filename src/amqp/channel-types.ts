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
  body: Buffer;
  properties: BasicProperties;
  deliveryTag: number;
  redelivered: boolean;
  exchange: string;
  routingKey: string;
  /** Set for consumed messages. */
  consumerTag?: string;
  /** Set for basic.get: messages left in the queue. */
  messageCount?: number;
}

/** A message the broker returned (mandatory and unroutable). */
export interface ReturnedMessage {
  body: Buffer;
  properties: BasicProperties;
  replyCode: number;
  replyText: string;
  exchange: string;
  routingKey: string;
}

export type Body = Buffer | Uint8Array | string;

export interface ExchangeDeclareOptions {
  exchange: string;
  /** direct (default), fanout, topic, headers, or a plugin's type such as x-delayed-message. */
  type?: string;
  passive?: boolean;
  durable?: boolean;
  autoDelete?: boolean;
  internal?: boolean;
  noWait?: boolean;
  arguments?: FieldTable;
}
export interface ExchangeDeleteOptions {
  exchange: string;
  ifUnused?: boolean;
  noWait?: boolean;
}
export interface ExchangeBindOptions {
  destination: string;
  source: string;
  routingKey?: string;
  noWait?: boolean;
  arguments?: FieldTable;
}
export interface QueueDeclareOptions {
  /** Empty (default) asks the broker to name the queue. */
  queue?: string;
  passive?: boolean;
  durable?: boolean;
  exclusive?: boolean;
  autoDelete?: boolean;
  noWait?: boolean;
  /** e.g. { "x-queue-type": "quorum", "x-message-ttl": 60000 } */
  arguments?: FieldTable;
}
export interface QueueDeclareResult {
  queue: string;
  messageCount: number;
  consumerCount: number;
}
export interface QueueBindOptions {
  queue: string;
  exchange: string;
  routingKey?: string;
  noWait?: boolean;
  arguments?: FieldTable;
}
export interface QueueUnbindOptions {
  queue: string;
  exchange: string;
  routingKey?: string;
  arguments?: FieldTable;
}
export interface QueuePurgeOptions {
  queue: string;
  noWait?: boolean;
}
export interface QueueDeleteOptions {
  queue: string;
  ifUnused?: boolean;
  ifEmpty?: boolean;
  noWait?: boolean;
}
export interface QosOptions {
  prefetchCount?: number;
  prefetchSize?: number;
  /** RabbitMQ: true applies the limit to the whole channel, false (default) to each new consumer. */
  global?: boolean;
}
export interface ConsumeOptions {
  queue: string;
  /** Empty (default): the broker names the consumer. */
  consumerTag?: string;
  noLocal?: boolean;
  noAck?: boolean;
  exclusive?: boolean;
  /** e.g. { "x-priority": 10 } or { "x-stream-offset": "first" } */
  arguments?: FieldTable;
}
export interface ConsumeHandlers {
  /** Each delivery; a thrown error or rejected promise is reported through the channel's "handlerError" event. */
  onMessage: (message: Message) => void | Promise<void>;
  /** The broker cancelled the consumer (queue deleted, node down). */
  onCancel?: (consumerTag: string) => void;
}
export interface PublishOptions {
  mandatory?: boolean;
  immediate?: boolean;
}
export interface GetOptions {
  queue: string;
  noAck?: boolean;
}

export interface ChannelEvents {
  /** A mandatory message came back unroutable. */
  return: (message: ReturnedMessage) => void;
  /** The broker cancelled a consumer. */
  cancel: (consumerTag: string) => void;
  /** channel.flow from the broker. */
  flow: (active: boolean) => void;
  /** A consumer's onMessage threw or rejected. */
  handlerError: (error: unknown, message: Message) => void;
  /** Closed, once; error is undefined when we closed it. */
  close: (error: ChannelError | ConnectionError | undefined) => void;
}

/** Told the broker's answer to one publish; called as methods (an object with state may be its own sink). */
export interface ConfirmSink {
  resolve(): void;
  reject(e: Error): void;
}
