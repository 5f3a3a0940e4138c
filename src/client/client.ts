/**
 * The supervised client: what a long-running service hands its broker to.
 *
 *   const client = connect({ urls: ["amqp://a", "amqp://b"], connectionName: "orders" });
 *   await client.ready();
 *   client.on("state", ({ from, to, error }) => …);
 *   await client.declare({ exchanges, queues, bindings });
 *   const consumer = client.consume({ queue: "q", prefetch: 50 }, async (msg) => …);
 *   await client.close();
 *
 * The connection machine supervises: it connects (rotating through the hosts),
 * restores the recorded topology, resumes consumers and reopens channels after every
 * fault, with jittered exponential backoff. A transient fault is survived for ever: restarts
 * faster than the restart intensity make the client `degraded` (a longer backoff), never dead.
 * A permanent error (credentials, vhost, TLS trust; see faults.ts) ends in `failed` at once, as
 * does the caller's own `giveUpAfter` limit.
 */
import { type Actor, createActor, fromCallback, fromPromise } from "xstate";
import {
  DEFAULT_BACKOFF,
  DEFAULT_ESCALATION,
  DEFAULT_INTENSITY,
  type IntensityOptions,
} from "../../machines/backoff.js";
import {
  type ConnectInput,
  type ConnectionEvent,
  connectionMachine,
  type LifecycleError,
} from "../../machines/connection.js";
import { leafName } from "../../machines/state-value.js";
import type { Channel } from "../amqp/channel.js";
import type { Body, PublishOptions } from "../amqp/channel-types.js";
import type { Connection } from "../amqp/connection.js";
import { TypedEmitter } from "../amqp/events.js";
import { ClientClosedError, ConnectionClosedError, type HostAttempts, ReadyTimeoutError } from "../errors.js";
import { isReported } from "../faults.js";
import { ClientMetrics } from "../observability/metrics/client-metrics.js";
import type { ClientState } from "../observability/observers.js";
import { Tracing } from "../observability/tracing.js";
import type { ClientEvents, ClientOptions } from "./client-options.js";
import { connectActor, connectionOptions, watchActor } from "./connection-actors.js";
import { Consumer } from "./consumer.js";
import type { ConsumerOptions, MessageHandler, MessagesOptions } from "./consumer-types.js";
import { type CredentialKeeper, credentialKeeper } from "./credential-refresh.js";
import { asyncDispose } from "./dispose.js";
import { Hosts } from "./hosts.js";
import { ManagedChannel } from "./managed-channel.js";
import { MessageStream } from "./messages.js";
import { Publisher, type PublisherOptions, type PublishProperties } from "./publisher.js";
import { RpcClient, type RpcClientOptions } from "./rpc-client.js";
import { type RpcHandler, RpcServer, type RpcServerOptions } from "./rpc-server.js";
import { type BindingSpec, type DeclareResult, Topology, type TopologySpec } from "./topology.js";
import { Waiters } from "./waiters.js";

type ConnActor = Actor<typeof connectionMachine>;

/** The same reported fault is emitted as `error` at most once in this many ms. */
const REPORT_INTERVAL = 5_000;

/**
 * The supervised client (`connect()`): one connection kept up for as long as the client lives,
 * through every transient fault, with the topology, channels, publishers and consumers made
 * through it restored after each recovery. See the module comment and docs/client.md.
 */
