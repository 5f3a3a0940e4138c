/**
 * OpenTelemetry traces for publishes and deliveries, with @opentelemetry/api only: the
 * application brings the SDK (tracer provider, exporter, propagator, context manager).
 *
 *   const client = connect({ url, tracing: true });               // the global tracer provider
 *   const client = connect({ url, tracing: { tracer } });         // or a tracer of your own
 *
 * - A PRODUCER span per publish, started when publish() accepts the message (a child of the
 *   active context) and ended at the broker's confirm: with an error status on a final nack,
 *   an unroutable return, a timeout or a close. Each nack retry and each re-publish after a
 *   recovery is an event on it. With an outbox it ends once the row is stored.
 * - The W3C trace context (`traceparent`, `tracestate`) goes into a copy of the message headers
 *   when the message is accepted, so every re-send (nack retry, re-publish after recovery, the
 *   outbox relay after a restart) carries the same producer span.
 * - A CONSUMER span per delivery around the handler, parented to the context extracted from
 *   the headers (and linked to it, as the messaging conventions recommend), ended when the
 *   delivery is acked, nacked or rejected. The handler runs inside it, so user spans nest.
 *
 * Attributes follow OpenTelemetry's messaging semantic conventions. The broker appears as
 * server.address / server.port only: never a URL, never credentials.
 */
import {
  type Attributes,
  type Context,
  context,
  type Link,
  propagation,
  ROOT_CONTEXT,
  type Span,
  SpanKind,
  type SpanOptions,
  SpanStatusCode,
  type TextMapGetter,
  type Tracer,
  trace,
} from "@opentelemetry/api";
import type { Body } from "../amqp/channel-types.js";
import type { BasicProperties } from "../protocol/generated/spec.js";
import type { FieldTable } from "../protocol/table.js";
import { VERSION } from "../version.js";

/** `connect({ tracing: { … } })`: which tracer, and which messages carry trace context. */
export interface TracingOptions {
  /** The tracer to use; default `trace.getTracer("warren", <version>)` (the global provider). */
  tracer?: Tracer;
  /**
   * Which publishes carry their trace context in the headers: `"always"` (default, as W3C trace
   * context asks: consumers see the sampling decision) or `"sampled"`: only those whose producer
   * span is recorded. With a low sampling ratio `"sampled"` spares most messages the header (its
   * bytes cost the broker too); consumers of unsampled messages then start their own traces.
   */
  propagate?: "always" | "sampled";
}

/** `connect({ tracing })`: off by default; `true` uses the global tracer provider. */
export type TracingOption = boolean | TracingOptions;

/** Where the client is connected (host and port only). */
export interface Endpoint {
  host: string;
  port: number;
}

/** How a consumer span ended: what was sent to the broker for the delivery. */
export type DeliveryOutcome =
  /** basic.ack: the handler succeeded. */
  | "ack"
  /** Requeued: basic.reject with requeue when the handler failed with attempts left (the "requeue" policy); basic.nack with requeue for a delivery given back unprocessed. */
  | "nack"
  /** basic.reject without requeue (dead-lettered if the queue has a DLX): the "reject" policy, or the last requeue attempt. */
  | "reject"
  /** noAck consumer: the broker forgot the message when it sent it. */
  | "auto_ack"
  /** Its channel died before the handler finished: nothing sent, the broker redelivers it. */
  | "abandoned"
  /** The handler failed: a copy went to a retry (delay) queue, confirmed, and it was acked. */
  | "retry"
  /** The last attempt failed: rejected to the queue's dead-letter exchange, or moved to warren's dead-letter queue. */
  | "dead_letter";

