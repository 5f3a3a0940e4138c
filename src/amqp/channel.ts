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
  ConfigError,
  type ConnectionError,
  FrameError,
  FrameTooLargeError,
  PublishNackedError,
  RpcTimeoutError,
  UnroutableError,
  WarrenError,
} from "../errors.js";
import { readU64 } from "../protocol/codec.js";
import {
  FRAME_HEADER_SIZE,
  FRAME_OVERHEAD,
  writeBodyFrame,
  writeBodyFrameHeader,
  writeHeaderFrame,
  writeMethodFrameWith,
} from "../protocol/frame.js";
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
  CLASS_IDS,
  CONTENT_METHODS,
  decodeBasicProperties,
  decodeMethod,
  encodeBasicAck,
  encodeBasicNack,
  encodeBasicPublish,
  FRAME_BODY,
  FRAME_HEADER,
  FRAME_METHOD,
  METHOD_IDS,
  METHOD_NAMES,
  type Method,
  type MethodArgs,
  type MethodInput,
  type MethodName,
  SYNC_REPLIES,
} from "../protocol/generated/spec.js";
import type { FieldTable } from "../protocol/table.js";
import { ZERO_COPY_THRESHOLD } from "../transport/writer.js";
import { ConfirmTracker } from "./confirms.js";
import type { Connection } from "./connection.js";
import { TypedEmitter } from "./events.js";

// ─── public types ───────────────────────────────────────────────────────────

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

// ─── internals ──────────────────────────────────────────────────────────────

interface Rpc {
  replies: readonly number[];
  resolve: (m: Method) => void;
  reject: (e: Error) => void;
}

/** Told the broker's answer to one publish; called as methods (an object with state may be its own sink). */
export interface ConfirmSink {
  resolve(): void;
  reject(e: Error): void;
}

interface Pending {
  sink: ConfirmSink;
  /** For matching basic.return to a mandatory publish. */
  exchange?: string;
  routingKey?: string;
  messageId?: string | undefined;
  /** The published body (kept only for mandatory publishes), compared byte for byte with a return's. */
  body?: Uint8Array;
  returned?: ReturnedMessage;
}

type GetOkWithMessage = Extract<Method, { name: "basic.get-ok" }> & { message: Message };

interface Consumer extends ConsumeHandlers {
  tag: string;
}

enum In {
  Method = 0,
  Header = 1,
  Body = 2,
}

export class Channel extends TypedEmitter<ChannelEvents> {
  state: "opening" | "open" | "closing" | "closed" = "opening";
  /** Why it closed, if it did. */
  closeReason: ChannelError | ConnectionError | undefined;
  /** False while the broker has paused this channel with channel.flow. */
  flowActive = true;
  /** Confirm mode (confirm.select sent). */
  confirmMode = false;
  /** tx mode (tx.select sent). */
  txMode = false;

  private readonly conn: Connection;
  readonly id: number;
  private rpcs: Rpc[] = [];
  private consumers = new Map<string, Consumer>();
  /** Handlers of consumes sent without a tag, waiting for consume-ok to name them. */
  private serverNamed: ConsumeHandlers[] = [];
  // publisher confirms
  private confirms = new ConfirmTracker<Pending>();
  // content assembly
  private inState = In.Method;
  private inMethod: Method | undefined;
  private inProps: BasicProperties | undefined;
  private inSize = 0;
  private inBody: Buffer | undefined;
  private inReceived = 0;

  constructor(conn: Connection, id: number) {
    super();
    this.conn = conn;
    this.id = id;
  }

  get isOpen(): boolean {
    return this.state === "open";
  }

  /** Publishes sent in confirm mode and not yet acked or nacked. */
  get unconfirmedCount(): number {
    return this.confirms.size;
  }

  /** @internal called by Connection.openChannel */
  async open(): Promise<void> {
    await this.rpc({ name: "channel.open", args: {} }, true);
    this.state = "open";
  }

  // ─── RPC ────────────────────────────────────────────────────────────────

  private checkOpen(allowOpening = false): void {
    if (this.state === "open" || (allowOpening && this.state === "opening")) return;
    throw new ChannelClosedError(`channel ${this.id} is ${this.state}`, { cause: this.closeReason });
  }