export class Client extends TypedEmitter<ClientEvents> implements AsyncDisposable {
  /** The live low-level connection, when there is one (an escape hatch: prefer the client's API). */
  connection: Connection | undefined;
  /**
   * The exchanges, queues and bindings declared through this client, declared again after every
   * recovery. Read it (`topology.snapshot()`); change it through declare(), deleteQueue(),
   * deleteExchange() and unbind().
   */
  readonly topology = new Topology();
  private readonly hosts: Hosts;
  private readonly opts: ClientOptions;
  private readonly actor: ConnActor;
  private readonly consumerSet = new Set<Consumer>();
  private readonly managed: ManagedChannel[] = [];
  private readonly channelIntensity: IntensityOptions;
  /** @internal set when metrics are on */
  readonly metrics: ClientMetrics | undefined;
  /** Set when tracing is on. */
  private readonly tracing: Tracing | undefined;
  private admin: ManagedChannel | undefined;
  private readonly publisherList: Publisher[] = [];
  private defaultPublisher: Publisher | undefined;
  private readonly rpcClientList: RpcClient[] = [];
  private readonly rpcServerList: RpcServer[] = [];
  private stateName: ClientState = "idle";
  private degradedNow = false;
  /** True once restore() started the supervised children on this connection (until it is lost). */
  private childrenUp = false;
  private everOpen = false;
  private readonly readyWaiters = new Waiters();
  /** When each reported fault (code and message) was last emitted as `error`. */
  private readonly reportedAt = new Map<string, number>();
  /** The login of `credentials`, asked for before each attempt and kept fresh (undefined: the URL's). */
  private readonly credentials: CredentialKeeper | undefined;

  /** Creates the client and starts connecting on the next microtask: the same as `connect(options)`. */
  constructor(options: ClientOptions = {}) {
    super();
    const urls = options.urls ?? [
      options.url ?? process.env["AMQP_URL"] ?? "amqp://guest:guest@127.0.0.1:5672/",
    ];
    this.hosts = new Hosts(urls, options.shuffleHosts === true);
    this.opts = options;
    this.channelIntensity = { ...DEFAULT_INTENSITY, ...options.channelRestartIntensity };
    this.metrics = options.metrics ? new ClientMetrics(options.metrics, options.connectionName) : undefined;
    this.tracing = Tracing.from(options.tracing, () => this.connection?.options);
    this.credentials = credentialKeeper(options, {
      metrics: this.metrics,
      emit: (event, change) => this.emit(event, change),
      report: (error) => this.report(error),
    });
    const machine = connectionMachine.provide({
      actors: {
        connect: fromCallback<ConnectionEvent, ConnectInput>(({ sendBack, input }) =>
          connectActor(
            connectionOptions(this.opts, this.hosts.url(input.hostIndex)),
            this.metrics,
            (conn) => {
              this.connection = conn;
            },
            sendBack,
            this.credentials,
          ),
        ),
        restore: fromPromise(() => this.restore()),
        watch: fromCallback<ConnectionEvent>(({ sendBack }) =>
          watchActor(
            this.connection,
            (conn) => {
              if (this.connection === conn) this.connection = undefined;
            },
            sendBack,
            this.credentials,
          ),
        ),
        shutdown: fromPromise(() => this.shutdown()),
      },
    });
    this.actor = createActor(machine, {
      ...(this.metrics ? { inspect: this.metrics.inspect } : {}),
      input: {
        hostCount: urls.length,
        ...(options.hostCooldown !== undefined ? { hostCooldown: options.hostCooldown } : {}),
        backoff: { ...DEFAULT_BACKOFF, ...options.reconnect },
        intensity: { ...DEFAULT_INTENSITY, ...options.restartIntensity },
        escalation: { ...DEFAULT_ESCALATION, ...options.escalation },
        ...(options.giveUpAfter ? { giveUpAfter: options.giveUpAfter } : {}),
      },
    });
    this.actor.subscribe((snap) => this.onSnapshot(snap.value, snap.context));
    this.actor.start();
    // On the next microtask: `client.on("state")` right after connect() sees the first attempt too.
    queueMicrotask(() => {
      if (this.stateName === "idle") this.actor.send({ type: "START" });
    });
  }

  /**
   * The supervisor's state: idle, connecting, handshaking, restoring, running, blocked, recovering,
   * degraded, closing, closed, failed. The first transition (idle → connecting) happens on a
   * microtask after connect(), so a `state` listener attached on the next line sees it.
   */
  get state(): ClientState {
    return this.stateName;
  }

  /**
   * True while the restart intensity is exceeded and the connection has not stayed up for
   * `escalation.resetAfterMs` since: the backoff escalates (up to 30 s by default).
   */
  get degraded(): boolean {
    return this.degradedNow;
  }