/** Attribute names (OpenTelemetry messaging semantic conventions, and warren's own). */
export const TraceAttributes = {
  /** Always "rabbitmq". */
  SYSTEM: "messaging.system",
  /** "send" (publish, RPC call) or "process" (delivery, RPC serve). */
  OPERATION_TYPE: "messaging.operation.type",
  /** "publish", "consume", "call" or "serve". */
  OPERATION_NAME: "messaging.operation.name",
  /** The exchange ("amq.default" for the default exchange). */
  DESTINATION: "messaging.destination.name",
  /** The routing key, when not empty. */
  ROUTING_KEY: "messaging.rabbitmq.destination.routing_key",
  /** Consumer spans: the delivery tag. */
  DELIVERY_TAG: "messaging.rabbitmq.message.delivery_tag",
  /** The messageId property. */
  MESSAGE_ID: "messaging.message.id",
  /** The body's size in bytes. */
  BODY_SIZE: "messaging.message.body.size",
  /** The correlationId property. */
  CONVERSATION_ID: "messaging.message.conversation_id",
  /** Consumer spans: the queue. */
  CONSUMER_GROUP: "messaging.consumer.group.name",
  /** Consumer and RPC serve spans: the queue. */
  SUBSCRIPTION: "messaging.destination.subscription.name",
  /** The connected broker's host (never a URL or credentials). */
  SERVER_ADDRESS: "server.address",
  /** The connected broker's port. */
  SERVER_PORT: "server.port",
  /** A failed span: the error's class name (e.g. "PublishNackedError"). */
  ERROR_TYPE: "error.type",
  /** warren: the producer span ended when the message was stored in the outbox. */
  OUTBOX_STORED: "warren.outbox.stored",
  /** warren: a consumer span's DeliveryOutcome. */
  OUTCOME: "warren.delivery.outcome",
  /** warren: on the nack-retry event, the attempt that was nacked and the backoff before the next. */
  ATTEMPT: "warren.publish.attempt",
  /** warren: on the nack-retry event, the backoff before the next send, in ms. */
  DELAY_MS: "warren.publish.retry_delay_ms",
  /** warren: on the republish event, why the message is sent again. */
  REASON: "warren.publish.republish_reason",
  /** warren: how an RPC call ended (RpcCallOutcome) or a request was served ("ok", "error"). */
  RPC_OUTCOME: "warren.rpc.outcome",
  /** warren: on the RPC retry event, why the call is sent again. */
  RPC_REASON: "warren.rpc.reason",
} as const;

/** Event names on producer spans (and RPC call spans). */
export const TraceEvents = {
  /** A nacked publish will be sent again (attributes ATTEMPT and DELAY_MS). */
  NACK_RETRY: "warren.publish.nack_retry",
  /** A publish is sent again because its channel or connection died (attribute REASON). */
  REPUBLISH: "warren.publish.republish",
  /** An RPC call's channel died before the reply: it is sent again. */
  RPC_RETRY: "warren.rpc.retry",
} as const;

/** The destination name of the default exchange (semantic conventions). */
const DEFAULT_EXCHANGE = "amq.default";

/** Reads W3C trace context from AMQP headers (long strings, or byte arrays from other clients). */
const headerGetter: TextMapGetter<FieldTable | undefined> = {
  keys: (carrier) => (carrier ? Object.keys(carrier) : []),
  get: (carrier, key) => {
    const v = carrier?.[key];
    if (typeof v === "string") return v;
    if (v instanceof Uint8Array) return Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString("utf8");
    return undefined;
  },
};

/**
 * What the consumer sent the broker for a delivery: `settled` is whether it could (its channel
 * still open); a failure is requeued the first time and rejected on a redelivery.
 */
export function deliveryOutcome(
  noAck: boolean | undefined,
  settled: boolean,
  failed: boolean,
  delivery: { fields: { redelivered: boolean } },
): DeliveryOutcome {
  if (noAck) return "auto_ack";
  if (!settled) return "abandoned";
  if (!failed) return "ack";
  return delivery.fields.redelivered ? "reject" : "nack";
}

function bodySize(body: Body): number {
  return typeof body === "string" ? Buffer.byteLength(body) : body.byteLength;
}

function errorName(err: unknown): string {
  return err instanceof Error ? err.name : "_OTHER";
}

/** Marks a span failed: error status, error.type, and the exception as an event. */
function recordFailure(span: Span, err: unknown): void {
  span.recordException(err instanceof Error ? err : String(err));
  span.setAttribute(TraceAttributes.ERROR_TYPE, errorName(err));
  span.setStatus({
    code: SpanStatusCode.ERROR,
    message: err instanceof Error ? err.message : String(err),
  });
}

/**
 * The client's tracing: made by connect() when `tracing` is on, shared by its publishers
 * and consumers. When tracing is off there is no Tracing object at all and the hot paths
 * only test for `undefined`.
 */
