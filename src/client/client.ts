/**
 * The supervised client: what a long-running service hands its broker to.
 *
 *   const client = connect({ urls: ["amqp://a", "amqp://b"], connectionName: "orders" });
 *   await client.ready();
 *   client.on("state", ({ role, from, to, error }) => …);
 *   await client.declare({ exchanges, queues, bindings });
 *   const consumer = client.consume({ queue: "q", prefetch: 50 }, async (msg) => …);
 *   await client.close();
 *
 * Consumers and publishers use separate connections by default (slot-state.ts says why), each
 * opened on first use and supervised on its own (connection-slot.ts): it connects (rotating
 * through the hosts), restores the recorded topology, resumes consumers and reopens channels after
 * every fault, with jittered exponential backoff. A transient fault is survived for ever: restarts
 * faster than the restart intensity make a connection `degraded` (a longer backoff), never dead. A
 * permanent error (credentials, vhost, TLS trust; see faults.ts) ends in `failed` at once, as does
 * the caller's own `giveUpAfter` limit, and fails the whole client.
 */
import type { IntensityOptions } from "../../machines/backoff.js";
import { DEFAULT_INTENSITY } from "../../machines/backoff.js";
import type { Channel } from "../amqp/channel.js";
import type { Body, PublishOptions } from "../amqp/channel-types.js";
import type { Connection } from "../amqp/connection.js";
import { TypedEmitter } from "../amqp/events.js";
import { ClientClosedError, type HostAttempts, ReadyTimeoutError } from "../errors.js";
import { ClientMetrics } from "../observability/metrics/client-metrics.js";
import type { ClientState } from "../observability/observers.js";
import { Tracing } from "../observability/tracing.js";
import type { ClientEvents, ClientOptions, StateChange } from "./client-options.js";
import { ConnectionSlot, type SlotHost } from "./connection-slot.js";
import { Consumer } from "./consumer.js";
import type { ConsumerOptions, MessageHandler, MessagesOptions } from "./consumer-types.js";
import { type CredentialKeeper, credentialKeeper } from "./credential-refresh.js";
import { asyncDispose } from "./dispose.js";
import { Hosts } from "./hosts.js";
import type { ManagedChannel } from "./managed-channel.js";
import { MessageStream } from "./messages.js";
import { Publisher, type PublisherOptions, type PublishProperties } from "./publisher.js";
import { RpcClient, type RpcClientOptions } from "./rpc-client.js";
import { type RpcHandler, RpcServer, type RpcServerOptions } from "./rpc-server.js";
import {
  aggregateState,
  type ConnectionRole,
  type ConnectionsMode,
  roleFor,
  slotName,
  type WorkKind,
} from "./slot-state.js";
import { type BindingSpec, type DeclareResult, Topology, type TopologySpec } from "./topology.js";
import { Waiters } from "./waiters.js";

/** The same reported fault is emitted as `error` at most once in this many ms. */
const REPORT_INTERVAL = 5_000;

/** One of a client's connections, as `client.connections` shows it. */
export interface ClientConnection {
  /** What it carries: consume, publish, or shared (`connections: "single"`). */
  readonly role: ConnectionRole;
  /** The connection_name it gives the broker (undefined: none). */
  readonly name: string | undefined;
  /** Its supervisor's state. */
  readonly state: ClientState;
  /** Its restart intensity is exceeded (escalated backoff). */
  readonly degraded: boolean;
  /** host:port it uses or tries now ("" before its first attempt). */
  readonly host: string;
  /** The live low-level connection, when there is one. */
  readonly connection: Connection | undefined;
}

/**
 * The supervised client (`connect()`): its connections kept up for as long as the client lives,
 * through every transient fault, with the topology, channels, publishers and consumers made
 * through it restored after each recovery. See the module comment and docs/client.md.
 */
export class Client extends TypedEmitter<ClientEvents> implements AsyncDisposable {
  /**
   * The exchanges, queues and bindings declared through this client, declared again after every
   * recovery. Read it (`topology.snapshot()`); change it through declare(), deleteQueue(),
   * deleteExchange() and unbind().
   */
  readonly topology = new Topology();
  private readonly hosts: Hosts;
  private readonly opts: ClientOptions;
  private readonly mode: ConnectionsMode;
  /** The connections opened so far, by role, in the order they were opened. */
  private readonly slots = new Map<ConnectionRole, ConnectionSlot>();
  private readonly slotHost: SlotHost;
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
  private everOpen = false;
  /** The error that failed a connection, and so the client. */
  private failedWith: Error | undefined;
  private closeRequested = false;
  /** close()'s promise, once called. */
  private closed: Promise<void> | undefined;
  /** Draining consumers and settling publishers, once for all the connections that close. */
  private closingWork: Promise<void> | undefined;
  private readonly readyWaiters = new Waiters();
  /** When each reported fault (code and message) was last emitted as `error`. */
  private readonly reportedAt = new Map<string, number>();
  /** The login of `credentials`, asked for before each attempt and kept fresh (undefined: the URL's). */
  private readonly credentials: CredentialKeeper | undefined;