  /**
   * Resolves when the client is open and its topology restored (state running or blocked).
   * Rejects once it failed, with the permanent error that failed it (AuthenticationError,
   * VhostNotAllowedError, TlsError, HandshakeError, RestartIntensityError…), or with
   * ClientClosedError once it was closed. With `timeoutMs`, rejects after that long with a
   * ReadyTimeoutError naming each host tried and its last error; the client goes on recovering
   * (close() it to stop). Without it, waits for as long as it takes.
   */
  ready(options: { timeoutMs?: number } = {}): Promise<void> {
    if (this.stateName === "running" || this.stateName === "blocked") return Promise.resolve();
    if (this.stateName === "failed" || this.stateName === "closed") {
      return Promise.reject(this.failure());
    }
    const timeoutMs = options.timeoutMs;
    return this.readyWaiters.wait(
      timeoutMs,
      () => new ReadyTimeoutError(timeoutMs ?? 0, this.hostAttempts()),
    );
  }

  /** Each host tried so far: attempts and last error (messages carry no credentials). */
  hostAttempts(): HostAttempts[] {
    return this.hosts.attempts();
  }

  private failure(): Error {
    return (
      (this.actor.getSnapshot().context.error as Error | undefined) ??
      new ClientClosedError(this.stateName === "closed" ? "the client was closed" : "the client failed")
    );
  }

  // ─── supervision plumbing ───────────────────────────────────────────────

  private onSnapshot(
    value: unknown,
    context: {
      error: LifecycleError | undefined;
      hostIndex: number;
      failedHost: number;
      degraded: boolean;
      level: number;
    },
  ): void {
    const to = leafName(value) as ClientState;
    if (context.degraded !== this.degradedNow) {
      this.degradedNow = context.degraded;
      // A change of condition without a change of state (reset while running) is told here alone.
      if (to === this.stateName) this.emit("degraded", { degraded: context.degraded, level: context.level });
      else queueMicrotask(() => this.emit("degraded", { degraded: context.degraded, level: context.level }));
    }
    if (to === this.stateName) return;
    const failure = to === "recovering" || to === "degraded" || to === "failed";
    const error = failure ? context.error : undefined;
    const host = this.hosts.name(failure ? context.failedHost : context.hostIndex);
    if (failure && error !== undefined && to !== "failed") {
      this.hosts.failed(host, error);
      if (isReported(error)) this.report(error);
    }
    const from = this.stateName;
    this.stateName = to;
    if (to === "connecting") this.hosts.attempted(host);
    const wasOpen = from === "restoring" || from === "running" || from === "blocked";
    const isOpen = to === "restoring" || to === "running" || to === "blocked";
    if (!isOpen) this.childrenUp = false;
    // Closing is not a lost connection: shutdown() drains consumers and closes channels itself.
    if (wasOpen && !isOpen && to !== "closing") {
      for (const c of this.consumerSet) c.send({ type: "CONNECTION_LOST" });
      for (const m of this.managed) m.actor.send({ type: "CONNECTION_LOST" });
    }
    if (to === "running" || to === "blocked") {
      this.everOpen = true;
      this.readyWaiters.resolveAll();
    }
    if (to === "failed" || to === "closed") {
      const err = this.failure();
      this.readyWaiters.rejectAll(err);
      for (const c of this.consumerSet) c.send({ type: "CONNECTION_LOST" });
      for (const m of this.managed)
        if (m.actor.getSnapshot().status !== "done") m.actor.send({ type: "CLOSE" });
      if (to === "failed") {
        // Nothing will be sent any more: settle what publishers hold, close their outboxes (rows stay stored).
        for (const p of this.publisherList) void p.close(0, err);
        for (const r of this.rpcClientList) void r.close(0, err);
        const conn = this.connection;
        this.connection = undefined;
        void conn?.close({ timeout: 1000 });
        if (this.listenerCount("error") > 0) this.emit("error", err);
      }
    }
    this.emit("state", { from, to, error, host, degraded: context.degraded });
  }

