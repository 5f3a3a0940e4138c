/**
 * An AMQP channel: every method of channel, exchange, queue, basic, confirm and tx,
 * with option objects. Synchronous methods are pipelined and matched to their
 * replies in order; content is assembled method → header → body; publisher
 * confirms are tracked by sequence number (honouring `multiple`).
 *
 * A channel exception (404, 406, …) closes only this channel; every pending
 * operation on it rejects with the same ChannelClosedByBroker.
 */
import {
  ChannelClosedByBroker,
  ChannelClosedError,
  type ChannelError,
  type ConnectionError,
  FrameError,
  MethodTimeoutError,
} from "../errors.js";
import { writePublish, writeSmallMethod } from "../protocol/content-writer.js";
import {
  BASIC_ACK,
  BASIC_CANCEL,
  BASIC_CONSUME_OK,
  BASIC_DELIVER,
  BASIC_NACK,
  BASIC_RETURN,
  type BasicProperties,
  CHANNEL_CLOSE,
  CHANNEL_CLOSE_OK,
  CHANNEL_FLOW,
  encodeBasicAck,
  encodeBasicNack,
  METHOD_IDS,
  METHOD_NAMES,
  type Method,
  type MethodArgs,
  type MethodInput,
  type MethodName,
  SYNC_REPLIES,
} from "../protocol/generated/spec.js";
import { ChannelConsumers } from "./channel-consumers.js";
import type { ChannelHost } from "./channel-host.js";
import type {
  BasicConsumeOptions,
  Body,
  ChannelEvents,
  ConfirmSink,
  ConsumeHandlers,
  ExchangeBindOptions,
  ExchangeDeclareOptions,
  ExchangeDeleteOptions,
  GetOptions,
  Message,
  PublishOptions,
  QosOptions,
  QueueBindOptions,
  QueueDeclareOptions,
  QueueDeclareResult,
  QueueDeleteOptions,
  QueuePurgeOptions,
  QueueUnbindOptions,
  ReturnedMessage,
} from "./channel-types.js";
import { ContentAssembler } from "./content-assembler.js";
import { TypedEmitter } from "./events.js";
import * as args from "./method-args.js";
import { MethodCalls } from "./method-calls.js";
import { PublishConfirms } from "./publish-confirms.js";

// ─── internals ──────────────────────────────────────────────────────────────

type GetOkWithMessage = Extract<Method, { name: "basic.get-ok" }> & { message: Message };

/**
 * One AMQP channel of a low-level Connection (`await conn.openChannel()`), without supervision:
 * once closed it stays closed. Methods that wait for a reply reject with ChannelClosedByBroker
 * when the broker refuses them (a channel exception: this channel is closed, the connection stays
 * open), MethodTimeoutError when no reply came within `methodTimeout`, ChannelClosedError when the
 * channel is already closed (`cause` says why) and ConnectionClosedError when the connection went.
 */
export class Channel extends TypedEmitter<ChannelEvents> {
  /**
   * opening (channel.open sent), open, closing (channel.close sent, waiting for close-ok) or
   * closed. Read it; do not set it.
   */
  state: "opening" | "open" | "closing" | "closed" = "opening";
  /** Why it closed, if it did. */
  closeReason: ChannelError | ConnectionError | undefined;
  /** False while the broker has paused this channel with channel.flow. */
  flowActive = true;
  /** Confirm mode (confirm.select sent). */
  confirmMode = false;
  /** tx mode (tx.select sent). */
  txMode = false;

  private readonly conn: ChannelHost;
  /** The channel's number on its connection (1 to the negotiated channelMax). */
  readonly id: number;
  private readonly calls: MethodCalls;
  private readonly consumers: ChannelConsumers;
  // publisher confirms
  private readonly confirms: PublishConfirms;
  // content assembly
  private readonly assembler: ContentAssembler;

  /** @internal made by Connection.openChannel() */
  constructor(conn: ChannelHost, id: number) {
    super();
    this.conn = conn;
    this.id = id;
    this.confirms = new PublishConfirms(id);
    this.consumers = new ChannelConsumers(id, (e, msg) => this.reportHandlerError(e, msg));
    this.calls = new MethodCalls({
      channel: id,
      timeout: conn.options.methodTimeout,
      observer: conn.observer,
      onTimeout: (name, timeout) => this.callTimedOut(name, timeout),
    });
    this.assembler = new ContentAssembler(
      id,
      () => conn.options.maxMessageSize,
      {
        method: (m) => this.onMethod(m),
        content: (m, properties, body) => this.deliver(m, properties, body),
      },
      conn.transient === true,
    );
  }