export class Tracing {
  readonly tracer: Tracer;
  /** False with `propagate: "sampled"` (RPC calls follow it too). */
  readonly propagateAll: boolean;

  constructor(
    options: TracingOptions,
    /** The connected broker (host and port), when there is one. */
    private readonly endpoint: () => Endpoint | undefined,
  ) {
    this.tracer = options.tracer ?? trace.getTracer("warren", VERSION);
    this.propagateAll = options.propagate !== "sampled";
  }

  /** A Tracing for `connect({ tracing })`, or undefined when it is off. */
  static from(option: TracingOption | undefined, endpoint: () => Endpoint | undefined): Tracing | undefined {
    if (option === undefined || option === false) return undefined;
    return new Tracing(option === true ? {} : option, endpoint);
  }

  /** A recorded span's per-message attributes: `more`, the routing key, ids and the broker. */
  private setMessage(span: Span, more: Attributes, routingKey: string, properties: BasicProperties): void {
    if (routingKey !== "") more[TraceAttributes.ROUTING_KEY] = routingKey;
    if (properties.messageId !== undefined) more[TraceAttributes.MESSAGE_ID] = properties.messageId;
    if (properties.correlationId !== undefined)
      more[TraceAttributes.CONVERSATION_ID] = properties.correlationId;
    const at = this.endpoint();
    if (at !== undefined) {
      more[TraceAttributes.SERVER_ADDRESS] = at.host;
      more[TraceAttributes.SERVER_PORT] = at.port;
    }
    span.setAttributes(more);
  }

  private setServer(span: Span): void {
    if (!span.isRecording()) return;
    const at = this.endpoint();
    if (at === undefined) return;
    span.setAttribute(TraceAttributes.SERVER_ADDRESS, at.host);
    span.setAttribute(TraceAttributes.SERVER_PORT, at.port);
  }

  // ─── producer ─────────────────────────────────────────────────────────

  /** Span name and start options per exchange (the same for every publish to it), cached. */
  private readonly starts = new Map<string, { name: string; options: SpanOptions }>();

  private publishStart(exchange: string): { name: string; options: SpanOptions } {
    let start = this.starts.get(exchange);
    if (start !== undefined) return start;
    const destination = exchange === "" ? DEFAULT_EXCHANGE : exchange;
    // What samplers see at creation (as the conventions ask); the rest only for recorded spans,
    // so an unsampled publish costs little more than its trace context. The SDK copies them.
    const attributes: Attributes = Object.freeze({
      [TraceAttributes.SYSTEM]: "rabbitmq",
      [TraceAttributes.OPERATION_TYPE]: "send",
      [TraceAttributes.OPERATION_NAME]: "publish",
      [TraceAttributes.DESTINATION]: destination,
    });
    start = {
      name: `publish ${destination}`,
      options: Object.freeze({ kind: SpanKind.PRODUCER, attributes }),
    };
    if (this.starts.size < 256) this.starts.set(exchange, start);
    return start;
  }

  /**
   * Starts the producer span of an accepted publish (child of the active context) and puts its
   * trace context into `properties.headers`, which it replaces with a copy: `properties` must
   * be the publisher's own object (normaliseProperties), never the caller's. Returns the span
   * when it is recorded; an unsampled one records nothing (its events and end are no-ops), so
   * the publisher does not keep it.
   */
  startPublish(
    exchange: string,
    routingKey: string,
    body: Body,
    properties: BasicProperties,
  ): Span | undefined {
    const start = this.publishStart(exchange);
    const parent = context.active();
    const span = this.tracer.startSpan(start.name, start.options, parent);
    const recording = span.isRecording();
    if (recording)
      this.setMessage(span, { [TraceAttributes.BODY_SIZE]: bodySize(body) }, routingKey, properties);
    else if (!this.propagateAll) return undefined;
    const carrier: Record<string, string> = {};
    propagation.inject(trace.setSpan(parent, span), carrier);
    for (const _ in carrier) {
      // Something was injected (a propagator is registered): a copy of the headers with it.
      const headers: FieldTable = { ...properties.headers, ...carrier };
      // A tracestate the caller's headers carried (a forwarded message) belongs to another traceparent.
      if (carrier["traceparent"] !== undefined && carrier["tracestate"] === undefined)
        delete headers["tracestate"];
      properties.headers = headers;
      break;
    }
    return recording ? span : undefined;
  }