  /** After (re)connecting: topology, then channels, then consumers (waiting for their first attempt). */
  private async restore(): Promise<void> {
    const conn = this.connection;
    if (!conn?.isOpen) throw new ConnectionClosedError("the connection closed before it could be restored");
    if (this.topology.size > 0) {
      const ch = await conn.openChannel();
      try {
        await this.topology.restore(ch, (queue, from, to) => this.emit("queueRenamed", { queue, from, to }));
      } finally {
        if (ch.isOpen) await ch.close();
      }
    }
    // Channels and consumers created from here on start at once (they would miss the broadcast).
    this.childrenUp = true;
    for (const m of this.managed) m.actor.send({ type: "CONNECTED" });
    const consumers = [...this.consumerSet];
    for (const c of consumers) c.send({ type: "CONNECTED" });
    await Promise.all(consumers.map((c) => c.settled()));
  }

  /**
   * @internal Emits `error` for a fault the application must hear about while warren keeps trying
   * (faults.ts isReported) or that ended an object for good: at most once per `REPORT_INTERVAL`
   * ms for the same code and message, so a fault that repeats every backoff is not a flood.
   */
  report(error: Error): void {
    const key = `${(error as { code?: string }).code ?? error.name}:${error.message}`;
    const now = Date.now();
    const last = this.reportedAt.get(key);
    if (last !== undefined && now - last < REPORT_INTERVAL) return;
    if (this.reportedAt.size >= 256) this.reportedAt.clear();
    this.reportedAt.set(key, now);
    if (this.listenerCount("error") > 0) this.emit("error", error);
  }

  /** @internal a supervised channel gave up: restart the connection (counts toward its intensity). */
  escalate(error: LifecycleError): void {
    this.actor.send({ type: "ESCALATE", error });
    void this.connection?.close({ timeout: 1000 });
  }

  /** @internal opens a raw channel on the live connection */
  openRawChannel(): Promise<Channel> {
    const conn = this.connection;
    // childrenUp, not the state name: restore() starts the children before the state event is seen.
    if (!conn?.isOpen || !this.childrenUp) return Promise.reject(new ConnectionClosedError("not connected"));
    return conn.openChannel();
  }

  private get isOpen(): boolean {
    return this.stateName === "restoring" || this.stateName === "running" || this.stateName === "blocked";
  }

  private managedChannel(setup: (ch: Channel) => Promise<void>): ManagedChannel {
    const m = new ManagedChannel(this, setup, this.isOpen && this.childrenUp, this.channelIntensity);
    this.managed.push(m);
    return m;
  }

  private get waitTimeout(): number {
    return this.opts.connectWaitTimeout ?? 30_000;
  }

  private checkUsable(): void {
    if (this.stateName === "closing" || this.stateName === "closed")
      throw new ClientClosedError("the client is closed");
    if (this.stateName === "failed") throw this.failure();
  }

  // ─── topology ───────────────────────────────────────────────────────────

  /** The client's own channel for declaring and deleting, waiting (bounded) for the connection. */
  private adminChannel(): Promise<Channel> {
    this.checkUsable();
    this.admin ??= this.managedChannel(async () => undefined);
    return this.admin.get(this.waitTimeout);
  }

  /**
   * Declares exchanges, queues and bindings, in that order, and records them: they are declared
   * again after every recovery. Resolves with the queue names (the broker's, for server-named
   * queues). Waits up to `connectWaitTimeout` (30 s) for the connection, then rejects with
   * NotConnectedError. Rejects with ChannelClosedByBroker when the broker refuses a declaration
   * (406 PRECONDITION_FAILED: it exists with other arguments; 404 NOT_FOUND: a binding names a
   * missing exchange; 403 ACCESS_REFUSED), with ClientClosedError once the client is closing, or
   * with the error that failed the client.
   */
  async declare(spec: TopologySpec): Promise<DeclareResult> {
    const ch = await this.adminChannel();
    return this.topology.declare(ch, spec);
  }

  /**
   * Deletes a queue and forgets it (and its bindings); resolves with how many messages it held.
   * `queue` may be the first name of a server-named queue. Waits and rejects as declare() does
   * (406 PRECONDITION_FAILED when `ifUnused` or `ifEmpty` is not met).
   */
  async deleteQueue(queue: string, options: { ifUnused?: boolean; ifEmpty?: boolean } = {}): Promise<number> {
    const ch = await this.adminChannel();
    const n = await ch.queueDelete({ queue: this.topology.queueName(queue), ...options });
    this.topology.forgetQueue(queue);
    return n;
  }

