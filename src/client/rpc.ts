/**
 * Request/reply over RabbitMQ's direct reply-to.
 *
 *   const rpc = client.rpcClient();
 *   const reply = await rpc.call({ exchange: "", routingKey: "prices", body: "EURUSD", timeoutMs: 5000 });
 *
 *   const server = client.rpcServer({ queue: "prices", prefetch: 20 }, async (req) => quote(req.body));
 *
 * The client consumes the pseudo-queue `amq.rabbitmq.reply-to` (noAck) on a supervised channel of
 * its own and publishes requests on that same channel with `replyTo: "amq.rabbitmq.reply-to"`, a
 * generated `correlationId` and `mandatory`: the broker sends the reply straight to that channel,
 * with no queue in between. A reply can only reach the channel that sent its request, so when that
 * channel (or the connection) dies, the calls it carried fail at once with a recoverable
 * RpcConnectionLostError, or are sent again on the next channel when the caller asked for retries.
 *
 * The server is a supervised consumer (`client.consume()`: resubscribed after every recovery and
 * server cancel) whose handler's result is published to the request's replyTo with its
 * correlationId through the default exchange, before the request is acked. A handler that throws
 * is answered with an error reply (header `warren-error`: { name, message, code }), which the
 * calling client turns into an RpcRemoteError.
 */
import {
  type Context,
  context,
  propagation,
  type Span,
  SpanKind,
  SpanStatusCode,
  type Tracer,
  trace,
} from "@opentelemetry/api";
import type { Channel } from "../amqp/channel.js";
import type { BasicProperties, Body, Message, ReturnedMessage } from "../amqp/channel-types.js";
import { TypedEmitter } from "../amqp/events.js";
import {
  ChannelClosedByBroker,
  ClientClosedError,
  ConfigError,
  RpcCallTimeoutError,
  RpcConnectionLostError,
  RpcRemoteError,
  UnroutableError,
  WarrenError,
} from "../errors.js";
import type { RpcCallOutcome, RpcClientStats, RpcServerStats } from "../observability/observers.js";
import type { FieldTable } from "../protocol/table.js";

import type { ConsumedMessage, ConsumeOptions, Consumer, MessageHandler } from "./consumer.js";
import { Deque } from "./deque.js";
import type { PublishProperties } from "./publisher.js";
import type { QueueSpec, TopologySpec } from "./topology.js";

/** The pseudo-queue of direct reply-to: consume it (noAck) and name it as replyTo on the same channel. */
export const DIRECT_REPLY_TO = "amq.rabbitmq.reply-to";
/** The header of an error reply: a table { name, message, code? }. */
export const RPC_ERROR_HEADER = "warren-error";

// ─── instrumentation ─────────────────────────────────────────────────────────

// ─── the client ─────────────────────────────────────────────────────────────

export interface RpcClientOptions {
  /**
   * Calls sent and awaiting their reply at most (default 1000). More wait, in order and with
   * their timeout running, until a reply, a timeout or a failure frees a slot.
   */
  maxInFlight?: number;
  /** Timeout of calls that give none (ms, default 30000). */
  timeoutMs?: number;
}

export interface RpcRequest {
  /** Default "" (the default exchange: routingKey is the queue). */
  exchange?: string;
  routingKey: string;
  body: Body;
  /**
   * replyTo and correlationId are set by the client (a correlationId given here is replaced);
   * `expiration` defaults to what is left of timeoutMs when the request is sent, so a request
   * nobody consumed before its call timed out is dropped by the queue, not served.
   */
  properties?: PublishProperties;
  /**
   * From call() to the reply, waiting for a connection or a slot included (ms; default the
   * RpcClient's timeoutMs). Past it the call rejects with RpcCallTimeoutError; a reply that comes
   * later is dropped.
   */
  timeoutMs?: number;
  /**
   * Send the request again when the channel or connection that carried it dies before the reply
   * (default false: the call rejects with RpcConnectionLostError at once). `true` allows 3 sends
   * in all, `{ attempts }` that many, always within timeoutMs. Only for idempotent requests: the
   * server may have processed the first one (its reply could not reach the dead channel).
   */
  retry?: boolean | { attempts: number };
}