  /** True while methods can be sent (state "open"). */
  get isOpen(): boolean {
    return this.state === "open";
  }

  /** Publishes sent in confirm mode and not yet acked or nacked. */
  get unconfirmedCount(): number {
    return this.confirms.size;
  }

  /** @internal called by Connection.openChannel */
  async open(): Promise<void> {
    await this.callMethod({ name: "channel.open", args: {} }, true);
    this.state = "open";
  }

  // ─── method calls ────────────────────────────────────────────────────────────

  private checkOpen(allowOpening = false): void {
    if (this.state === "open" || (allowOpening && this.state === "opening")) return;
    throw new ChannelClosedError(`channel ${this.id} is ${this.state}`, { cause: this.closeReason });
  }

  /** Sends a method and, if it is synchronous (and not no-wait), resolves with its reply. */
  private callMethod(method: MethodInput, allowOpening = false): Promise<Method> {
    try {
      this.checkOpen(allowOpening);
    } catch (e) {
      return Promise.reject(e);
    }
    const id = METHOD_IDS[method.name];
    const replies = SYNC_REPLIES[id];
    return new Promise<Method>((resolve, reject) => {
      try {
        this.conn.send(this.id, method);
      } catch (e) {
        reject(e);
        return;
      }
      if (replies) this.calls.expect(replies, resolve, reject, method.name);
      else resolve(undefined as unknown as Method);
    });
  }

  /**
   * No reply in time: replies can no longer be matched to requests, so the channel is given up
   * (channel.close sent, its id held until close-ok) and everything pending on it rejects.
   */
  private callTimedOut(name: MethodName, timeout: number): void {
    if (this.state === "closed") return;
    const err = new MethodTimeoutError(
      `no reply to ${name} on channel ${this.id} within ${timeout} ms; the channel was closed (open a new one)`,
    );
    if (this.state !== "closing") {
      try {
        this.conn.send(this.id, {
          name: "channel.close",
          args: { replyCode: 200, replyText: "client timeout", classId: 0, methodId: 0 },
        });
      } catch {
        // connection gone
      }
    }
    this.finish(err, true);
  }

  private async call<K extends MethodName>(method: MethodInput, _reply: K): Promise<MethodArgs[K]> {
    const m = await this.callMethod(method);
    return m.args as MethodArgs[K];
  }

  /** Sends a method and waits for its reply, or (no-wait) only sends it. */
  private async send(m: MethodInput, noWait: boolean | undefined): Promise<void> {
    if (noWait) this.cast(m);
    else await this.callMethod(m);
  }

  /** Sends a method that has no reply (no-wait forms, acks). */
  private cast(method: MethodInput): void {
    this.checkOpen();
    this.conn.send(this.id, method);
  }

  // ─── exchange ───────────────────────────────────────────────────────────

  /**
   * Declares an exchange (exchange.declare), or with `passive` checks that it exists. Resolves on
   * declare-ok. Rejects with ChannelClosedByBroker on 406 PRECONDITION_FAILED (it exists with other
   * settings), 403 ACCESS_REFUSED, or 404 NOT_FOUND (passive, and missing).
   */
  async exchangeDeclare(o: ExchangeDeclareOptions): Promise<void> {
    await this.send(args.exchangeDeclare(o), o.noWait);
  }

  /**
   * Deletes an exchange and its bindings (exchange.delete). Resolves on delete-ok. Rejects with
   * ChannelClosedByBroker on 406 PRECONDITION_FAILED (`ifUnused`, and it has bindings).
   */
  async exchangeDelete(o: ExchangeDeleteOptions): Promise<void> {
    await this.send(args.exchangeDelete(o), o.noWait);
  }

  /**
   * Binds exchange `destination` to exchange `source` (exchange.bind, a RabbitMQ extension).
   * Rejects with ChannelClosedByBroker on 404 NOT_FOUND (either exchange is missing).
   */
  async exchangeBind(o: ExchangeBindOptions): Promise<void> {
    await this.send(args.exchangeBinding("exchange.bind", o), o.noWait);
  }