  /**
   * Deletes an exchange and forgets it (and bindings from or to it). Waits and rejects as
   * declare() does (406 PRECONDITION_FAILED when `ifUnused` and it has bindings).
   */
  async deleteExchange(exchange: string, options: { ifUnused?: boolean } = {}): Promise<void> {
    const ch = await this.adminChannel();
    await ch.exchangeDelete({ exchange, ...options });
    this.topology.forgetExchange(exchange);
  }

  /** Removes a binding (give it as it was declared) and forgets it. Waits and rejects as declare() does. */
  async unbind(binding: BindingSpec): Promise<void> {
    const ch = await this.adminChannel();
    const args = binding.arguments ? { arguments: binding.arguments } : {};
    if (binding.queue !== undefined) {
      await ch.queueUnbind({
        queue: this.topology.queueName(binding.queue),
        exchange: binding.exchange,
        routingKey: binding.routingKey ?? "",
        ...args,
      });
    } else if (binding.destination !== undefined) {
      await ch.exchangeUnbind({
        destination: binding.destination,
        source: binding.exchange,
        routingKey: binding.routingKey ?? "",
        ...args,
      });
    }
    this.topology.forgetBinding(binding);
  }

  /** The broker's current name for a queue (server-named queues are renamed by recoveries). */
  queueName(queue: string): string {
    return this.topology.queueName(queue);
  }

  // ─── consuming ──────────────────────────────────────────────────────────

  /**
   * Starts a supervised consumer on its own channel. It subscribes when the client is
   * open, resubscribes after a server cancel (re-declaring the queue if the client
   * declared it) and after every recovery. `handler` resolving acks the delivery; throwing,
   * rejecting or timing out applies `onFailure` (docs/consumers.md). `await consumer.ready()` to
   * know it consumes. Throws ConfigError for a bad option, ClientClosedError once the client is
   * closing, or the error that failed the client.
   */
  consume(options: ConsumerOptions, handler: MessageHandler): Consumer {
    this.checkUsable();
    const c = new Consumer(
      {
        openChannel: () => this.openRawChannel(),
        // Declared through the client: bring it (and its bindings) back if it was deleted under us.
        prepareQueue: (ch, key, lost) =>
          this.topology.restoreQueue(ch, key, lost, (queue, from, to) =>
            this.emit("queueRenamed", { queue, from, to }),
          ),
        // The retry topology: recorded, so recoveries declare it again.
        declare: (ch, spec) => this.topology.declare(ch, spec),
        consumerRandom: Math.random,
        brokerVersion: () => this.connection?.server?.properties["version"],
        report: (error) => this.report(error),
        ...(this.metrics ? { consumeStats: this.metrics.queue.bind(this.metrics) } : {}),
        tracing: this.tracing,
      },
      // close() waits at most closeTimeout for running handlers, unless the consumer says otherwise.
      options.drainTimeout === undefined && this.opts.closeTimeout !== undefined
        ? { ...options, drainTimeout: this.opts.closeTimeout }
        : options,
      handler,
      this.isOpen && this.childrenUp,
    );
    this.consumerSet.add(c);
    this.metrics?.watchConsumer(c);
    c.on("state", ({ to }) => {
      if (to === "cancelled") this.consumerSet.delete(c);
    });
    return c;
  }

  /**
   * Consumes as an async iterator: `for await (const msg of client.messages({ queue }))`, each
   * message settled explicitly with `msg.ack()`, `msg.nack({ requeue })` or `msg.reject()`.
   * Buffering is bounded by the prefetch; breaking out of the loop cancels the consumer.
   * Throws as consume() does.
   */
  messages(options: MessagesOptions): MessageStream {
    return new MessageStream(() => this.consume({ ...options, manual: true }, () => undefined));
  }

  // ─── publishing ─────────────────────────────────────────────────────────