export interface RpcReply {
  body: Buffer;
  properties: BasicProperties;
}

/** What the RpcClient needs from its Client. */
export interface RpcClientHost {
  /** True once the client is closing, closed or failed. */
  readonly closed: boolean;
  /** Closes the RpcClient's supervised channel. */
  closeChannel(): void;
  tracing?: { tracer: Tracer; propagateAll?: boolean } | undefined;
  stats?: RpcClientStats | undefined;
}

interface Call {
  seq: number;
  id: string;
  exchange: string;
  routingKey: string;
  body: Body;
  properties: BasicProperties;
  resolve: (r: RpcReply) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout | undefined;
  timeoutMs: number;
  sendsLeft: number;
  /** The channel it was last published on (undefined while waiting). */
  ch: Channel | undefined;
  /** The caller gave no expiration: each send expires in the queue when the call times out. */
  expires: boolean;
  done: boolean;
  started: number;
  span: Span | undefined;
}

const DEFAULT_RETRY_SENDS = 3;

export interface RpcClientEvents {
  /** A reply matched no outstanding call (it came after its call timed out, or was never ours): dropped. */
  droppedReply: (reply: Message) => void;
}

/**
 * Calls over direct reply-to on a supervised channel (see the module comment). Every call settles:
 * with the reply, or RpcRemoteError, RpcCallTimeoutError, UnroutableError,
 * RpcConnectionLostError (recoverable: its channel or connection died), ClientClosedError, or the
 * broker's ChannelClosedByBroker for a publish it refused (e.g. a missing exchange).
 */
export class RpcClient extends TypedEmitter<RpcClientEvents> {
  private ch: Channel | undefined;
  private readonly pending = new Map<string, Call>();
  private readonly waiting = new Deque<Call>();
  /** Calls to send again after their channel died, before the waiting ones. */
  private retries: Call[] = [];
  private readonly maxInFlight: number;
  private readonly timeoutMs: number;
  private readonly prefix = `${process.pid.toString(36)}.${Math.random().toString(36).slice(2, 10)}.`;
  private seq = 0;
  private closing = false;
  private idleWaiters: (() => void)[] = [];

  constructor(
    private readonly host: RpcClientHost,
    options: RpcClientOptions = {},
  ) {
    super();
    this.maxInFlight = options.maxInFlight ?? 1000;
    this.timeoutMs = options.timeoutMs ?? 30_000;
    if (!(this.maxInFlight >= 1)) throw new ConfigError("rpcClient({ maxInFlight }) must be at least 1");
    if (!(this.timeoutMs > 0)) throw new ConfigError("rpcClient({ timeoutMs }) must be positive");
  }

  /** Calls sent and awaiting their reply. */
  get inFlight(): number {
    return this.pending.size;
  }

  /** Calls accepted and not yet sent (no channel, or maxInFlight reached). */
  get queued(): number {
    return this.waiting.length + this.retries.length;
  }

  /** True while the reply consumer is set up on an open channel. */
  get ready(): boolean {
    return this.ch?.isOpen === true;
  }