  /**
   * Creates the client: the same as `connect(options)`. Its connections open on first use (a
   * consumer, a publisher, declare() or ready()); with none made in this turn of the event
   * loop, the consume connection opens.
   */
  constructor(options: ClientOptions = {}) {
    super();
    const urls = options.urls ?? [
      options.url ?? process.env["AMQP_URL"] ?? "amqp://guest:guest@127.0.0.1:5672/",
    ];
    this.hosts = new Hosts(urls, options.shuffleHosts === true);
    this.opts = options;
    this.mode = options.connections ?? "separate";
    this.channelIntensity = { ...DEFAULT_INTENSITY, ...options.channelRestartIntensity };
    this.metrics = options.metrics ? new ClientMetrics(options.metrics, options.connectionName) : undefined;
    this.tracing = Tracing.from(options.tracing, () => this.connection?.options);
    this.credentials = credentialKeeper(options, {
      metrics: this.metrics,
      emit: (event, change) => this.emit(event, change),
      report: (error) => this.report(error),
    });
    this.slotHost = {
      hosts: this.hosts,
      options,
      credentials: this.credentials,
      channelIntensity: this.channelIntensity,
      restoreTopology: (conn, role) => this.restoreTopology(conn, role),
      beforeClose: () => this.beforeClose(),
      changed: (slot, change) => this.onSlotChange(slot, change),
      degradedChanged: (_slot, change) => this.emit("degraded", change),
      report: (error) => this.report(error),
    };
    // connect() starts connecting at once, as a client with one connection did: what the caller
    // made in this turn of the event loop opened its connection(s) already; else the consume one
    // opens (the one ready() and declare() use), so failures are reported and states seen.
    setImmediate(() => {
      if (this.slots.size === 0 && !this.closeRequested) this.slot("consume");
    });
  }

  /**
   * The client's state: the worst of its connections' (idle, connecting, handshaking, restoring,
   * running, blocked, recovering, degraded, closing, closed, failed; slot-state.ts has the order):
   * `running` once every connection it opened runs, `blocked` while one is blocked (the publishing
   * one, during a broker alarm) and none is worse, `failed` once one failed. `idle` before its first
   * connection. Each connection's own state is in `connections`, and each transition is a `state`
   * event with its `role`.
   */
  get state(): ClientState {
    return this.stateName;
  }

  /** True while one of its connections is degraded (see `connections`). */
  get degraded(): boolean {
    for (const s of this.slots.values()) if (s.degraded) return true;
    return false;
  }

  /**
   * The live low-level connection, when there is one (an escape hatch: prefer the client's API):
   * the consume connection's (or the shared one's), else the publish connection's. Each one is in
   * `connections`.
   */
  get connection(): Connection | undefined {
    const slot = this.slots.get("consume") ?? this.slots.get("shared") ?? this.slots.get("publish");
    return slot?.connection;
  }

  /** The client's connections opened so far, with their role, name, state and host. */
  get connections(): readonly ClientConnection[] {
    return [...this.slots.values()].map((s) => ({
      role: s.role,
      name: s.name,
      state: s.state,
      degraded: s.degraded,
      host: s.hostNow,
      connection: s.connection,
    }));
  }

  /**
   * Resolves when the client is open, every connection it opened restored (state running or
   * blocked); with no connection yet, it opens the consume one (the one that declares the
   * topology). Rejects once it failed, with the permanent error that failed it (AuthenticationError,
   * VhostNotAllowedError, TlsError, HandshakeError, RestartIntensityError…), or with
   * ClientClosedError once it was closed. With `timeoutMs`, rejects after that long with a
   * ReadyTimeoutError naming each host tried and its last error; the client goes on recovering
   * (close() it to stop). Without it, waits for as long as it takes.
   */
  ready(options: { timeoutMs?: number } = {}): Promise<void> {
    if (this.stateName === "failed" || this.stateName === "closed" || this.closeRequested)
      return Promise.reject(this.failure());
    if (this.slots.size === 0) this.slot("consume");
    if (this.stateName === "running" || this.stateName === "blocked") return Promise.resolve();
    const timeoutMs = options.timeoutMs;
    return this.readyWaiters.wait(
      timeoutMs,
      () => new ReadyTimeoutError(timeoutMs ?? 0, this.hostAttempts()),
    );
  }