  /**
   * A publisher with its own supervised confirm channel: bounded in-flight window,
   * re-publish after recovery, optional durable outbox. See Publisher and docs/publishing.md.
   * Throws ConfigError for a bad option, OutboxError when the outbox file cannot serve (not a
   * database, corrupt, read-only, cannot be opened), ClientClosedError once the client is closing,
   * or the error that failed the client.
   */
  publisher(options: PublisherOptions = {}): Publisher {
    this.checkUsable();
    const confirm = options.confirm ?? true;
    const client = this;
    // The channel is made once the publisher exists: an option or outbox it refuses leaves none behind.
    const pub = new Publisher(
      {
        channel: (timeout) => managed.get(timeout),
        current: () => (managed.channel?.isOpen ? managed.channel : undefined),
        renew: (ch) => {
          if (managed.renew(ch)) this.emit("channelRenewed", { reason: "nacks" });
        },
        get blocked() {
          return client.stateName === "blocked";
        },
        onStateChange: (fn) => this.on("state", ({ to }) => fn(to)),
        get closed() {
          return (
            client.stateName === "closing" || client.stateName === "closed" || client.stateName === "failed"
          );
        },
        tracing: this.tracing,
        observer: this.metrics,
        report: (error) => this.report(error),
      },
      options,
    );
    const managed = this.managedChannel(async (ch) => {
      if (confirm) await ch.confirmSelect();
    });
    this.publisherList.push(pub);
    this.metrics?.watchPublisher(pub);
    return pub;
  }

  /**
   * Publishes through the client's default publisher (confirms, re-publish after recovery, no
   * outbox) and resolves once the broker confirmed it. Rejects as `Publisher.publish()` does:
   * PublishNackedError (after the nack retries), UnroutableError (`mandatory`, and no queue bound),
   * TimeoutError (not sent within 60 s: reconnecting or blocked), ChannelClosedByBroker (a refused
   * publish, e.g. 404 no such exchange), ClientClosedError.
   */
  publish(
    exchange: string,
    routingKey: string,
    body: Body,
    properties?: PublishProperties,
    options?: PublishOptions,
  ): Promise<void> {
    try {
      this.checkUsable();
      this.defaultPublisher ??= this.publisher();
      return this.defaultPublisher.publish({
        exchange,
        routingKey,
        body,
        ...(properties ? { properties } : {}),
        ...(options?.mandatory ? { mandatory: true } : {}),
      });
    } catch (e) {
      return Promise.reject(e);
    }
  }

  // ─── request/reply ──────────────────────────────────────────────────────

  /**
   * An RPC client over direct reply-to, on a supervised channel of its own (its reply consumer is
   * set up again on every new channel). See RpcClient and docs/rpc.md. Throws ConfigError for a bad
   * option, ClientClosedError once the client is closing, or the error that failed the client.
   */
  rpcClient(options: RpcClientOptions = {}): RpcClient {
    this.checkUsable();
    const client = this;
    let managed: ManagedChannel | undefined;
    const rpc = new RpcClient(
      {
        get closed() {
          return (
            client.stateName === "closing" || client.stateName === "closed" || client.stateName === "failed"
          );
        },
        closeChannel: () => {
          if (managed && managed.actor.getSnapshot().status !== "done") managed.actor.send({ type: "CLOSE" });
        },
        tracing: this.tracing,
        stats: this.metrics?.rpcClientStats(),
      },
      options,
    );
    managed = this.managedChannel((ch) => rpc.attach(ch));
    this.rpcClientList.push(rpc);
    return rpc;
  }

  /**
   * Serves requests from `options.queue` with a supervised consumer: `handler`'s result is sent to
   * the request's replyTo with its correlationId, a thrown error as an error reply. See RpcServer
   * and docs/rpc.md. Throws as rpcClient() does.
   */
  rpcServer(options: RpcServerOptions, handler: RpcHandler): RpcServer {
    this.checkUsable();
    const replies = this.managedChannel(async () => undefined);
    const server = new RpcServer(
      {
        consume: (o, h) => this.consume(o, h),
        declare: (spec) => this.declare(spec),
        current: () => (replies.channel?.isOpen ? replies.channel : undefined),
        replyChannel: (timeout) => replies.get(timeout),
        closeChannel: () => {
          if (replies.actor.getSnapshot().status !== "done") replies.actor.send({ type: "CLOSE" });
        },
        tracing: this.tracing,
        stats: this.metrics?.rpcServerStats(options.queue),
      },
      options,
      handler,
    );
    this.rpcServerList.push(server);
    return server;
  }