  /** Removes an exchange-to-exchange binding (exchange.unbind); the same fields as it was bound with. */
  async exchangeUnbind(o: ExchangeBindOptions): Promise<void> {
    await this.send(args.exchangeBinding("exchange.unbind", o), o.noWait);
  }

  // ─── queue ──────────────────────────────────────────────────────────────

  /**
   * Declares a queue (queue.declare), or with `passive` checks that it exists; resolves with its
   * name (the broker's, for a server-named queue) and counts. Rejects with ChannelClosedByBroker on
   * 406 PRECONDITION_FAILED (it exists with other arguments), 405 RESOURCE_LOCKED (another
   * connection's exclusive queue), 403 ACCESS_REFUSED, or 404 NOT_FOUND (passive, and missing).
   */
  async queueDeclare(o: QueueDeclareOptions = {}): Promise<QueueDeclareResult> {
    const m = args.queueDeclare(o);
    if (o.noWait) {
      this.cast(m);
      return { queue: o.queue ?? "", messageCount: 0, consumerCount: 0 };
    }
    return this.call(m, "queue.declare-ok");
  }

  /**
   * Binds a queue to an exchange (queue.bind). Rejects with ChannelClosedByBroker on 404 NOT_FOUND
   * (the queue or the exchange is missing).
   */
  async queueBind(o: QueueBindOptions): Promise<void> {
    await this.send(args.queueBind(o), o.noWait);
  }

  /** Removes a binding (queue.unbind); give the routing key and arguments it was bound with. */
  async queueUnbind(o: QueueUnbindOptions): Promise<void> {
    await this.callMethod(args.queueUnbind(o));
  }

  /** Removes all ready messages (queue.purge; not those delivered and unacked); resolves with how many. */
  async queuePurge(o: QueuePurgeOptions): Promise<number> {
    const m = args.queuePurge(o);
    if (o.noWait) {
      this.cast(m);
      return 0;
    }
    return (await this.call(m, "queue.purge-ok")).messageCount;
  }

  /**
   * Deletes a queue (queue.delete); resolves with how many messages it held. Its consumers are
   * cancelled (the `cancel` event). Rejects with ChannelClosedByBroker on 406 PRECONDITION_FAILED
   * (`ifUnused` or `ifEmpty` not met).
   */
  async queueDelete(o: QueueDeleteOptions): Promise<number> {
    const m = args.queueDelete(o);
    if (o.noWait) {
      this.cast(m);
      return 0;
    }
    return (await this.call(m, "queue.delete-ok")).messageCount;
  }

  // ─── basic ──────────────────────────────────────────────────────────────

  /**
   * Sets the prefetch window (basic.qos): how many deliveries may be unacked at once. Without it
   * the broker sends as fast as it can. Resolves on qos-ok.
   */
  async basicQos(o: QosOptions): Promise<void> {
    await this.callMethod(args.basicQos(o));
  }

  /**
   * Starts a consumer (basic.consume); resolves with its tag once the broker confirmed it.
   * Deliveries go to `onMessage` as they arrive (a handler's promise is not awaited before the
   * next one); ack them with basicAck unless `noAck`. Rejects with ConfigError when the tag is in
   * use on this channel, ChannelClosedByBroker on 404 NOT_FOUND (no such queue), 403 ACCESS_REFUSED
   * (an exclusive consumer holds the queue) or 405 RESOURCE_LOCKED (another connection's exclusive queue).
   */
  async basicConsume(
    o: BasicConsumeOptions,
    handlers: ConsumeHandlers | ConsumeHandlers["onMessage"],
  ): Promise<string> {
    const h = typeof handlers === "function" ? { onMessage: handlers } : handlers;
    const tag = o.consumerTag ?? "";
    // Register before sending, so deliveries that follow consume-ok at once find their consumer.
    this.consumers.add(tag, h);
    try {
      const ok = await this.call(args.basicConsume(o, tag), "basic.consume-ok");
      return ok.consumerTag;
    } catch (e) {
      this.consumers.remove(tag);
      throw e;
    }
  }

  /** Stops a consumer (basic.cancel); deliveries already sent may still arrive before this resolves. */
  async basicCancel(consumerTag: string): Promise<void> {
    await this.callMethod({ name: "basic.cancel", args: { consumerTag } });
    this.consumers.remove(consumerTag);
  }

