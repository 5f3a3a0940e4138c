/**
 * The RPC client: request/reply over RabbitMQ's direct reply-to.
 *
 *   const rpc = client.rpcClient();
 *   const reply = await rpc.call({ exchange: "", routingKey: "prices", body: "EURUSD", timeoutMs: 5000 });
 *
 * It consumes the pseudo-queue `amq.rabbitmq.reply-to` (noAck) on a supervised channel of its own
 * and publishes requests on that same channel with `replyTo: "amq.rabbitmq.reply-to"`, a generated
 * `correlationId` and `mandatory`: the broker sends the reply straight to that channel, with no
 * queue in between. A reply can only reach the channel that sent its request, so when that channel
 * (or the connection) dies, the calls it carried fail at once with a recoverable
 * RpcConnectionLostError, or are sent again on the next channel when the caller asked for retries.
 * An error reply (rpc-protocol.ts) becomes an RpcRemoteError.
 */
import type { Span } from "@opentelemetry/api";
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
} from "../errors.js";
import { exchangeNamedIn } from "../faults.js";
import type { RpcCallOutcome, RpcClientStats } from "../observability/observers.js";
import type { Tracing } from "../observability/tracing.js";
import { Deadlines } from "./deadlines.js";
import { Deque } from "./deque.js";
import { asyncDispose } from "./dispose.js";
import type { PublishProperties } from "./publisher.js";
import { DIRECT_REPLY_TO, RPC_ERROR_HEADER, remoteError } from "./rpc-protocol.js";

/** `client.rpcClient()` options. docs/rpc.md. */
export interface RpcClientOptions {
  /**
   * Calls sent and awaiting their reply at most (default 1000). More wait, in order and with
   * their timeout running, until a reply, a timeout or a failure frees a slot.
   */
  maxInFlight?: number;
  /** Timeout of calls that give none (ms, default 30000). */
  timeoutMs?: number;
}

/** One request for `RpcClient.call()`. */
export interface RpcRequest {
  /** Default "" (the default exchange: routingKey is the queue). */
  exchange?: string;
  /** The routing key: with the default exchange, the server's queue. */
  routingKey: string;
  /** The request body; a string is sent as UTF-8. */
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

/** What `RpcClient.call()` resolves with: the server's reply. */
export interface RpcReply {
  /** The reply body (empty when the handler returned nothing). */
  body: Buffer;
  /** The reply's properties (the handler's, plus the request's correlationId). */
  properties: BasicProperties;
}

/** What the RpcClient needs from its Client. */
export interface RpcClientHost {
  /** True once the client is closing, closed or failed. */
  readonly closed: boolean;
  /** Closes the RpcClient's supervised channel. */
  closeChannel(): void;
  tracing?: Tracing | undefined;
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
  /** When it times out (performance.now() ms). */
  deadline: number;
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

/** The events an RpcClient emits (`rpc.on(name, listener)`). */
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
export class RpcClient extends TypedEmitter<RpcClientEvents> implements AsyncDisposable {
  private ch: Channel | undefined;
  private readonly pending = new Map<string, Call>();
  /** Every call's timeout, on one timer. */
  private readonly deadlines = new Deadlines<Call>((c) => this.timedOut(c));
  private readonly waiting = new Deque<Call>();
  /** Calls to send again after their channel died, before the waiting ones. */
  private retries: Call[] = [];
  private readonly maxInFlight: number;
  private readonly timeoutMs: number;
  private readonly prefix = `${process.pid.toString(36)}.${Math.random().toString(36).slice(2, 10)}.`;
  private seq = 0;
  private closing = false;
  private idleWaiters: (() => void)[] = [];

  /** @internal made by client.rpcClient(); throws ConfigError for a bad option */
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

  /** Calls made since it was created (any outcome). */
  get calls(): number {
    return this.seq;
  }

  /** Calls accepted and not yet sent (no channel, or maxInFlight reached). */
  get queued(): number {
    return this.waiting.length + this.retries.length;
  }

  /** The number of the channel it calls on, while open; null otherwise. */
  get channelId(): number | null {
    return this.ch?.isOpen ? this.ch.id : null;
  }

  /** True while the reply consumer is set up on an open channel. */
  get ready(): boolean {
    return this.ch?.isOpen === true;
  }

  /**
   * Publishes a request and resolves with its reply. Waits (within the call's timeout) for the
   * connection and for a slot (maxInFlight). Rejects with RpcRemoteError (the handler threw),
   * RpcCallTimeoutError (no reply within `timeoutMs`), UnroutableError (no queue is bound for it:
   * at once), RpcConnectionLostError (its channel or connection died first; the server may have
   * processed it), ChannelClosedByBroker (the broker refused the publish, e.g. 404 no such
   * exchange), ConfigError (a bad `timeoutMs` or `retry`) or ClientClosedError.
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
    // A copy (replyTo, correlationId and expiration are set on it); none to make without properties.
    let properties: BasicProperties;
    if (request.properties === undefined) properties = {};
    else {
      const { persistent, ...rest } = request.properties;
      properties = rest;
      if (persistent !== undefined && properties.deliveryMode === undefined)
        properties.deliveryMode = persistent ? 2 : 1;
    }
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
        deadline: 0,
        timeoutMs,
        sendsLeft: sends,
        ch: undefined,
        expires: properties.expiration === undefined,
        done: false,
        started: performance.now(),
        span: undefined,
      };
      call.span = this.host.tracing?.startCall(exchange, request.routingKey, id, properties);
      call.deadline = call.started + timeoutMs;
      this.deadlines.add(call);
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
   * Stops accepting calls, waits up to `timeoutMs` (default 10000) for the outstanding ones, rejects
   * what is left with ClientClosedError (`cause`: `reason`, when given) and closes the channel.
   * Never rejects; idempotent.
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

  /** Closes the RPC client (close(), waiting up to 10 s for outstanding calls) at the end of an `await using` block. */
  [asyncDispose](): Promise<void> {
    return this.close();
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
        ? exchangeNamedIn(err.replyText)
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
        if (c.span !== undefined) this.host.tracing?.callRetried(c.span, err);
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

  private finish(c: Call, outcome: RpcCallOutcome, err?: Error): void {
    c.done = true;
    this.deadlines.delete(c);
    this.host.stats?.settled(outcome, (performance.now() - c.started) / 1000);
    if (c.span !== undefined) this.host.tracing?.callEnded(c.span, outcome, err);
  }

  private fail(c: Call, err: Error, outcome?: RpcCallOutcome): void {
    if (c.done) return;
    const o = outcome ?? callOutcome(err);
    this.finish(c, o, err);
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