  /**
   * Publishes a request and resolves with its reply. Waits (within the call's timeout) for the
   * connection and for a slot (maxInFlight).
   */
  call(request: RpcRequest): Promise<RpcReply> {
    if (this.closing || this.host.closed)
      return Promise.reject(new ClientClosedError("the RPC client is closed: create a new one"));
    const timeoutMs = request.timeoutMs ?? this.timeoutMs;
    const r = request.retry;
    const sends = r === undefined || r === false ? 1 : r === true ? DEFAULT_RETRY_SENDS : r.attempts;
    if (!(timeoutMs > 0)) return Promise.reject(new ConfigError("call({ timeoutMs }) must be positive"));
    if (!(sends >= 1))
      return Promise.reject(new ConfigError("call({ retry: { attempts } }) must be at least 1"));
    const { persistent, ...rest } = request.properties ?? {};
    const properties: BasicProperties = { ...rest };
    if (persistent !== undefined && properties.deliveryMode === undefined)
      properties.deliveryMode = persistent ? 2 : 1;
    const seq = ++this.seq;
    const id = this.prefix + seq.toString(36);
    properties.replyTo = DIRECT_REPLY_TO;
    properties.correlationId = id;
    const exchange = request.exchange ?? "";
    return new Promise<RpcReply>((resolve, reject) => {
      const call: Call = {
        seq,
        id,
        exchange,
        routingKey: request.routingKey,
        body: request.body,
        properties,
        resolve,
        reject,
        timer: undefined,
        timeoutMs,
        sendsLeft: sends,
        ch: undefined,
        expires: properties.expiration === undefined,
        done: false,
        started: performance.now(),
        span: undefined,
      };
      const tracing = this.host.tracing;
      if (tracing !== undefined)
        call.span = startCallSpan(tracing.tracer, call, tracing.propagateAll !== false);
      call.timer = setTimeout(() => this.timedOut(call), timeoutMs);
      const ch = this.ch;
      if (
        ch !== undefined &&
        this.pending.size < this.maxInFlight &&
        this.waiting.length === 0 &&
        this.retries.length === 0
      )
        this.send(ch, call);
      else this.waiting.push(call);
    });
  }