  /**
   * Publishes a message (basic.publish, its header and body frames). Returns false when the
   * connection's write buffer is over its high-water mark (`writeHighWaterMark`): wait for
   * `waitForDrain()` before publishing more. In confirm mode, use `publish()` to learn the broker's
   * answer. Throws ChannelClosedError when the channel is not open, FieldTableError when the
   * properties cannot be encoded, FrameTooLargeError when they do not fit in one frame.
   */
  basicPublish(
    exchange: string,
    routingKey: string,
    body: Body,
    properties?: BasicProperties,
    options?: PublishOptions,
  ): boolean {
    this.checkOpen();
    this.writeContent(
      exchange,
      routingKey,
      typeof body === "string" ? Buffer.from(body) : body,
      properties,
      options,
    );
    if (this.confirmMode) this.confirms.add(undefined);
    return !this.conn.writer.needsDrain;
  }

  /**
   * Publishes and resolves when the broker has taken responsibility: in confirm mode on
   * basic.ack (rejects with PublishNackedError on basic.nack, UnroutableError when mandatory and
   * returned, and with the channel's close reason when it closed first, e.g. ChannelClosedByBroker
   * for 404 no such exchange). Without confirm mode it resolves once the connection's write buffer
   * is under its high-water mark (at once, or when the socket drained), which says nothing about
   * the broker. Rejects as basicPublish() throws.
   */
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

  /**
   * Publishes and, in confirm mode, settles `sink` on the broker's answer (as `publish()`
   * does its promise, without allocating one). Throws when the channel is closed or the
   * message cannot be encoded.
   */
  publishTo(
    exchange: string,
    routingKey: string,
    body: Body,
    properties: BasicProperties | undefined,
    options: PublishOptions | undefined,
    sink: ConfirmSink | undefined,
  ): void {
    this.checkOpen();
    const buf = typeof body === "string" ? Buffer.from(body) : body;
    this.writeContent(exchange, routingKey, buf, properties, options);
    if (!this.confirmMode) return;
    this.confirms.add(
      sink,
      sink !== undefined && options?.mandatory
        ? { exchange, routingKey, messageId: properties?.messageId, body: buf }
        : undefined,
    );
  }

  /**
   * False while the connection's write buffer is over its high-water mark (basicPublish() returned false).
   */
  get writable(): boolean {
    return !this.conn.writer.needsDrain;
  }

  /**
   * Resolves when the connection's write buffer is below its high-water mark (at once if it is).
   * Rejects with ChannelClosedError when the channel closed while waiting.
   */
  waitForDrain(): Promise<void> {
    const w = this.conn.writer;
    if (!w.needsDrain) return Promise.resolve();
    return new Promise((resolve, reject) =>
      w.onDrain(() => {
        if (this.state === "closed") {
          reject(
            new ChannelClosedError(`channel ${this.id} closed while waiting for the socket`, {
              cause: this.closeReason,
            }),
          );
        } else resolve();
      }),
    );
  }

  /** Sequence number the next publish will get in confirm mode. */
  get nextPublishSeqNo(): number {
    return this.confirms.nextSeq;
  }

  private writeContent(
    exchange: string,
    routingKey: string,
    body: Uint8Array,
    properties: BasicProperties | undefined,
    options: PublishOptions | undefined,
  ): void {
    writePublish(
      this.conn.writer,
      this.id,
      this.conn.frameMax,
      { exchange, routingKey, mandatory: options?.mandatory, immediate: options?.immediate },
      body,
      properties,
    );
  }

  /**
   * Fetches one message (basic.get), or null when the queue is empty. Ack it with basicAck unless
   * `noAck`. Rejects with ChannelClosedByBroker on 404 NOT_FOUND (no such queue).
   */
  async basicGet(o: GetOptions): Promise<Message | null> {
    const m = await this.callMethod({ name: "basic.get", args: { queue: o.queue, noAck: o.noAck } });
    if (m.name === "basic.get-empty") return null;
    return (m as GetOkWithMessage).message;
  }

  /**
   * Acknowledges a delivery (basic.ack): the broker forgets it. `multiple` acks every unacked
   * delivery up to this tag too. Throws ChannelClosedError when the channel is not open. A tag this
   * channel does not hold (acked already, or another channel's) makes the broker close the channel
   * with 406 PRECONDITION_FAILED.
   */
  basicAck(deliveryTag: number, options: { multiple?: boolean } = {}): void {
    this.checkOpen();
    writeSmallMethod(this.conn.writer, this.id, encodeBasicAck, { deliveryTag, multiple: options.multiple });
  }