  /** Each host tried so far, by any of its connections: attempts and last error (no credentials). */
  hostAttempts(): HostAttempts[] {
    return this.hosts.attempts();
  }

  private failure(): Error {
    return (
      this.failedWith ??
      new ClientClosedError(this.stateName === "failed" ? "the client failed" : "the client was closed")
    );
  }

  // ─── supervision plumbing ───────────────────────────────────────────────

  /** The connection that carries `kind` of work, opened on first use. */
  private slot(kind: WorkKind): ConnectionSlot {
    const role = roleFor(kind, this.mode);
    let s = this.slots.get(role);
    if (s === undefined) {
      s = new ConnectionSlot(
        role,
        slotName(this.opts.connectionName, role),
        this.slotHost,
        this.metrics?.connection(role),
      );
      this.slots.set(role, s);
    }
    return s;
  }

  private onSlotChange(slot: ConnectionSlot, change: StateChange): void {
    this.stateName = aggregateState([...this.slots.values()].map((s) => s.state));
    if (this.stateName === "running" || this.stateName === "blocked") {
      this.everOpen = true;
      this.readyWaiters.resolveAll();
    }
    if (change.to === "failed" && this.failedWith === undefined) {
      // A permanent fault (or giveUpAfter) fails the client: its other connections close.
      const err = slot.error ?? new ClientClosedError("the client failed");
      this.failedWith = err;
      this.readyWaiters.rejectAll(err);
      // Nothing will be sent any more: settle what publishers hold, close their outboxes (rows stay stored).
      for (const p of this.publisherList) void p.close(0, err);
      for (const r of this.rpcClientList) void r.close(0, err);
      for (const s of this.slots.values()) if (s !== slot) void s.close();
      if (this.listenerCount("error") > 0) this.emit("error", err);
    }
    if (this.stateName === "closed") {
      this.readyWaiters.rejectAll(this.failure());
      this.metrics?.detach();
    }
    this.emit("state", change);
  }