  /**
   * Stops accepting calls, waits (bounded by `timeoutMs`) for the outstanding ones, rejects what
   * is left with ClientClosedError and closes the channel. Idempotent.
   */
  async close(timeoutMs = 10_000, reason?: Error): Promise<void> {
    const first = !this.closing;
    this.closing = true;
    if (this.pending.size + this.queued > 0 && timeoutMs > 0) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, timeoutMs);
        this.idleWaiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    const err = new ClientClosedError("the RPC client was closed before the reply came", {
      ...(reason ? { cause: reason } : {}),
    });
    for (const c of [...this.pending.values(), ...this.retries, ...this.waiting.drain()]) this.fail(c, err);
    this.retries = [];
    if (first) this.host.closeChannel();
  }

  // ─── the channel (called by the client's supervised channel) ──────────────

  /** @internal sets up a new channel: the direct reply-to consumer; then sends what waits. */
  async attach(ch: Channel): Promise<void> {
    ch.on("close", (err) => this.channelClosed(ch, err));
    ch.on("return", (r) => this.returned(ch, r));
    await ch.basicConsume({ queue: DIRECT_REPLY_TO, noAck: true }, (m) => this.replied(ch, m));
    this.ch = ch;
    // After the supervised channel marks itself open (this runs inside its open actor).
    queueMicrotask(() => this.pump());
  }

  private pump(): void {
    const ch = this.ch;
    if (ch === undefined || !ch.isOpen) return;
    while (this.pending.size < this.maxInFlight) {
      const c = this.retries.shift() ?? this.waiting.shift();
      if (c === undefined) break;
      if (!c.done) this.send(ch, c);
    }
    this.checkIdle();
  }

  private send(ch: Channel, c: Call): void {
    if (c.expires) {
      // Nobody waits for the reply after the timeout: no server should start on it then.
      const left = Math.ceil(c.started + c.timeoutMs - performance.now());
      c.properties.expiration = String(Math.max(left, 1));
    }
    try {
      ch.basicPublish(c.exchange, c.routingKey, c.body, c.properties, { mandatory: true });
    } catch (e) {
      if (!ch.isOpen && c.sendsLeft > 0) {
        // Closed under us (its close event comes next): wait for the next channel.
        this.retries.push(c);
        return;
      }
      this.fail(c, e instanceof Error ? e : new ConfigError(String(e)), "refused");
      return;
    }
    c.sendsLeft--;
    c.ch = ch;
    this.pending.set(c.id, c);
  }

  private replied(ch: Channel, m: Message): void {
    const id = m.properties.correlationId;
    const c = id === undefined ? undefined : this.pending.get(id);
    if (c === undefined || c.ch !== ch) {
      this.host.stats?.droppedReply();
      this.emit("droppedReply", m);
      return;
    }
    this.pending.delete(c.id);
    const remote = m.properties.headers?.[RPC_ERROR_HEADER];
    if (remote !== undefined) {
      this.fail(c, remoteError(remote), "remote_error");
    } else {
      this.finish(c, "ok");
      c.resolve({ body: m.body, properties: m.properties });
    }
    this.pump();
  }

  private returned(ch: Channel, r: ReturnedMessage): void {
    const id = r.properties.correlationId;
    const c = id === undefined ? undefined : this.pending.get(id);
    if (c === undefined || c.ch !== ch) return;
    this.pending.delete(c.id);
    this.fail(
      c,
      new UnroutableError({
        replyCode: r.replyCode,
        replyText: r.replyText,
        exchange: r.exchange,
        routingKey: r.routingKey,
      }),
      "unroutable",
    );
    this.pump();
  }

  private channelClosed(ch: Channel, err: Error | undefined): void {
    if (this.ch === ch) this.ch = undefined;
    const lost: Call[] = [];
    for (const c of this.pending.values()) if (c.ch === ch) lost.push(c);
    if (lost.length === 0) return;
    const closed = this.closing || this.host.closed;
    // A publish the broker refused closes the channel (404 no exchange): that call's own error.
    const refused =
      err instanceof ChannelClosedByBroker && err.methodName === "basic.publish"
        ? /exchange '([^']*)'/.exec(err.replyText)?.[1]
        : undefined;
    const retry: Call[] = [];
    for (const c of lost) {
      this.pending.delete(c.id);
      c.ch = undefined;
      if (closed) this.fail(c, new ClientClosedError("the RPC client was closed before the reply came"));
      else if (refused !== undefined && c.exchange === refused) this.fail(c, err as Error, "refused");
      else if (c.sendsLeft > 0) {
        retry.push(c);
        this.host.stats?.retried();
        c.span?.addEvent("warren.rpc.retry", { "warren.rpc.reason": err?.name ?? "closed" });
      } else
        this.fail(
          c,
          new RpcConnectionLostError(
            `the ${err instanceof ChannelClosedByBroker ? "channel" : "connection"} carrying the call closed before its reply came (the server may have processed it): call again, or pass retry for idempotent requests`,
            err ? { cause: err } : undefined,
          ),
        );
    }
    if (retry.length > 0) {
      // In their original order, before the calls that never went out.
      this.retries = [...retry, ...this.retries].sort((a, b) => a.seq - b.seq);
    }
    this.checkIdle();
  }

  private timedOut(c: Call): void {
    if (c.done) return;
    const sent = this.pending.delete(c.id);
    const why = sent
      ? ""
      : this.ch === undefined
        ? " (never sent: waiting for the connection)"
        : " (never sent: waiting for a slot, maxInFlight reached)";
    this.fail(
      c,
      new RpcCallTimeoutError(
        `no reply to the call to ${describe(c)} within ${c.timeoutMs} ms${why}: is a server consuming it? A reply arriving later is dropped`,
      ),
    );
    if (sent) this.pump();
    else this.checkIdle();
  }

  private finish(c: Call, outcome: RpcCallOutcome): void {
    c.done = true;
    if (c.timer !== undefined) clearTimeout(c.timer);
    this.host.stats?.settled(outcome, (performance.now() - c.started) / 1000);
    if (c.span !== undefined) {
      c.span.setAttribute("warren.rpc.outcome", outcome);
      c.span.end();
    }
  }

  private fail(c: Call, err: Error, outcome?: RpcCallOutcome): void {
    if (c.done) return;
    const o = outcome ?? callOutcome(err);
    if (c.span !== undefined) recordFailure(c.span, err);
    this.finish(c, o);
    c.reject(err);
    this.checkIdle();
  }

  private checkIdle(): void {
    if (this.idleWaiters.length === 0 || this.pending.size > 0) return;
    if (this.retries.some((c) => !c.done)) return;
    for (;;) {
      const c = this.waiting.peek();
      if (c === undefined || !c.done) break;
      this.waiting.shift();
    }
    if (this.waiting.length > 0) return;
    const w = this.idleWaiters;
    this.idleWaiters = [];
    for (const r of w) r();
  }
}