  /**
   * Refuses a delivery (basic.nack, a RabbitMQ extension): `requeue` (default true) puts it back in
   * the queue; false drops it, or dead-letters it when the queue has a dead-letter exchange.
   * `multiple` covers every unacked delivery up to this tag too. Throws ChannelClosedError when the
   * channel is not open.
   */
  basicNack(deliveryTag: number, options: { multiple?: boolean; requeue?: boolean } = {}): void {
    this.checkOpen();
    writeSmallMethod(this.conn.writer, this.id, encodeBasicNack, {
      deliveryTag,
      multiple: options.multiple,
      requeue: options.requeue ?? true,
    });
  }

  /**
   * Refuses one delivery (basic.reject): `requeue` (default true) puts it back in the queue; false
   * drops it, or dead-letters it. Throws ChannelClosedError when the channel is not open.
   */
  basicReject(deliveryTag: number, options: { requeue?: boolean } = {}): void {
    this.cast({ name: "basic.reject", args: { deliveryTag, requeue: options.requeue ?? true } });
  }

  /**
   * Redelivers this channel's unacknowledged messages (basic.recover; requeue true, the default: possibly to
   * other consumers).
   */
  async basicRecover(options: { requeue?: boolean } = {}): Promise<void> {
    await this.callMethod({ name: "basic.recover", args: { requeue: options.requeue ?? true } });
  }

  // ─── confirm, tx, flow ──────────────────────────────────────────────────

  /**
   * Turns on publisher confirms (confirm.select, a RabbitMQ extension): the broker then acks or
   * nacks every publish, which `publish()` resolves or rejects on. Idempotent. Rejects with
   * ChannelClosedByBroker on 406 PRECONDITION_FAILED when the channel is in tx mode.
   */
  async confirmSelect(options: { noWait?: boolean } = {}): Promise<void> {
    if (this.confirmMode) return;
    this.confirmMode = true;
    const m: MethodInput = { name: "confirm.select", args: { nowait: options.noWait } };
    if (options.noWait) this.cast(m);
    else await this.callMethod(m);
  }

  /**
   * Puts the channel in transaction mode (tx.select): its publishes and acks take effect at
   * txCommit(). Rejects with ChannelClosedByBroker on 406 PRECONDITION_FAILED in confirm mode.
   */
  async txSelect(): Promise<void> {
    await this.callMethod({ name: "tx.select", args: {} });
    this.txMode = true;
  }

  /** Commits the publishes and acks since the last commit or rollback (tx.commit); needs txSelect() first. */
  async txCommit(): Promise<void> {
    await this.callMethod({ name: "tx.commit", args: {} });
  }

  /** Discards the publishes and acks since the last commit (tx.rollback); needs txSelect() first. */
  async txRollback(): Promise<void> {
    await this.callMethod({ name: "tx.rollback", args: {} });
  }

  /**
   * Asks the broker to pause (false) or resume (true) deliveries on this channel (channel.flow);
   * resolves with the state it confirmed. RabbitMQ refuses to pause (540 NOT_IMPLEMENTED, which
   * closes the connection): use basicQos() or basicCancel() instead.
   */
  async flow(active: boolean): Promise<boolean> {
    const ok = await this.call({ name: "channel.flow", args: { active } }, "channel.flow-ok");
    return ok.active;
  }

  // ─── close ──────────────────────────────────────────────────────────────

  /**
   * Orderly close: channel.close, wait for close-ok. Pending methods and unconfirmed publishes
   * reject with ChannelClosedError. Idempotent; never rejects (a connection that went meanwhile
   * closes the channel too).
   */
  async close(): Promise<void> {
    if (this.state === "closed" || this.state === "closing") return;
    this.state = "closing";
    const closing = new Promise<Method>((resolve, reject) => {
      try {
        this.conn.send(this.id, {
          name: "channel.close",
          args: { replyCode: 200, replyText: "bye", classId: 0, methodId: 0 },
        });
        this.calls.expect([CHANNEL_CLOSE_OK], resolve, reject, "channel.close");
      } catch (e) {
        reject(e);
      }
    });
    try {
      await closing;
    } catch {
      // The connection went away meanwhile: closed either way.
    }
    this.finish(undefined, false);
  }