  /** After a connection (re)connected: the recorded topology, as its role needs it. */
  private async restoreTopology(conn: Connection, role: ConnectionRole): Promise<void> {
    if (this.topology.size === 0) return;
    const ch = await conn.openChannel();
    try {
      // The publish connection declares what publishing needs (exchanges, named queues, bindings)
      // so a publish after a broker restart finds them; exclusive and server-named queues belong
      // to the consume connection, which declares everything (topology.ts).
      if (role === "publish") await this.topology.restoreShared(ch);
      else
        await this.topology.restore(ch, (queue, from, to) => this.emit("queueRenamed", { queue, from, to }));
    } finally {
      if (ch.isOpen) await ch.close();
    }
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

  private get waitTimeout(): number {
    return this.opts.connectWaitTimeout ?? 30_000;
  }

  /** Closing, closed or failed: nothing new is accepted. */
  private get isClosed(): boolean {
    return (
      this.closeRequested ||
      this.stateName === "closing" ||
      this.stateName === "closed" ||
      this.stateName === "failed"
    );
  }

  private checkUsable(): void {
    if (this.stateName === "failed") throw this.failure();
    if (this.isClosed) throw new ClientClosedError("the client is closed");
  }

  // ─── topology ───────────────────────────────────────────────────────────

  /** The client's own channel for declaring and deleting, waiting (bounded) for the connection. */
  private adminChannel(): Promise<Channel> {
    this.checkUsable();
    // The consume connection declares: exclusive queues belong to the connection that declared them.
    this.admin ??= this.slot("consume").managedChannel(async () => undefined);
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
    const slot = this.slot("consume");
    const c = new Consumer(
      {
        openChannel: () => slot.openRawChannel(),
        // Declared through the client: bring it (and its bindings) back if it was deleted under us.
        prepareQueue: (ch, key, lost) =>
          this.topology.restoreQueue(ch, key, lost, (queue, from, to) =>
            this.emit("queueRenamed", { queue, from, to }),
          ),
        // The retry topology: recorded, so recoveries declare it again.
        declare: (ch, spec) => this.topology.declare(ch, spec),
        consumerRandom: Math.random,
        brokerVersion: () => slot.connection?.server?.properties["version"],
        report: (error) => this.report(error),
        ...(this.metrics ? { consumeStats: this.metrics.queue.bind(this.metrics) } : {}),
        tracing: this.tracing,
      },
      // close() waits at most closeTimeout for running handlers, unless the consumer says otherwise.
      options.drainTimeout === undefined && this.opts.closeTimeout !== undefined
        ? { ...options, drainTimeout: this.opts.closeTimeout }
        : options,
      handler,
      slot.ready,
    );
    slot.adopt(c);
    this.metrics?.watchConsumer(c);
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
    const slot = this.slot("publish");
    // The channel is made once the publisher exists: an option or outbox it refuses leaves none behind.
    const pub = new Publisher(
      {
        channel: (timeout) => managed.get(timeout),
        current: () => (managed.channel?.isOpen ? managed.channel : undefined),
        renew: (ch) => {
          if (managed.renew(ch)) this.emit("channelRenewed", { reason: "nacks" });
        },
        // Its own connection's: a blocked consume connection does not hold publishes back.
        get blocked() {
          return slot.state === "blocked";
        },
        onStateChange: (fn) =>
          this.on("state", ({ to, role }) => {
            if (role === slot.role) fn(to);
          }),
        get closed() {
          return client.isClosed;
        },
        tracing: this.tracing,
        observer: this.metrics,
        report: (error) => this.report(error),
      },
      options,
    );
    const managed = slot.managedChannel(async (ch) => {
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
          return client.isClosed;
        },
        closeChannel: () => {
          if (managed && managed.actor.getSnapshot().status !== "done") managed.actor.send({ type: "CLOSE" });
        },
        tracing: this.tracing,
        stats: this.metrics?.rpcClientStats(),
      },
      options,
    );
    managed = this.slot("publish").managedChannel((ch) => rpc.attach(ch));
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
    // Replies are publishes: on the consume connection they would get it blocked during an alarm.
    const replies = this.slot("publish").managedChannel(async () => undefined);
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
   * waits (bounded) for outstanding confirms, closes channels, then the connections; each wait is
   * bounded by `closeTimeout`. What is still unsettled then rejects with ClientClosedError; stored
   * outbox rows stay for the next run. Never rejects. Idempotent.
   */
  close(): Promise<void> {
    if (this.stateName === "closed") return Promise.resolve();
    this.closeRequested = true;
    this.closed ??= this.closeSlots();
    return this.closed;
  }

  private async closeSlots(): Promise<void> {
    if (this.slots.size === 0) {
      this.stateName = "closed";
      this.readyWaiters.rejectAll(this.failure());
      this.metrics?.detach();
      return;
    }
    const slots = [...this.slots.values()];
    // Open connections close now (their shutdown waits for the drain); one still connecting (a
    // publisher made just before close()) stays up until publishers settled, bounded by closeTimeout.
    const open = slots.filter((s) => s.isOpen);
    const closing = open.map((s) => s.close());
    if (this.stateName !== "failed") await this.beforeClose();
    await Promise.all([...closing, ...slots.filter((s) => !open.includes(s)).map((s) => s.close())]);
  }

  /** Closes the client (close()) at the end of an `await using` block. */
  [asyncDispose](): Promise<void> {
    return this.close();
  }

  /** Once, for every connection that closes: consumers drain, then publishers settle, then RPC clients. */
  private beforeClose(): Promise<void> {
    this.closingWork ??= (async () => {
      const timeout = this.opts.closeTimeout ?? 10_000;
      await Promise.all(this.consumers.map((c) => c.cancel()));
      await Promise.all(this.publisherList.map((p) => p.close(timeout)));
      await Promise.all(this.rpcClientList.map((r) => r.close(timeout)));
    })();
    return this.closingWork;
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
    return [...this.slots.values()].flatMap((s) => [...s.consumers]);
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
   * window, and how many more it allows before it is `degraded`; of the connection with the fewest
   * left when there are two.
   */
  get restartBudget(): { restarts: number; maxRestarts: number; withinMs: number; left: number } {
    let worst: { restarts: number; maxRestarts: number; withinMs: number; left: number } | undefined;
    for (const s of this.slots.values()) {
      const b = s.restartBudget;
      if (worst === undefined || b.left < worst.left) worst = b;
    }
    if (worst !== undefined) return worst;
    const { maxRestarts, withinMs } = { ...DEFAULT_INTENSITY, ...this.opts.restartIntensity };
    return { restarts: 0, maxRestarts, withinMs, left: maxRestarts };
  }
}

/**
 * Creates a supervised client (a URL string, or options) and starts connecting: the connections
 * for what is made in this turn of the event loop (a consumer, a publisher), else the consume
 * one; the other opens on first use (docs/connecting.md). `await client.ready()` for the first
 * open. A broker that is down is retried, never thrown; a bad URL or option fails the client
 * (`ready()` rejects with ConfigError); an empty `urls` throws ConfigError.
 */
export function connect(options: ClientOptions | string = {}): Client {
  return new Client(typeof options === "string" ? { url: options } : options);
}

export type { ClientEvents, ClientOptions, DegradedChange, StateChange } from "./client-options.js";
export type { ConnectionRole, ConnectionsMode } from "./slot-state.js";