function describe(c: { exchange: string; routingKey: string }): string {
  return c.exchange === "" ? `queue "${c.routingKey}"` : `exchange "${c.exchange}" ("${c.routingKey}")`;
}

function callOutcome(err: Error): RpcCallOutcome {
  if (err instanceof RpcCallTimeoutError) return "timeout";
  if (err instanceof RpcRemoteError) return "remote_error";
  if (err instanceof UnroutableError) return "unroutable";
  if (err instanceof RpcConnectionLostError) return "connection_lost";
  if (err instanceof ClientClosedError) return "closed";
  return "refused";
}

function text(v: unknown): string | undefined {
  if (typeof v === "string") return v;
  if (v instanceof Uint8Array) return Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString("utf8");
  return undefined;
}

function remoteError(header: unknown): RpcRemoteError {
  const t = header !== null && typeof header === "object" ? (header as Record<string, unknown>) : {};
  return new RpcRemoteError({
    name: text(t["name"]) ?? "Error",
    message: text(t["message"]) ?? text(header) ?? "",
    code: text(t["code"]),
  });
}

// ─── tracing ────────────────────────────────────────────────────────────────

function spanName(c: { exchange: string; routingKey: string }): string {
  return `call ${c.exchange === "" ? c.routingKey : c.exchange}`;
}

/** A CLIENT span for a call (child of the active context), its trace context in a copy of the headers. */
function startCallSpan(tracer: Tracer, c: Call, propagateAll: boolean): Span {
  const parent = context.active();
  const span = tracer.startSpan(
    spanName(c),
    {
      kind: SpanKind.CLIENT,
      attributes: {
        "messaging.system": "rabbitmq",
        "messaging.operation.type": "send",
        "messaging.operation.name": "call",
        "messaging.destination.name": c.exchange === "" ? "amq.default" : c.exchange,
      },
    },
    parent,
  );
  if (span.isRecording()) {
    if (c.routingKey !== "") span.setAttribute("messaging.rabbitmq.destination.routing_key", c.routingKey);
    span.setAttribute("messaging.message.conversation_id", c.id);
  }
  // propagate: "sampled" — only recorded calls carry their trace context.
  if (!propagateAll && !span.isRecording()) return span;
  const carrier: Record<string, string> = {};
  propagation.inject(trace.setSpan(parent, span), carrier);
  for (const _ in carrier) {
    c.properties.headers = { ...c.properties.headers, ...carrier };
    break;
  }
  return span;
}

function recordFailure(span: Span, err: unknown): void {
  span.recordException(err instanceof Error ? err : String(err));
  span.setAttribute("error.type", err instanceof Error ? err.name : "_OTHER");
  span.setStatus({ code: SpanStatusCode.ERROR, message: err instanceof Error ? err.message : String(err) });
}

const headerGetter = {
  keys: (carrier: FieldTable | undefined) => (carrier ? Object.keys(carrier) : []),
  get: (carrier: FieldTable | undefined, key: string) => text(carrier?.[key]),
};

// ─── the server ─────────────────────────────────────────────────────────────

/** What a handler returns: a body, or a body with properties; nothing is an empty reply. */
export type RpcResponse = Body | { body: Body; properties?: PublishProperties };

export type RpcHandler = (
  request: ConsumedMessage,
) => RpcResponse | undefined | Promise<RpcResponse | undefined>;

export interface RpcServerOptions {
  /** The queue requests come from. */
  queue: string;
  /** Requests delivered and not yet answered at most (basic.qos; default 50). */
  prefetch?: number;
  /** Handlers running at once at most (default: prefetch). */
  concurrency?: number;
  /**
   * Declare the queue through the client (recorded: declared again after every recovery): `true`
   * for a non-durable queue, or its options. Default false: the caller declares it.
   */
  declare?: boolean | Omit<QueueSpec, "name">;
  /** basic.consume arguments. */
  arguments?: FieldTable;
  /** How long cancel() waits for running handlers (ms). */
  drainTimeout?: number;
}