  /** The message was (re)sent on a channel of the connection the endpoint names. */
  sent(span: Span): void {
    this.setServer(span);
  }

  /** The broker nacked attempt `attempt`; it is sent again after `delayMs`. */
  nackRetry(span: Span, attempt: number, delayMs: number): void {
    span.addEvent(TraceEvents.NACK_RETRY, {
      [TraceAttributes.ATTEMPT]: attempt,
      [TraceAttributes.DELAY_MS]: Math.round(delayMs),
    });
  }

  /** Its channel or connection died before the confirm: it is published again. */
  republish(span: Span, reason: Error): void {
    span.addEvent(TraceEvents.REPUBLISH, { [TraceAttributes.REASON]: reason.name });
  }

  /** The broker confirmed it (or, with an outbox, it is stored: `stored`). */
  published(span: Span, stored = false): void {
    if (stored) span.setAttribute(TraceAttributes.OUTBOX_STORED, true);
    span.end();
  }

  /** It failed for good (final nack, unroutable, timeout, closed, refused). */
  publishFailed(span: Span, err: unknown): void {
    recordFailure(span, err);
    span.end();
  }

  /** With an outbox: the span ends once the row is stored (or storing it failed). */
  whenStored(span: Span, stored: Promise<unknown>): void {
    stored.then(
      () => this.published(span, true),
      (err: unknown) => this.publishFailed(span, err),
    );
  }

  // ─── consumer ─────────────────────────────────────────────────────────

  /**
   * Starts the consumer span of a delivery from `queue`, parented to the trace context in its
   * headers (a new trace without one) and linked to it. Returns the context the handler runs in
   * (with the span, recorded or not: user spans follow its sampling decision) and the span when
   * it is recorded (an unsampled one records nothing: the consumer does not keep it).
   */
  startProcess(
    queue: string,
    delivery: {
      body: Buffer;
      properties: BasicProperties;
      fields: { deliveryTag: number; exchange: string; routingKey: string };
    },
  ): { span: Span | undefined; context: Context } {
    const { properties, fields } = delivery;
    const parent = propagation.extract(ROOT_CONTEXT, properties.headers, headerGetter);
    const producer = trace.getSpanContext(parent);
    const start = this.processStart(queue, fields.exchange);
    const options =
      producer !== undefined && trace.isSpanContextValid(producer)
        ? { ...start.options, links: [{ context: producer }] satisfies Link[] }
        : start.options;
    const span = this.tracer.startSpan(start.name, options, parent);
    if (span.isRecording()) {
      // Only recorded spans get the rest (an unsampled delivery costs little more than its context).
      const more: Attributes = {
        [TraceAttributes.DELIVERY_TAG]: fields.deliveryTag,
        [TraceAttributes.BODY_SIZE]: delivery.body.byteLength,
      };
      this.setMessage(span, more, fields.routingKey, properties);
      return { span, context: trace.setSpan(parent, span) };
    }
    return { span: undefined, context: trace.setSpan(parent, span) };
  }

  /**
   * Consumer span name and start options per queue, for the exchange its last delivery came
   * from (a queue's deliveries mostly share one), cached.
   */
  private readonly processStarts = new Map<
    string,
    { exchange: string; name: string; options: SpanOptions }
  >();

  private processStart(queue: string, exchange: string): { name: string; options: SpanOptions } {
    const cached = this.processStarts.get(queue);
    if (cached !== undefined && cached.exchange === exchange) return cached;
    // What samplers see at creation (as in publishStart); the SDK copies them.
    const attributes: Attributes = Object.freeze({
      [TraceAttributes.SYSTEM]: "rabbitmq",
      [TraceAttributes.OPERATION_TYPE]: "process",
      [TraceAttributes.OPERATION_NAME]: "consume",
      [TraceAttributes.DESTINATION]: exchange === "" ? DEFAULT_EXCHANGE : exchange,
      [TraceAttributes.CONSUMER_GROUP]: queue,
      [TraceAttributes.SUBSCRIPTION]: queue,
    });
    const start = {
      exchange,
      name: `process ${queue}`,
      options: Object.freeze({ kind: SpanKind.CONSUMER, attributes }),
    };
    if (cached !== undefined || this.processStarts.size < 256) this.processStarts.set(queue, start);
    return start;
  }