  /** Sends a method and, if it is synchronous (and not no-wait), resolves with its reply. */
  private rpc(method: MethodInput, allowOpening = false): Promise<Method> {
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
      if (replies) this.pushRpc(replies, resolve, reject, method.name);
      else resolve(undefined as unknown as Method);
    });
  }

  /** Queues an expected reply, bounded by the connection's rpcTimeout. */
  private pushRpc(
    replies: readonly number[],
    resolve: (m: Method) => void,
    reject: (e: Error) => void,
    name: MethodName,
  ): void {
    const timeout = this.conn.options.rpcTimeout;
    const obs = this.conn.observer;
    let done = resolve;
    if (obs !== undefined) {
      obs.rpcSent?.(name);
      const sent = performance.now();
      done = (m) => {
        obs.rpcReplied?.(name, (performance.now() - sent) / 1000);
        resolve(m);
      };
    }
    if (timeout <= 0) {
      this.rpcs.push({ replies, resolve: done, reject });
      return;
    }
    const timer = setTimeout(() => this.rpcTimedOut(name, timeout), timeout);
    this.rpcs.push({
      replies,
      resolve: (m) => {
        clearTimeout(timer);
        done(m);
      },
      reject: (e) => {
        clearTimeout(timer);
        reject(e);
      },
    });
  }

  /**
   * No reply in time: replies can no longer be matched to requests, so the channel is given up
   * (channel.close sent, its id held until close-ok) and everything pending on it rejects.
   */
  private rpcTimedOut(name: MethodName, timeout: number): void {
    if (this.state === "closed") return;
    this.conn.observer?.rpcTimedOut?.(name);
    const err = new RpcTimeoutError(
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
    const m = await this.rpc(method);
    return m.args as MethodArgs[K];
  }

  /** Sends a method and waits for its reply, or (no-wait) only sends it. */
  private async send(m: MethodInput, noWait: boolean | undefined): Promise<void> {
    if (noWait) this.cast(m);
    else await this.rpc(m);
  }

  /** Sends a method that has no reply (no-wait forms, acks). */
  private cast(method: MethodInput): void {
    this.checkOpen();
    this.conn.send(this.id, method);
  }

  // ─── exchange ───────────────────────────────────────────────────────────

  async exchangeDeclare(o: ExchangeDeclareOptions): Promise<void> {
    const m: MethodInput = {
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
    await this.send(m, o.noWait);
  }

  async exchangeDelete(o: ExchangeDeleteOptions): Promise<void> {
    const m: MethodInput = {
      name: "exchange.delete",
      args: { exchange: o.exchange, ifUnused: o.ifUnused, nowait: o.noWait },
    };
    await this.send(m, o.noWait);
  }

  /** Binds exchange `destination` to exchange `source` (a RabbitMQ extension). */
  async exchangeBind(o: ExchangeBindOptions): Promise<void> {
    await this.send({ name: "exchange.bind", args: exchangeBindArgs(o) }, o.noWait);
  }

  async exchangeUnbind(o: ExchangeBindOptions): Promise<void> {
    await this.send({ name: "exchange.unbind", args: exchangeBindArgs(o) }, o.noWait);
  }

  // ─── queue ──────────────────────────────────────────────────────────────

  async queueDeclare(o: QueueDeclareOptions = {}): Promise<QueueDeclareResult> {
    const m: MethodInput = {
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
    if (o.noWait) {
      this.cast(m);
      return { queue: o.queue ?? "", messageCount: 0, consumerCount: 0 };
    }
    return this.call(m, "queue.declare-ok");
  }

  async queueBind(o: QueueBindOptions): Promise<void> {
    const m: MethodInput = {
      name: "queue.bind",
      args: {
        queue: o.queue,
        exchange: o.exchange,
        routingKey: o.routingKey,
        nowait: o.noWait,
        arguments: o.arguments,
      },
    };
    await this.send(m, o.noWait);
  }

  async queueUnbind(o: QueueUnbindOptions): Promise<void> {
    await this.rpc({
      name: "queue.unbind",
      args: { queue: o.queue, exchange: o.exchange, routingKey: o.routingKey, arguments: o.arguments },
    });
  }

  /** Removes all ready messages; resolves with how many. */
  async queuePurge(o: QueuePurgeOptions): Promise<number> {
    const m: MethodInput = { name: "queue.purge", args: { queue: o.queue, nowait: o.noWait } };
    if (o.noWait) {
      this.cast(m);
      return 0;
    }
    return (await this.call(m, "queue.purge-ok")).messageCount;
  }

  /** Deletes a queue; resolves with how many messages it held. */
  async queueDelete(o: QueueDeleteOptions): Promise<number> {
    const m: MethodInput = {
      name: "queue.delete",
      args: { queue: o.queue, ifUnused: o.ifUnused, ifEmpty: o.ifEmpty, nowait: o.noWait },
    };
    if (o.noWait) {
      this.cast(m);
      return 0;
    }
    return (await this.call(m, "queue.delete-ok")).messageCount;
  }

  // ─── basic ──────────────────────────────────────────────────────────────

  async basicQos(o: QosOptions): Promise<void> {
    await this.rpc({
      name: "basic.qos",
      args: { prefetchCount: o.prefetchCount ?? 0, prefetchSize: o.prefetchSize ?? 0, global: o.global },
    });
  }

  /** Starts a consumer; resolves with its tag once the broker confirmed it. */
  async basicConsume(
    o: ConsumeOptions,
    handlers: ConsumeHandlers | ConsumeHandlers["onMessage"],
  ): Promise<string> {
    const h = typeof handlers === "function" ? { onMessage: handlers } : handlers;
    const tag = o.consumerTag ?? "";
    // Register before sending, so deliveries that follow consume-ok at once find their consumer.
    if (tag) {
      if (this.consumers.has(tag))
        throw new ConfigError(`consumer tag "${tag}" is already in use on channel ${this.id}`);
      this.consumers.set(tag, { ...h, tag });
    } else this.serverNamed.push(h);
    try {
      const ok = await this.call(
        {
          name: "basic.consume",
          args: {
            queue: o.queue,
            consumerTag: tag,
            noLocal: o.noLocal,
            noAck: o.noAck,
            exclusive: o.exclusive,
            arguments: o.arguments,
          },
        },
        "basic.consume-ok",
      );
      return ok.consumerTag;
    } catch (e) {
      if (tag) this.consumers.delete(tag);
      throw e;
    }
  }

  /** Stops a consumer; deliveries already sent may still arrive before this resolves. */
  async basicCancel(consumerTag: string): Promise<void> {
    await this.rpc({ name: "basic.cancel", args: { consumerTag } });
    this.consumers.delete(consumerTag);
  }

  /**
   * Publishes a message. Returns false when the connection's write buffer is over its
   * high-water mark: wait for `waitForDrain()` before publishing more. In confirm mode,
   * use `publish()` to learn the broker's answer.
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
   * basic.ack (rejects with PublishNackedError on basic.nack, UnroutableError when
   * mandatory and returned); otherwise once the frames are written out.
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
    if (sink === undefined) {
      this.confirms.add(undefined);
      return;
    }
    const p: Pending = { sink };
    if (options?.mandatory) {
      p.exchange = exchange;
      p.routingKey = routingKey;
      p.messageId = properties?.messageId;
      p.body = buf;
    }
    this.confirms.add(p);
  }

  /** False while the connection's write buffer is over its high-water mark. */
  get writable(): boolean {
    return !this.conn.writer.needsDrain;
  }

  /** Resolves when the connection's write buffer is below its high-water mark. */
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
    const w = this.conn.writer;
    const frameMax = this.conn.frameMax;
    const maxPayload = frameMax === 0 ? 0x7fff_ffff : frameMax - FRAME_OVERHEAD;
    const size = body.length;
    // method + header frames: properties with headers may be large, up to frame_max.
    const headerRoom = properties?.headers ? (frameMax === 0 ? 1 << 20 : frameMax) + 1024 : 4096;
    const inline = size <= maxPayload && size < ZERO_COPY_THRESHOLD;
    w.reserve(headerRoom + (inline ? size + FRAME_OVERHEAD : 0));
    const buf = w.buf;
    let p: number;
    try {
      p = writeMethodFrameWith(
        buf,
        w.pos,
        this.id,
        encodeBasicPublish,
        { exchange, routingKey, mandatory: options?.mandatory, immediate: options?.immediate },
        frameMax,
      );
      p = writeHeaderFrame(buf, p, this.id, CLASS_IDS.basic, size, properties, frameMax);
    } catch (e) {
      if (e instanceof RangeError) {
        throw new FrameTooLargeError("message properties do not fit in one frame (frame_max)", { cause: e });
      }
      throw e;
    }
    if (size === 0) {
      w.commit(p);
      return;
    }
    if (inline) {
      w.commit(writeBodyFrame(buf, p, this.id, body, 0, size));
      return;
    }
    w.commit(p);
    for (let from = 0; from < size; from += maxPayload) {
      const to = Math.min(size, from + maxPayload);
      const n = to - from;
      if (n < ZERO_COPY_THRESHOLD) {
        w.reserve(n + FRAME_OVERHEAD);
        w.commit(writeBodyFrame(w.buf, w.pos, this.id, body, from, to));
      } else {
        w.reserve(FRAME_HEADER_SIZE + 1);
        w.commit(writeBodyFrameHeader(w.buf, w.pos, this.id, n));
        const view = body.subarray(from, to);
        w.writeBuffer(
          Buffer.isBuffer(view) ? view : Buffer.from(view.buffer, view.byteOffset, view.byteLength),
        );
        w.reserve(1);
        w.buf[w.pos] = 0xce;
        w.commit(w.pos + 1);
      }
    }
  }

  /** Fetches one message, or null when the queue is empty. */
  async basicGet(o: GetOptions): Promise<Message | null> {
    const m = await this.rpc({ name: "basic.get", args: { queue: o.queue, noAck: o.noAck } });
    if (m.name === "basic.get-empty") return null;
    return (m as GetOkWithMessage).message;
  }

  basicAck(deliveryTag: number, options: { multiple?: boolean } = {}): void {
    this.checkOpen();
    const w = this.conn.writer;
    w.reserve(32);
    w.commit(
      writeMethodFrameWith(
        w.buf,
        w.pos,
        this.id,
        encodeBasicAck,
        { deliveryTag, multiple: options.multiple },
        0,
      ),
    );
  }

  basicNack(deliveryTag: number, options: { multiple?: boolean; requeue?: boolean } = {}): void {
    this.checkOpen();
    const w = this.conn.writer;
    w.reserve(32);
    w.commit(
      writeMethodFrameWith(
        w.buf,
        w.pos,
        this.id,
        encodeBasicNack,
        { deliveryTag, multiple: options.multiple, requeue: options.requeue ?? true },
        0,
      ),
    );
  }

  basicReject(deliveryTag: number, options: { requeue?: boolean } = {}): void {
    this.cast({ name: "basic.reject", args: { deliveryTag, requeue: options.requeue ?? true } });
  }

  /** Redelivers unacknowledged messages (requeue true: possibly to other consumers). */
  async basicRecover(options: { requeue?: boolean } = {}): Promise<void> {
    await this.rpc({ name: "basic.recover", args: { requeue: options.requeue ?? true } });
  }

  // ─── confirm, tx, flow ──────────────────────────────────────────────────

  /** Turns on publisher confirms. Idempotent. */
  async confirmSelect(options: { noWait?: boolean } = {}): Promise<void> {
    if (this.confirmMode) return;
    this.confirmMode = true;
    const m: MethodInput = { name: "confirm.select", args: { nowait: options.noWait } };
    if (options.noWait) this.cast(m);
    else await this.rpc(m);
  }

  async txSelect(): Promise<void> {
    await this.rpc({ name: "tx.select", args: {} });
    this.txMode = true;
  }

  async txCommit(): Promise<void> {
    await this.rpc({ name: "tx.commit", args: {} });
  }

  async txRollback(): Promise<void> {
    await this.rpc({ name: "tx.rollback", args: {} });
  }

  /** Asks the broker to pause (false) or resume (true) deliveries on this channel. */
  async flow(active: boolean): Promise<boolean> {
    const ok = await this.call({ name: "channel.flow", args: { active } }, "channel.flow-ok");
    return ok.active;
  }

  // ─── close ──────────────────────────────────────────────────────────────

  /** Orderly close: channel.close, wait for close-ok. Idempotent. */
  async close(): Promise<void> {
    if (this.state === "closed" || this.state === "closing") return;
    this.state = "closing";
    const closing = new Promise<Method>((resolve, reject) => {
      try {
        this.conn.send(this.id, {
          name: "channel.close",
          args: { replyCode: 200, replyText: "bye", classId: 0, methodId: 0 },
        });
        this.pushRpc([CHANNEL_CLOSE_OK], resolve, reject, "channel.close");
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
    const rpcs = this.rpcs;
    this.rpcs = [];
    for (const r of rpcs) r.reject(reason);
    const pend = this.confirms.drain();
    // A broker channel exception is what every pending publish gets too (as the pending RPCs do).
    const unconfirmedErr =
      err instanceof ChannelClosedByBroker
        ? err
        : new ChannelClosedError(`channel ${this.id} closed before the broker confirmed the publish`, {
            cause: err,
          });
    for (const [, p] of pend) p.sink.reject(unconfirmedErr);
    this.consumers.clear();
    this.serverNamed = [];
    this.conn.releaseChannel(this.id, awaitingCloseOk);
    this.emit("close", err);
  }

  // ─── incoming frames ────────────────────────────────────────────────────

  /** @internal */
  onFrame(type: number, payload: Buffer): void {
    if (this.state === "closed") return;
    switch (type) {
      case FRAME_METHOD: {
        if (this.inState !== In.Method) {
          throw new FrameError(`method frame on channel ${this.id} while content was expected`, {
            replyCode: 505,
          });
        }
        const m = decodeMethod(payload);
        if (CONTENT_METHODS.has(m.id)) {
          this.inMethod = m;
          this.inState = In.Header;
        } else this.onMethod(m);
        return;
      }
      case FRAME_HEADER: {
        if (this.inState !== In.Header) {
          throw new FrameError(`content header on channel ${this.id} without a content method`, {
            replyCode: 505,
          });
        }
        if (payload.length < 14) throw new FrameError("content header frame too short", { replyCode: 501 });
        const size = readU64(payload, 4);
        if (size > this.conn.options.maxMessageSize) {
          throw new FrameError(
            `incoming message of ${size} bytes exceeds maxMessageSize (${this.conn.options.maxMessageSize})`,
            { replyCode: 501 },
          );
        }
        try {
          this.inProps = decodeBasicProperties(payload, 12);
        } catch (e) {
          if (e instanceof WarrenError) throw e;
          throw new FrameError(`malformed content header: ${(e as Error).message}`, {
            cause: e,
            replyCode: 502,
          });
        }
        this.inSize = size;
        this.inReceived = 0;
        this.inBody = undefined;
        if (size === 0) this.deliver(Buffer.alloc(0));
        else this.inState = In.Body;
        return;
      }
      case FRAME_BODY: {
        if (this.inState !== In.Body) {
          throw new FrameError(`body frame on channel ${this.id} without a content header`, {
            replyCode: 505,
          });
        }
        const n = payload.length;
        const total = this.inReceived + n;
        if (total > this.inSize) {
          throw new FrameError(`message body larger than the ${this.inSize} bytes its header declared`, {
            replyCode: 501,
          });
        }
        if (this.inReceived === 0 && n === this.inSize) {
          this.deliver(payload); // whole body in one frame: no copy
          return;
        }
        // Grow with what actually arrives: a header declaring a huge size costs nothing until bodies come.
        let b = this.inBody;
        if (b === undefined || total > b.length) {
          const grown = Buffer.allocUnsafe(
            Math.min(this.inSize, Math.max(total, 2 * (b?.length ?? 0), 1 << 20)),
          );
          if (b !== undefined) b.copy(grown, 0, 0, this.inReceived);
          this.inBody = b = grown;
        }
        payload.copy(b, this.inReceived);
        this.inReceived = total;
        if (total === this.inSize) {
          this.inBody = undefined;
          this.deliver(b);
        }
        return;
      }
      default:
        throw new FrameError(`frame type ${type} on channel ${this.id}`, { replyCode: 503 });
    }
  }

  private deliver(body: Buffer): void {
    const m = this.inMethod!;
    const properties = this.inProps!;
    this.inState = In.Method;
    this.inMethod = undefined;
    this.inProps = undefined;
    switch (m.name) {
      case "basic.deliver": {
        const a = m.args;
        const c = this.consumers.get(a.consumerTag);
        const msg: Message = {
          body,
          properties,
          deliveryTag: a.deliveryTag,
          redelivered: a.redelivered,
          exchange: a.exchange,
          routingKey: a.routingKey,
          consumerTag: a.consumerTag,
        };
        // Cancelled meanwhile, or we are closing (AMQP says to discard): the broker requeues what is unacked.
        if (!c || this.state === "closing") return;
        try {
          const r = c.onMessage(msg);
          if (r && typeof (r as Promise<void>).then === "function") {
            (r as Promise<void>).then(undefined, (e) => this.reportHandlerError(e, msg));
          }
        } catch (e) {
          this.reportHandlerError(e, msg);
        }
        return;
      }
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
        this.resolveRpc(withMessage);
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
        this.matchReturn(r);
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

  /** A returned mandatory message belongs to the earliest unconfirmed publish it matches; its ack then rejects it. */
  private matchReturn(r: ReturnedMessage): void {
    if (!this.confirmMode) return;
    for (const p of this.confirms.values()) {
      if (
        p.exchange === r.exchange &&
        p.routingKey === r.routingKey &&
        p.returned === undefined &&
        p.messageId === r.properties.messageId &&
        p.body !== undefined &&
        p.body.length === r.body.length &&
        Buffer.compare(p.body, r.body) === 0
      ) {
        p.returned = r;
        return;
      }
    }
  }

  private resolveRpc(m: Method): void {
    const r = this.rpcs[0];
    if (!r?.replies.includes(m.id)) {
      throw new FrameError(`unexpected ${m.name} on channel ${this.id}`, { replyCode: 505 });
    }
    this.rpcs.shift();
    r.resolve(m);
  }

  private onMethod(m: Method): void {
    switch (m.id) {
      case BASIC_ACK:
      case BASIC_NACK: {
        const a = m.args as { deliveryTag: number; multiple: boolean };
        this.onConfirm(a.deliveryTag, a.multiple, m.id === BASIC_NACK);
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
        const c = this.consumers.get(tag);
        this.consumers.delete(tag);
        c?.onCancel?.(tag);
        this.emit("cancel", tag);
        return;
      }
      case BASIC_DELIVER:
      case BASIC_RETURN:
        return; // content methods are handled in deliver()
      case BASIC_CONSUME_OK: {
        // consume-oks come in the order of the consumes: a tag we do not know belongs to the oldest server-named one.
        const tag = (m as Extract<Method, { name: "basic.consume-ok" }>).args.consumerTag;
        if (!this.consumers.has(tag)) {
          const h = this.serverNamed.shift();
          if (h) this.consumers.set(tag, { ...h, tag });
        }
        this.resolveRpc(m);
        return;
      }
      default:
        this.resolveRpc(m);
    }
  }

  private onConfirm(tag: number, multiple: boolean, nack: boolean): void {
    this.confirms.settle(tag, multiple, (seq, p) => this.settle(p, seq, nack));
  }

  private settle(p: Pending, seq: number, nack: boolean): void {
    if (nack)
      p.sink.reject(
        new PublishNackedError(`the broker nacked publish #${seq} on channel ${this.id}; publish it again`),
      );
    else if (p.returned) p.sink.reject(new UnroutableError(p.returned));
    else p.sink.resolve();
  }
}

function exchangeBindArgs(o: ExchangeBindOptions) {
  return {
    destination: o.destination,
    source: o.source,
    routingKey: o.routingKey,
    nowait: o.noWait,
    arguments: o.arguments,
  };
}