  // ─── closing ────────────────────────────────────────────────────────────

  /**
   * Graceful close: cancels consumers and waits (bounded) for their running handlers,
   * waits (bounded) for outstanding confirms, closes channels, then the connection; each wait is
   * bounded by `closeTimeout`. What is still unsettled then rejects with ClientClosedError; stored
   * outbox rows stay for the next run. Never rejects. Idempotent.
   */
  async close(): Promise<void> {
    if (this.stateName === "closed") return;
    const done = new Promise<void>((resolve) => {
      if (this.actor.getSnapshot().status === "done") resolve();
      const sub = this.actor.subscribe((s) => {
        if (s.status === "done") {
          sub.unsubscribe();
          resolve();
        }
      });
    });
    this.actor.send({ type: "CLOSE" });
    await done;
  }

  /** Closes the client (close()) at the end of an `await using` block. */
  [asyncDispose](): Promise<void> {
    return this.close();
  }

  private async shutdown(): Promise<void> {
    const timeout = this.opts.closeTimeout ?? 10_000;
    await Promise.all([...this.consumerSet].map((c) => c.cancel()));
    await Promise.all(this.publisherList.map((p) => p.close(timeout)));
    await Promise.all(this.rpcClientList.map((r) => r.close(timeout)));
    // (Some were closed already by their owner: an RpcClient or RpcServer closed on its own.)
    for (const m of this.managed)
      if (m.actor.getSnapshot().status !== "done") m.actor.send({ type: "CLOSE" });
    await Promise.all(
      this.managed.map(
        (m) =>
          new Promise<void>((resolve) => {
            if (m.actor.getSnapshot().status === "done") resolve();
            const sub = m.actor.subscribe((s) => {
              if (s.status === "done") {
                sub.unsubscribe();
                resolve();
              }
            });
          }),
      ),
    );
    const conn = this.connection;
    this.connection = undefined;
    if (conn) await conn.close({ timeout });
  }

  /** Where the client connects (URLs without passwords). */
  get addresses(): string[] {
    return this.hosts.redacted();
  }

  /** True once the client has been open at least once. */
  get hasBeenOpen(): boolean {
    return this.everOpen;
  }

  /** The consumers made through this client (RPC servers' too), until they are cancelled: a copy. */
  get consumers(): readonly Consumer[] {
    return [...this.consumerSet];
  }

  /** The publishers made by publisher() (and publish()'s default one), closed ones too: a copy. */
  get publishers(): readonly Publisher[] {
    return [...this.publisherList];
  }

  /** The RPC clients made by rpcClient(), closed ones too: a copy. */
  get rpcClients(): readonly RpcClient[] {
    return [...this.rpcClientList];
  }

  /** The RPC servers made by rpcServer(), cancelled ones too: a copy. */
  get rpcServers(): readonly RpcServer[] {
    return [...this.rpcServerList];
  }

  /**
   * The restart intensity now (`restartIntensity`): recoveries of an open connection within its
   * window, and how many more it allows before the client is `degraded`.
   */
  get restartBudget(): { restarts: number; maxRestarts: number; withinMs: number; left: number } {
    const { restarts, intensity, now } = this.actor.getSnapshot().context;
    const t = now();
    const recent = restarts.filter((r) => t - r < intensity.withinMs).length;
    const { maxRestarts, withinMs } = intensity;
    return { restarts: recent, maxRestarts, withinMs, left: Math.max(0, maxRestarts - recent) };
  }
}

/**
 * Creates a supervised client and starts connecting (a URL string, or options); `await
 * client.ready()` for the first open. A broker that is down is retried, never thrown; a bad URL or
 * option fails the client (`ready()` rejects with ConfigError); an empty `urls` throws ConfigError.
 */
export function connect(options: ClientOptions | string = {}): Client {
  return new Client(typeof options === "string" ? { url: options } : options);
}

export type { ClientEvents, ClientOptions, DegradedChange, StateChange } from "./client-options.js";