  /** @internal the connection closed under this channel */
  connectionClosed(err: ConnectionError): void {
    this.finish(err, false);
  }

  private finish(err: ChannelError | ConnectionError | undefined, awaitingCloseOk: boolean): void {
    if (this.state === "closed") return;
    this.state = "closed";
    this.closeReason = err;
    const reason = err ?? new ChannelClosedError(`channel ${this.id} was closed`);
    this.calls.rejectAll(reason);
    // A broker channel exception is what every pending publish gets too (as the pending calls do).
    this.confirms.failAll(
      err instanceof ChannelClosedByBroker
        ? err
        : new ChannelClosedError(`channel ${this.id} closed before the broker confirmed the publish`, {
            cause: err,
          }),
    );
    this.consumers.clear();
    this.conn.releaseChannel(this.id, awaitingCloseOk);
    this.emit("close", err);
  }

  // ─── incoming frames ────────────────────────────────────────────────────

  /** @internal */
  onFrame(type: number, payload: Buffer): void {
    if (this.state === "closed") return;
    this.assembler.push(type, payload);
  }

  private deliver(m: Method, properties: BasicProperties, body: Buffer): void {
    switch (m.name) {
      case "basic.deliver":
        this.consumers.deliver(m, properties, body, this.state === "closing");
        return;
      case "basic.get-ok": {
        const a = m.args;
        const msg: Message = {
          body,
          properties,
          deliveryTag: a.deliveryTag,
          redelivered: a.redelivered,
          exchange: a.exchange,
          routingKey: a.routingKey,
          messageCount: a.messageCount,
        };
        const withMessage: GetOkWithMessage = { ...m, message: msg };
        this.calls.reply(withMessage);
        return;
      }
      case "basic.return": {
        const a = m.args;
        const r: ReturnedMessage = {
          body,
          properties,
          replyCode: a.replyCode,
          replyText: a.replyText,
          exchange: a.exchange,
          routingKey: a.routingKey,
        };
        if (this.confirmMode) this.confirms.returned(r);
        this.emit("return", r);
        return;
      }
      default:
        throw new FrameError(`unexpected content method ${m.name}`, { replyCode: 505 });
    }
  }

  private reportHandlerError(e: unknown, msg: Message): void {
    if (!this.emit("handlerError", e, msg)) {
      process.emitWarning(
        `warren: a consumer's onMessage failed on channel ${this.id} and no "handlerError" listener is set: ${(e as Error)?.message ?? String(e)}`,
      );
    }
  }

  private onMethod(m: Method): void {
    switch (m.id) {
      case BASIC_ACK:
      case BASIC_NACK: {
        const a = m.args as { deliveryTag: number; multiple: boolean };
        this.confirms.settle(a.deliveryTag, a.multiple, m.id === BASIC_NACK);
        return;
      }
      case CHANNEL_CLOSE: {
        const a = (m as Extract<Method, { name: "channel.close" }>).args;
        try {
          this.conn.send(this.id, { name: "channel.close-ok", args: {} });
        } catch {
          // connection already gone
        }
        const err = new ChannelClosedByBroker({
          ...a,
          methodName: METHOD_NAMES[(a.classId << 16) | a.methodId],
        });
        // If our own channel.close crossed the broker's, the broker still answers it with close-ok:
        // keep the id reserved (and its frames dropped) until that close-ok arrives.
        this.finish(err, this.state === "closing");
        return;
      }
      case CHANNEL_FLOW: {
        const active = (m as Extract<Method, { name: "channel.flow" }>).args.active;
        this.flowActive = active;
        this.conn.send(this.id, { name: "channel.flow-ok", args: { active } });
        this.emit("flow", active);
        return;
      }
      case BASIC_CANCEL: {
        // Server-sent cancel (consumer_cancel_notify): the queue was deleted or its node went down.
        const tag = (m as Extract<Method, { name: "basic.cancel" }>).args.consumerTag;
        this.consumers.cancelledByBroker(tag);
        this.emit("cancel", tag);
        return;
      }
      case BASIC_DELIVER:
      case BASIC_RETURN:
        return; // content methods are handled in deliver()
      case BASIC_CONSUME_OK: {
        this.consumers.confirmed((m as Extract<Method, { name: "basic.consume-ok" }>).args.consumerTag);
        this.calls.reply(m);
        return;
      }
      default:
        this.calls.reply(m);
    }
  }
}
