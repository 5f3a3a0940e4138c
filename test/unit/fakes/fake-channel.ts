/**
 * A fake of the members of Channel that the publisher, the outbox relay, the consumer and the RPC
 * client call, with the real channel's rules where they decide something: publishing on a closed
 * channel throws ChannelClosedError; confirm-mode publishes are answered oldest first; closing
 * rejects what is unconfirmed (with the broker's close itself when it was a channel exception,
 * else with a ChannelClosedError whose cause is the reason) and then emits "close".
 * The test answers for the broker: confirm(), nack(), returnNext(), deliver(), die().
 */
import type { Channel } from "../../../src/amqp/channel.js";
import type {
  BasicProperties,
  Body,
  ChannelEvents,
  ConfirmSink,
  ConsumeHandlers,
  ConsumeOptions,
  Message,
  PublishOptions,
  QosOptions,
  ReturnedMessage,
} from "../../../src/amqp/channel-types.js";
import {
  ChannelClosedByBroker,
  ChannelClosedError,
  type ChannelError,
  type ConnectionError,
  PublishNackedError,
  UnroutableError,
} from "../../../src/errors.js";

/** One message published on the fake channel. */
export interface Sent {
  exchange: string;
  routingKey: string;
  body: Body;
  properties: BasicProperties;
  mandatory: boolean;
}

/** basic.ack / basic.nack sent for a delivery. */
export interface Settlement {
  op: "ack" | "nack" | "reject";
  tag: number;
  requeue?: boolean;
  /** basic.ack covering every unacked tag up to `tag` (several acks of one turn). */
  multiple?: boolean;
}

type Listener = (...args: never[]) => void;

let channelIds = 0;

export class FakeChannel {
  readonly id = ++channelIds;
  /** "closing": closed on our side, its close event not yet come (set by a test). */
  state: "open" | "closing" | "closed" = "open";
  /** Why it closed (die()), if it did. */
  closeReason: ChannelError | ConnectionError | undefined;
  confirmMode: boolean;
  /** False while the (fake) write buffer is over its high-water mark. */
  writable = true;
  /** writable turns false once this many messages were published (a filling socket). */
  highWater = Number.POSITIVE_INFINITY;
  /** Everything published, in order. */
  readonly sent: Sent[] = [];
  /** basic.ack / basic.nack / basic.reject sent, in order. */
  readonly settlements: Settlement[] = [];
  /** Methods called, in order: "qos 10", "confirm.select", "consume q", "cancel tag", "close". */
  readonly calls: string[] = [];
  /** basic.consume handlers by consumer tag. */
  readonly consumers = new Map<string, ConsumeHandlers>();
  /** Consumers cancelled by basic.cancel. */
  private readonly cancelled = new Map<string, ConsumeHandlers>();
  /** The error the next basic.consume fails with (the channel then closes with it, as the broker's would). */
  consumeError: ChannelClosedByBroker | undefined;
  private unconfirmed: { sent: Sent; sink: ConfirmSink | undefined }[] = [];
  private drainWaiters: { resolve: () => void; reject: (e: Error) => void }[] = [];
  private readonly listeners = new Map<keyof ChannelEvents, Listener[]>();
  private tags = 0;

  constructor(options: { confirm?: boolean } = {}) {
    this.confirmMode = options.confirm ?? true;
  }

  /** This fake where the code wants a Channel. */
  get channel(): Channel {
    return this as unknown as Channel;
  }

  /** The fake behind a Channel handed out by fakeChannel.channel. */
  static of(ch: Channel | undefined): FakeChannel | undefined {
    return ch as unknown as FakeChannel | undefined;
  }

  get isOpen(): boolean {
    return this.state === "open";
  }

  /** Publishes sent in confirm mode and not yet answered. */
  get unconfirmedCount(): number {
    return this.unconfirmed.length;
  }

  on<K extends keyof ChannelEvents>(event: K, fn: ChannelEvents[K]): this {
    const l = this.listeners.get(event) ?? [];
    l.push(fn as unknown as Listener);
    this.listeners.set(event, l);
    return this;
  }

  private emit<K extends keyof ChannelEvents>(event: K, ...args: Parameters<ChannelEvents[K]>): void {
    for (const fn of [...(this.listeners.get(event) ?? [])]) (fn as (...a: unknown[]) => void)(...args);
  }

  private checkOpen(): void {
    if (!this.isOpen)
      throw new ChannelClosedError(`channel ${this.id} is closed`, { cause: this.closeReason });
  }