export interface RpcServerEvents {
  /** A request was acked and dropped without a reply. */
  dropped: (info: { reason: "no_reply_to"; request: ConsumedMessage }) => void;
  /** A handler threw; the caller got an error reply. */
  handlerError: (error: unknown, request: ConsumedMessage) => void;
  /** The consumer's state (subscribing, consuming, resubscribing…). */
  state: (change: { from: string; to: string; error: Error | undefined }) => void;
}

/** What the RpcServer needs from its Client. */
export interface RpcServerHost {
  consume(options: ConsumeOptions, handler: MessageHandler): Consumer;
  declare(spec: TopologySpec): Promise<unknown>;
  /** The reply channel when it is open. */
  current(): Channel | undefined;
  /** The reply channel, waiting (bounded) while it is (re)opened. */
  replyChannel(timeoutMs: number): Promise<Channel>;
  closeChannel(): void;
  tracing?: { tracer: Tracer } | undefined;
  stats?: RpcServerStats | undefined;
}

/** How long a reply waits for the reply channel before the request is nacked (ms). */
const REPLY_CHANNEL_WAIT = 10_000;

/**
 * Serves requests from a queue with a supervised consumer; see the module comment. The request is
 * acked once its reply was handed to the socket (at least once: a request whose server died before
 * that is delivered again, maybe to another server).
 */
export class RpcServer extends TypedEmitter<RpcServerEvents> {
  readonly queue: string;
  /** The underlying consumer, once subscribed for the first time (after the declare, if any). */
  consumer: Consumer | undefined;
  private readonly concurrency: number;
  private running = 0;
  private readonly slots = new Deque<() => void>();
  private readonly started: Promise<void>;
  private stopped = false;
  private readyWaiters: { resolve: () => void; reject: (e: Error) => void }[] = [];
  private isReady = false;
  /** Requests served since the start (any outcome). */
  served = 0;

  constructor(
    private readonly host: RpcServerHost,
    private readonly options: RpcServerOptions,
    private readonly handler: RpcHandler,
  ) {
    super();
    this.queue = options.queue;
    const prefetch = options.prefetch ?? 50;
    this.concurrency = options.concurrency ?? prefetch;
    if (!(this.concurrency >= 1)) throw new ConfigError("rpcServer({ concurrency }) must be at least 1");
    this.started = this.start(prefetch);
    this.started.catch((e: unknown) => this.releaseReady(e instanceof Error ? e : new Error(String(e))));
  }

  private async start(prefetch: number): Promise<void> {
    const o = this.options;
    if (o.declare) {
      const spec = o.declare === true ? {} : o.declare;
      await this.host.declare({ queues: [{ ...spec, name: o.queue }] });
    }
    if (this.stopped) return;
    const consumer = this.host.consume(
      {
        queue: o.queue,
        prefetch,
        ...(o.arguments !== undefined ? { arguments: o.arguments } : {}),
        ...(o.drainTimeout !== undefined ? { drainTimeout: o.drainTimeout } : {}),
      },
      (msg) => this.onRequest(msg),
    );
    this.consumer = consumer;
    consumer.on("state", (change) => {
      if (change.to === "consuming") {
        this.isReady = true;
        this.releaseReady();
      }
      this.emit("state", change);
    });
    // Failures are answered to the caller; the consumer only sees a failed reply (nacked).
    consumer.on("error", () => undefined);
  }

  /** Resolves once the server consumes its queue (the first time). */
  ready(): Promise<void> {
    if (this.isReady) return Promise.resolve();
    return new Promise((resolve, reject) => this.readyWaiters.push({ resolve, reject }));
  }

  private releaseReady(err?: Error): void {
    const w = this.readyWaiters;
    this.readyWaiters = [];
    for (const x of w) err ? x.reject(err) : x.resolve();
  }

  /** Handlers running now. */
  get inFlight(): number {
    return this.running;
  }

