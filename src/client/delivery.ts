/**
 * One delivery of a supervised consumer: the message its handler receives (ConsumedMessage) and
 * the consumer's bookkeeping of it (settled, finished, its channel and epoch, span, timer). Acks
 * and nacks go back through the consumer, which alone knows whether the channel is still live.
 */
import type { Span } from "@opentelemetry/api";
import type { Channel } from "../amqp/channel.js";
import type { Message } from "../amqp/channel-types.js";
import type { BasicProperties } from "../protocol/generated/spec.js";
import type { ConsumedMessage } from "./consumer-types.js";
import { attemptOf } from "./retry.js";

/** What a delivery needs from its consumer. */
export interface DeliveryOwner {
  /** msg.ack() / nack() / reject(). */
  settleByUser(d: Delivery, op: Settle): void;
  /** A running handler asked for its message's signal (aborted when a drain gives up on it). */
  watchSignal(d: Delivery): void;
  /** The first part of the retry topology's names, whose delay queues' x-death entries are retries. */
  readonly retryPrefix: string;
}

/**
 * What is sent for a delivery: basic.ack; `requeue`, a failed attempt back in the queue (basic.reject
 * with requeue, which every quorum queue counts in x-delivery-count, RabbitMQ 4.3 included);
 * `release`, a delivery given back unprocessed (basic.nack with requeue, which RabbitMQ 4.3 does not
 * count: a drain, a buffered delivery, a copy that could not be confirmed); `reject`, basic.reject
 * without requeue (the queue's dead-letter exchange).
 */
export type Settle = "ack" | "requeue" | "release" | "reject";

/** One delivery: the message handed out, and its bookkeeping. */
export class Delivery implements ConsumedMessage {
  body: Buffer;
  properties: BasicProperties;
  fields: ConsumedMessage["fields"];
  settled = false;
  /** The handler returned, threw or timed out (a late result is ignored). */
  finished = false;
  started = 0;
  /** The consumer's channel epoch when its handler started (a slot is only freed in the same epoch). */
  epoch = 0;
  /** Its consumer span, when tracing is on and the span is recorded (sampled). */
  span: Span | undefined;
  timer: NodeJS.Timeout | undefined;
  failed = false;
  error: unknown;
  /** Stream offset (x-stream-offset header), on stream consumers. */
  offset: number | undefined;
  private controller: AbortController | undefined;

  constructor(
    readonly consumer: DeliveryOwner,
    readonly channel: Channel,
    m: Message,
  ) {
    this.body = m.body;
    this.properties = m.properties;
    this.fields = {
      deliveryTag: m.deliveryTag,
      redelivered: m.redelivered,
      exchange: m.exchange,
      routingKey: m.routingKey,
      consumerTag: m.consumerTag ?? "",
    };
  }

  get attempt(): number {
    return attemptOf(this.properties, this.fields.redelivered, this.consumer.retryPrefix);
  }

  get signal(): AbortSignal {
    if (this.controller === undefined) {
      this.controller = new AbortController();
      if (!this.finished) this.consumer.watchSignal(this);
    }
    return this.controller.signal;
  }

  abort(reason: unknown): void {
    this.controller?.abort(reason);
  }

  ack(): void {
    this.consumer.settleByUser(this, "ack");
  }

  nack(options: { requeue?: boolean } = {}): void {
    // The method the application named: basic.nack (RabbitMQ 4.3 counts no delivery for it).
    this.consumer.settleByUser(this, options.requeue === false ? "reject" : "release");
  }

  reject(): void {
    this.consumer.settleByUser(this, "reject");
  }
}