  private record(
    exchange: string,
    routingKey: string,
    body: Body,
    properties: BasicProperties | undefined,
    options: PublishOptions | undefined,
  ): Sent {
    const s: Sent = {
      exchange,
      routingKey,
      body,
      // A copy: what was on the wire, whatever the caller changes later.
      properties: { ...properties },
      mandatory: options?.mandatory === true,
    };
    this.sent.push(s);
    if (this.sent.length >= this.highWater) this.writable = false;
    return s;
  }

  // ─── publishing ────────────────────────────────────────────────────────

  publishTo(
    exchange: string,
    routingKey: string,
    body: Body,
    properties: BasicProperties | undefined,
    options: PublishOptions | undefined,
    sink: ConfirmSink | undefined,
  ): void {
    this.checkOpen();
    const sent = this.record(exchange, routingKey, body, properties, options);
    if (this.confirmMode) this.unconfirmed.push({ sent, sink });
  }

  publish(
    exchange: string,
    routingKey: string,
    body: Body,
    properties?: BasicProperties,
    options?: PublishOptions,
  ): Promise<void> {
    if (!this.confirmMode) {
      try {
        this.publishTo(exchange, routingKey, body, properties, options, undefined);
      } catch (e) {
        return Promise.reject(e);
      }
      return this.waitForDrain();
    }
    return new Promise<void>((resolve, reject) => {
      try {
        this.publishTo(exchange, routingKey, body, properties, options, { resolve, reject });
      } catch (e) {
        reject(e);
      }
    });
  }

  basicPublish(
    exchange: string,
    routingKey: string,
    body: Body,
    properties?: BasicProperties,
    options?: PublishOptions,
  ): boolean {
    this.checkOpen();
    const sent = this.record(exchange, routingKey, body, properties, options);
    if (this.confirmMode) this.unconfirmed.push({ sent, sink: undefined });
    return this.writable;
  }

  waitForDrain(): Promise<void> {
    if (this.writable) return Promise.resolve();
    return new Promise((resolve, reject) => this.drainWaiters.push({ resolve, reject }));
  }

  /** The write buffer drained: writable again, drain waiters resume. */
  drain(): void {
    this.writable = true;
    this.highWater = Number.POSITIVE_INFINITY;
    const w = this.drainWaiters;
    this.drainWaiters = [];
    for (const d of w) d.resolve();
  }

  // ─── the broker's answers to publishes ─────────────────────────────────

  /** basic.ack of the `n` oldest unconfirmed publishes. */
  confirm(n = 1): void {
    for (const u of this.unconfirmed.splice(0, n)) u.sink?.resolve();
  }

  /** basic.nack of the `n` oldest unconfirmed publishes. */
  nack(n = 1): void {
    for (const u of this.unconfirmed.splice(0, n))
      u.sink?.reject(new PublishNackedError(`the broker nacked a publish on channel ${this.id}`));
  }

  /** basic.return then basic.ack of the oldest unconfirmed publish (mandatory, unroutable). */
  returnNext(): void {
    const u = this.unconfirmed.shift();
    if (u === undefined) return;
    u.sink?.reject(
      new UnroutableError({
        replyCode: 312,
        replyText: "NO_ROUTE",
        exchange: u.sent.exchange,
        routingKey: u.sent.routingKey,
      }),
    );
  }

  /** A basic.return (the channel's "return" event, as the RPC client hears it). */
  emitReturn(r: Partial<ReturnedMessage> & { properties: BasicProperties }): void {
    this.emit("return", {
      body: Buffer.alloc(0),
      replyCode: 312,
      replyText: "NO_ROUTE",
      exchange: "",
      routingKey: "",
      ...r,
    });
  }

  // ─── consuming ─────────────────────────────────────────────────────────

  basicQos(o: QosOptions): Promise<void> {
    this.calls.push(`qos ${o.prefetchCount ?? 0}`);
    return this.isOpen ? Promise.resolve() : Promise.reject(new ChannelClosedError("closed"));
  }

  confirmSelect(): Promise<void> {
    this.calls.push("confirm.select");
    this.confirmMode = true;
    return Promise.resolve();
  }

  basicConsume(o: ConsumeOptions, handlers: ConsumeHandlers | ConsumeHandlers["onMessage"]): Promise<string> {
    this.calls.push(`consume ${o.queue}`);
    const err = this.consumeError;
    if (err !== undefined) {
      this.consumeError = undefined;
      this.die(err);
      return Promise.reject(err);
    }
    if (!this.isOpen) return Promise.reject(new ChannelClosedError("closed"));
    const tag = o.consumerTag ?? `ctag-${this.id}.${++this.tags}`;
    this.consumers.set(tag, typeof handlers === "function" ? { onMessage: handlers } : handlers);
    return Promise.resolve(tag);
  }