  /** Runs the handler in the consumer span's context (user spans nest under it). */
  run<A, R>(ctx: Context, fn: (arg: A) => R, arg: A): R {
    return context.with(ctx, fn, undefined, arg);
  }

  /** The delivery was settled (`outcome`); `error` is what the handler threw, if it failed. */
  processed(span: Span, outcome: DeliveryOutcome, failed: boolean, error: unknown): void {
    span.setAttribute(TraceAttributes.OUTCOME, outcome);
    if (failed) recordFailure(span, error);
    span.end();
  }

  // ─── request/reply ────────────────────────────────────────────────────

  /**
   * Starts the CLIENT span of an RPC call (child of the active context) and puts its trace context
   * into a copy of `properties.headers` (`properties` is the call's own object).
   */
  startCall(exchange: string, routingKey: string, correlationId: string, properties: BasicProperties): Span {
    const parent = context.active();
    const span = this.tracer.startSpan(
      `call ${exchange === "" ? routingKey : exchange}`,
      {
        kind: SpanKind.CLIENT,
        attributes: {
          [TraceAttributes.SYSTEM]: "rabbitmq",
          [TraceAttributes.OPERATION_TYPE]: "send",
          [TraceAttributes.OPERATION_NAME]: "call",
          [TraceAttributes.DESTINATION]: exchange === "" ? DEFAULT_EXCHANGE : exchange,
        },
      },
      parent,
    );
    if (span.isRecording()) {
      if (routingKey !== "") span.setAttribute(TraceAttributes.ROUTING_KEY, routingKey);
      span.setAttribute(TraceAttributes.CONVERSATION_ID, correlationId);
    }
    // propagate: "sampled" — only recorded calls carry their trace context.
    if (!this.propagateAll && !span.isRecording()) return span;
    const carrier: Record<string, string> = {};
    propagation.inject(trace.setSpan(parent, span), carrier);
    for (const _ in carrier) {
      properties.headers = { ...properties.headers, ...carrier };
      break;
    }
    return span;
  }

  /** The call's channel died before its reply: it is sent again. */
  callRetried(span: Span, reason: Error | undefined): void {
    span.addEvent(TraceEvents.RPC_RETRY, { [TraceAttributes.RPC_REASON]: reason?.name ?? "closed" });
  }

  /** The call ended: with a reply (`error` undefined), or failed with `error`. */
  callEnded(span: Span, outcome: string, error?: Error): void {
    if (error !== undefined) recordFailure(span, error);
    span.setAttribute(TraceAttributes.RPC_OUTCOME, outcome);
    span.end();
  }

  /**
   * Starts the SERVER span of a request from `queue`: a child of the active span (the consumer
   * span when the consumer is traced), or of the caller's context from the headers.
   */
  startServe(queue: string, properties: BasicProperties): { span: Span; context: Context } {
    const active = context.active();
    const parent =
      trace.getSpan(active) !== undefined
        ? active
        : propagation.extract(active, properties.headers, headerGetter);
    const span = this.tracer.startSpan(
      `serve ${queue}`,
      {
        kind: SpanKind.SERVER,
        attributes: {
          [TraceAttributes.SYSTEM]: "rabbitmq",
          [TraceAttributes.OPERATION_TYPE]: "process",
          [TraceAttributes.OPERATION_NAME]: "serve",
          [TraceAttributes.SUBSCRIPTION]: queue,
        },
      },
      parent,
    );
    if (span.isRecording() && properties.correlationId !== undefined)
      span.setAttribute(TraceAttributes.CONVERSATION_ID, properties.correlationId);
    return { span, context: trace.setSpan(parent, span) };
  }

  /** The request was served: `outcome` "ok" or "error" (the handler threw `error`, answered to the caller). */
  served(span: Span, outcome: "ok" | "error", error?: unknown): void {
    if (outcome === "error") recordFailure(span, error);
    span.setAttribute(TraceAttributes.RPC_OUTCOME, outcome);
    span.end();
  }

  /** The reply could not be sent (the request is nacked and delivered again); `handlerError` if the handler threw too. */
  replyFailed(span: Span, error: unknown, handlerError?: unknown): void {
    if (handlerError !== undefined) recordFailure(span, handlerError);
    recordFailure(span, error);
    span.end();
  }
}
