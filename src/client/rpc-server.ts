/**
 * The RPC server: a supervised consumer (`client.consume()`: resubscribed after every recovery and
 * server cancel) whose handler's result is published to the request's replyTo with its
 * correlationId through the default exchange, before the request is acked. A handler that throws
 * is answered with an error reply (rpc-protocol.ts), which the calling client turns into an
 * RpcRemoteError.
 *
 *   const server = client.rpcServer({ queue: "prices", prefetch: 20 }, async (req) => quote(req.body));
 */
import type { Channel } from "../amqp/channel.js";
import type { BasicProperties, Body } from "../amqp/channel-types.js";
import { TypedEmitter } from "../amqp/events.js";
import { ClientClosedError, ConfigError } from "../errors.js";
import type { RpcServerStats } from "../observability/observers.js";
import type { Tracing } from "../observability/tracing.js";
import type { FieldTable } from "../protocol/table.js";
import type { Consumer } from "./consumer.js";
import type { ConsumedMessage, ConsumerOptions, MessageHandler } from "./consumer-types.js";
import { Deque } from "./deque.js";
import { asyncDispose } from "./dispose.js";
import type { PublishProperties } from "./publisher.js";
import { errorTable, RPC_ERROR_HEADER } from "./rpc-protocol.js";
import type { QueueSpec, TopologySpec } from "./topology.js";
import { Waiters } from "./waiters.js";

/**
 * What a handler returns: a body, or a body with properties; nothing is an empty reply. The reply's
 * correlationId is the request's; `persistent` is ignored (a reply is not stored).
 */
export type RpcResponse = Body | { body: Body; properties?: PublishProperties };

/**
 * An RpcServer's handler: gets the request (as consumers get a delivery) and returns the reply,
 * or throws for an error reply (RpcRemoteError at the caller).
 */
export type RpcHandler = (
  request: ConsumedMessage,
) => RpcResponse | undefined | Promise<RpcResponse | undefined>;

/** `client.rpcServer()` options. docs/rpc.md. */
export interface RpcServerOptions {
  /** The queue requests come from. */
  queue: string;
  /** Requests delivered and not yet answered at most (basic.qos; default 50). */
  prefetch?: number;
  /** Handlers running at once at most (default: prefetch). */
  concurrency?: number;
  /**
   * Declare the queue through the client (recorded: declared again after every recovery): `true`
   * for a durable queue (declare()'s default for a named queue), or its options (e.g.
   * `{ exclusive: true }` for a queue of this connection only). Default false: the caller declares it.
   */
  declare?: boolean | Omit<QueueSpec, "name">;
  /** basic.consume arguments. */
  arguments?: FieldTable;
  /**
   * How long cancel() waits for running handlers, in ms (default: the client's `closeTimeout`, else 10000).
   */
  drainTimeout?: number;
}

/** The events an RpcServer emits (`server.on(name, listener)`). */
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
  consume(options: ConsumerOptions, handler: MessageHandler): Consumer;
  declare(spec: TopologySpec): Promise<unknown>;
  /** The reply channel when it is open. */
  current(): Channel | undefined;
  /** The reply channel, waiting (bounded) while it is (re)opened. */
  replyChannel(timeoutMs: number): Promise<Channel>;
  closeChannel(): void;
  tracing?: Tracing | undefined;
  stats?: RpcServerStats | undefined;
}

/** How long a reply waits for the reply channel before the request is nacked (ms). */
const REPLY_CHANNEL_WAIT = 10_000;

/**
 * Serves requests from a queue with a supervised consumer; see the module comment. The request is
 * acked once its reply was handed to the socket (at least once: a request whose server died before
 * that is delivered again, maybe to another server).
 */
export class RpcServer extends TypedEmitter<RpcServerEvents> implements AsyncDisposable {
  /** The queue it serves. */
  readonly queue: string;
  /** The underlying consumer, once subscribed for the first time (after the declare, if any). */
  consumer: Consumer | undefined;
  private readonly concurrency: number;
  private running = 0;
  private readonly slots = new Deque<() => void>();
  private readonly started: Promise<void>;
  private stopped = false;
  private readonly readyWaiters = new Waiters();
  private isReady = false;
  /** Requests served since the start (any outcome). */
  served = 0;

  /** @internal made by client.rpcServer(); throws ConfigError for a bad option */
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

  /**
   * Resolves once the server consumes its queue (the first time). Rejects with the declare's error
   * when `declare` failed (e.g. ChannelClosedByBroker 406, NotConnectedError), or ClientClosedError
   * when cancelled first. A consumer fault does not settle it: a missing queue is retried, and a
   * refused subscription shows as a `state` event to failed.
   */
  ready(): Promise<void> {
    if (this.isReady) return Promise.resolve();
    return this.readyWaiters.wait();
  }

  private releaseReady(err?: Error): void {
    if (err) this.readyWaiters.rejectAll(err);
    else this.readyWaiters.resolveAll();
  }

  /** Handlers running now. */
  get inFlight(): number {
    return this.running;
  }

  /**
   * Stops consuming, waits (bounded by `drainTimeout`) for running handlers and their replies,
   * closes the reply channel. Never rejects; idempotent.
   */
  async cancel(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    await this.started.catch(() => undefined);
    await this.consumer?.cancel();
    this.host.closeChannel();
    this.releaseReady(new ClientClosedError("the RPC server was cancelled"));
  }

  /** Cancels the RPC server (cancel()) at the end of an `await using` block. */
  [asyncDispose](): Promise<void> {
    return this.cancel();
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
    const tracing = this.host.tracing;
    const traced = tracing?.startServe(this.queue, msg.properties);
    const span = traced?.span;
    let response: RpcResponse | undefined;
    let failure: unknown;
    let failed = false;
    try {
      response =
        traced === undefined
          ? await this.handler(msg)
          : await (tracing as Tracing).run(traced.context, this.handler, msg);
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
      if (span !== undefined) tracing?.replyFailed(span, e, failed ? failure : undefined);
      throw e; // nacked: the broker redelivers the request
    }
    this.served++;
    stats?.served(failed ? "error" : "ok", (performance.now() - t0) / 1000);
    if (span !== undefined) tracing?.served(span, failed ? "error" : "ok", failure);
  }
}