  /** Stops consuming, waits (bounded) for running handlers and their replies, closes the reply channel. */
  async cancel(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    await this.started.catch(() => undefined);
    await this.consumer?.cancel();
    this.host.closeChannel();
    this.releaseReady(new ClientClosedError("the RPC server was cancelled"));
  }

  private async onRequest(msg: ConsumedMessage): Promise<void> {
    const t0 = performance.now();
    const stats = this.host.stats;
    const replyTo = msg.properties.replyTo;
    if (replyTo === undefined || replyTo === "") {
      this.served++;
      stats?.served("no_reply_to", 0);
      this.emit("dropped", { reason: "no_reply_to", request: msg });
      return;
    }
    if (this.running >= this.concurrency) await new Promise<void>((r) => this.slots.push(r));
    this.running++;
    const tracer = this.host.tracing?.tracer;
    const traced = tracer === undefined ? undefined : startServeSpan(tracer, this.queue, msg);
    const span = traced?.span;
    let response: RpcResponse | undefined;
    let failure: unknown;
    let failed = false;
    try {
      response =
        traced === undefined
          ? await this.handler(msg)
          : await context.with(traced.context, this.handler, undefined, msg);
    } catch (e) {
      failed = true;
      failure = e;
    } finally {
      this.running--;
      this.slots.shift()?.();
    }
    const properties: BasicProperties = {};
    let body: Body = "";
    if (failed) {
      properties.headers = { [RPC_ERROR_HEADER]: errorTable(failure) };
      if (span !== undefined) recordFailure(span, failure);
      // The caller gets the error: no warning when nobody listens.
      this.emit("handlerError", failure, msg);
    } else if (response !== undefined && response !== null) {
      if (typeof response === "string" || response instanceof Uint8Array) body = response;
      else {
        body = response.body;
        const { persistent: _p, ...rest } = response.properties ?? {};
        Object.assign(properties, rest);
      }
    }
    const correlationId = msg.properties.correlationId;
    if (correlationId !== undefined) properties.correlationId = correlationId;
    else delete properties.correlationId;
    try {
      const ch = this.host.current() ?? (await this.host.replyChannel(REPLY_CHANNEL_WAIT));
      ch.basicPublish("", replyTo, body, properties);
    } catch (e) {
      this.served++;
      stats?.served("reply_failed", (performance.now() - t0) / 1000);
      if (span !== undefined) {
        recordFailure(span, e);
        span.end();
      }
      throw e; // nacked: the broker redelivers the request
    }
    this.served++;
    stats?.served(failed ? "error" : "ok", (performance.now() - t0) / 1000);
    if (span !== undefined) {
      span.setAttribute("warren.rpc.outcome", failed ? "error" : "ok");
      span.end();
    }
  }
}

/** The error reply's table: name, message and (for warren's errors, or any error with one) code. */
function errorTable(err: unknown): FieldTable {
  const e = err instanceof Error ? err : undefined;
  const t: FieldTable = {
    name: e?.name ?? "Error",
    message: e?.message ?? String(err),
  };
  const code = err instanceof WarrenError ? err.code : (err as { code?: unknown } | undefined)?.code;
  if (typeof code === "string") t["code"] = code;
  return t;
}

/**
 * A SERVER span for a request: a child of the active span (the consumer span when tracing is on),
 * or of the caller's context from the headers.
 */
function startServeSpan(
  tracer: Tracer,
  queue: string,
  msg: ConsumedMessage,
): { span: Span; context: Context } {
  const active = context.active();
  const parent =
    trace.getSpan(active) !== undefined
      ? active
      : propagation.extract(active, msg.properties.headers, headerGetter);
  const span = tracer.startSpan(
    `serve ${queue}`,
    {
      kind: SpanKind.SERVER,
      attributes: {
        "messaging.system": "rabbitmq",
        "messaging.operation.type": "process",
        "messaging.operation.name": "serve",
        "messaging.destination.subscription.name": queue,
      },
    },
    parent,
  );
  if (span.isRecording() && msg.properties.correlationId !== undefined)
    span.setAttribute("messaging.message.conversation_id", msg.properties.correlationId);
  return { span, context: trace.setSpan(parent, span) };
}