  basicCancel(tag: string): Promise<void> {
    this.calls.push(`cancel ${tag}`);
    const h = this.consumers.get(tag);
    this.consumers.delete(tag);
    if (h !== undefined) this.cancelled.set(tag, h);
    return Promise.resolve();
  }

  basicAck(deliveryTag: number, options: { multiple?: boolean } = {}): void {
    this.checkOpen();
    this.settlements.push(
      options.multiple ? { op: "ack", tag: deliveryTag, multiple: true } : { op: "ack", tag: deliveryTag },
    );
  }

  basicNack(deliveryTag: number, options: { requeue?: boolean } = {}): void {
    this.checkOpen();
    this.settlements.push({ op: "nack", tag: deliveryTag, requeue: options.requeue ?? true });
  }

  basicReject(deliveryTag: number, options: { requeue?: boolean } = {}): void {
    this.checkOpen();
    this.settlements.push({ op: "reject", tag: deliveryTag, requeue: options.requeue ?? true });
  }

  /**
   * basic.deliver to the only consumer, or to the one tagged `consumerTag` (even cancelled: a
   * delivery the broker sent before its cancel-ok).
   */
  deliver(tag: number, m: Partial<Message> = {}, consumerTag?: string): void {
    const [ctag, h] =
      consumerTag === undefined
        ? [...this.consumers][0]!
        : [consumerTag, (this.consumers.get(consumerTag) ?? this.cancelled.get(consumerTag))!];
    void h.onMessage({
      body: Buffer.from(`m${tag}`),
      properties: {},
      deliveryTag: tag,
      redelivered: false,
      exchange: "",
      routingKey: "q",
      consumerTag: ctag,
      ...m,
    });
  }

  /** basic.cancel from the broker (queue deleted). */
  serverCancel(): void {
    for (const [tag, h] of this.consumers) h.onCancel?.(tag);
    this.consumers.clear();
  }

  // ─── closing ───────────────────────────────────────────────────────────

  /** Closed by us: what is unconfirmed fails with ChannelClosedError, then "close" (no error). */
  close(): Promise<void> {
    this.calls.push("close");
    this.finish(undefined);
    return Promise.resolve();
  }

  /** Closed under us: by the broker (ChannelClosedByBroker) or with the connection. */
  die(err: ChannelError | ConnectionError): void {
    this.finish(err);
  }

  private finish(err: ChannelError | ConnectionError | undefined): void {
    if (this.state === "closed") return;
    this.state = "closed";
    this.closeReason = err;
    const reason =
      err instanceof ChannelClosedByBroker
        ? err
        : new ChannelClosedError(`channel ${this.id} closed before the broker confirmed the publish`, {
            cause: err,
          });
    const unconfirmed = this.unconfirmed;
    this.unconfirmed = [];
    for (const u of unconfirmed) u.sink?.reject(reason);
    const drains = this.drainWaiters;
    this.drainWaiters = [];
    for (const d of drains) d.reject(new ChannelClosedError(`channel ${this.id} closed while waiting`));
    this.consumers.clear();
    this.emit("close", err);
  }
}

/** A broker's channel close: `code` and text, in reply to `method`. */
export function brokerClose(
  replyCode: number,
  replyText: string,
  methodName?: string,
): ChannelClosedByBroker {
  return new ChannelClosedByBroker({ replyCode, replyText, classId: 0, methodId: 0, methodName });
}

/** Lets promise callbacks queued so far (and those they queue) run: no timer moves. */
export async function flush(turns = 20): Promise<void> {
  for (let i = 0; i < turns; i++) await Promise.resolve();
}

/** A promise's outcome as it stands, for assertions after the fact. */
export interface Tracked<T> {
  readonly settled: boolean;
  readonly value: T | undefined;
  readonly error: unknown;
  readonly status: "pending" | "resolved" | "rejected";
}

export function track<T>(p: Promise<T>): Tracked<T> {
  const t: { status: "pending" | "resolved" | "rejected"; value: T | undefined; error: unknown } = {
    status: "pending",
    value: undefined,
    error: undefined,
  };
  p.then(
    (v) => {
      t.status = "resolved";
      t.value = v;
    },
    (e: unknown) => {
      t.status = "rejected";
      t.error = e;
    },
  );
  return {
    get settled() {
      return t.status !== "pending";
    },
    get value() {
      return t.value;
    },
    get error() {
      return t.error;
    },
    get status() {
      return t.status;
    },
  };
}
