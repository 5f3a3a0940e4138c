/**
 * How the channel API's option objects become AMQP methods: names as the spec spells them
 * (`noWait` → `nowait`), defaults the API promises (`type` direct, `queue` "" for a server-named
 * queue, prefetch 0), nothing else. Pure: the Channel sends what these return.
 */
import type { MethodInput } from "../protocol/generated/spec.js";
import type {
  BasicConsumeOptions,
  ExchangeBindOptions,
  ExchangeDeclareOptions,
  ExchangeDeleteOptions,
  QosOptions,
  QueueBindOptions,
  QueueDeclareOptions,
  QueueDeleteOptions,
  QueuePurgeOptions,
  QueueUnbindOptions,
} from "./channel-types.js";

export function exchangeDeclare(o: ExchangeDeclareOptions): MethodInput {
  return {
    name: "exchange.declare",
    args: {
      exchange: o.exchange,
      type: o.type ?? "direct",
      passive: o.passive,
      durable: o.durable,
      autoDelete: o.autoDelete,
      internal: o.internal,
      nowait: o.noWait,
      arguments: o.arguments,
    },
  };
}

export function exchangeDelete(o: ExchangeDeleteOptions): MethodInput {
  return { name: "exchange.delete", args: { exchange: o.exchange, ifUnused: o.ifUnused, nowait: o.noWait } };
}

/** exchange.bind or exchange.unbind (RabbitMQ's exchange-to-exchange bindings). */
export function exchangeBinding(
  name: "exchange.bind" | "exchange.unbind",
  o: ExchangeBindOptions,
): MethodInput {
  return {
    name,
    args: {
      destination: o.destination,
      source: o.source,
      routingKey: o.routingKey,
      nowait: o.noWait,
      arguments: o.arguments,
    },
  };
}

export function queueDeclare(o: QueueDeclareOptions): MethodInput {
  return {
    name: "queue.declare",
    args: {
      queue: o.queue ?? "",
      passive: o.passive,
      durable: o.durable,
      exclusive: o.exclusive,
      autoDelete: o.autoDelete,
      nowait: o.noWait,
      arguments: o.arguments,
    },
  };
}

export function queueBind(o: QueueBindOptions): MethodInput {
  return {
    name: "queue.bind",
    args: {
      queue: o.queue,
      exchange: o.exchange,
      routingKey: o.routingKey,
      nowait: o.noWait,
      arguments: o.arguments,
    },
  };
}

export function queueUnbind(o: QueueUnbindOptions): MethodInput {
  return {
    name: "queue.unbind",
    args: { queue: o.queue, exchange: o.exchange, routingKey: o.routingKey, arguments: o.arguments },
  };
}

export function queuePurge(o: QueuePurgeOptions): MethodInput {
  return { name: "queue.purge", args: { queue: o.queue, nowait: o.noWait } };
}

export function queueDelete(o: QueueDeleteOptions): MethodInput {
  return {
    name: "queue.delete",
    args: { queue: o.queue, ifUnused: o.ifUnused, ifEmpty: o.ifEmpty, nowait: o.noWait },
  };
}

export function basicQos(o: QosOptions): MethodInput {
  return {
    name: "basic.qos",
    args: { prefetchCount: o.prefetchCount ?? 0, prefetchSize: o.prefetchSize ?? 0, global: o.global },
  };
}

/** basic.consume with `tag` ("" lets the broker name the consumer). */
export function basicConsume(o: BasicConsumeOptions, tag: string): MethodInput {
  return {
    name: "basic.consume",
    args: {
      queue: o.queue,
      consumerTag: tag,
      noLocal: o.noLocal,
      noAck: o.noAck,
      exclusive: o.exclusive,
      arguments: o.arguments,
    },
  };
}
