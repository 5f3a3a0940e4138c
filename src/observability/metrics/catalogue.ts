/**
 * The catalogue: every metric warren exports, its name, help, labels and buckets, created once per
 * registry and shared by the clients that use it. The contract is dashboards/metrics.md (a test
 * compares the two).
 */
import type { Counter, Gauge, Registry } from "prom-client";
import { type EventLoopLease, watchEventLoop } from "../../amqp/event-loop.js";
import { type SeriesHistogram, seriesHistogram } from "./primitives.js";
import { promClient } from "./prom.js";

/** What a registry asks of each client's metrics when it is collected (scraped). */
export interface CollectedClient {
  /** Its `connection` label. */
  readonly name: string;
  flushCounts(): void;
  collectBlocked(): void;
  collectDegraded(): void;
  collectBytes(): void;
  collectPublishers(): void;
  collectConsumers(): void;
}

const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
const RECOVERY_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];

/** The metric objects of one registry, shared by every client that uses it. */
export class RegistryMetrics {
  readonly clients = new Set<CollectedClient>();
  /** The event-loop monitor, held while a client uses this registry. */
  private loop: EventLoopLease | undefined;
  /** When the lag was last collected (the monitor's clock). */
  private lagCollectedAt = 0;

  readonly connectionState: Gauge<"connection" | "role" | "state">;
  readonly connectionUp: Gauge<"connection" | "role">;
  readonly reconnects: Counter<"connection" | "role">;
  readonly recoveryDuration: SeriesHistogram<"connection" | "role">;
  readonly channelRestarts: Counter<"connection" | "role">;
  readonly channelRenewals: Counter<"connection" | "role">;
  readonly escalations: Counter<"connection" | "role" | "level">;
  readonly hostCooldowns: Counter<"connection" | "role">;
  readonly blocked: Gauge<"connection" | "role">;
  readonly blockedSeconds: Counter<"connection" | "role">;
  readonly degraded: Gauge<"connection" | "role">;
  readonly degradedSeconds: Counter<"connection" | "role">;
  readonly heartbeatMisses: Counter<"connection" | "role">;
  readonly credentialRefreshes: Counter<"connection" | "outcome">;
  readonly eventLoopLag: Gauge<"connection">;
  readonly bytesReceived: Counter<"connection" | "role">;
  readonly bytesSent: Counter<"connection" | "role">;
  readonly writeBuffer: Gauge<"connection" | "role">;
  readonly methodCalls: Counter<"connection" | "role" | "method">;
  readonly methodTimeouts: Counter<"connection" | "role" | "method">;
  readonly methodDuration: SeriesHistogram<"connection" | "role" | "method">;

  readonly published: Counter<"connection" | "exchange">;
  readonly confirmed: Counter<"connection" | "exchange">;
  readonly nacked: Counter<"connection" | "exchange">;
  readonly nackRetries: Counter<"connection" | "exchange">;
  readonly returned: Counter<"connection" | "exchange">;
  readonly republished: Counter<"connection" | "exchange">;
  readonly publishFailed: Counter<"connection" | "exchange" | "reason">;
  readonly confirmDuration: SeriesHistogram<"connection" | "exchange">;
  readonly publishInFlight: Gauge<"connection">;
  readonly outboxDepth: Gauge<"connection">;
  readonly outboxDeadLetters: Gauge<"connection">;

  readonly delivered: Counter<"connection" | "queue">;
  readonly acked: Counter<"connection" | "queue">;
  readonly consumerNacked: Counter<"connection" | "queue">;
  readonly rejected: Counter<"connection" | "queue">;
  readonly retried: Counter<"connection" | "queue">;
  readonly handlerDuration: SeriesHistogram<"connection" | "queue">;
  readonly handlersInFlight: Gauge<"connection" | "queue">;
  readonly consumerRestarts: Counter<"connection" | "queue">;
  readonly consumerSubscribeErrors: Counter<"connection" | "queue" | "code">;

  readonly rpcClientCalls: Counter<"connection" | "outcome">;
  readonly rpcClientDuration: SeriesHistogram<"connection">;
  readonly rpcClientDropped: Counter<"connection">;
  readonly rpcClientRetries: Counter<"connection">;
  readonly rpcServerRequests: Counter<"connection" | "queue" | "outcome">;
  readonly rpcServerDuration: SeriesHistogram<"connection" | "queue">;

  constructor(registry: Registry) {
    const { Counter, Gauge } = promClient();
    const registers = [registry];
    // Another copy of warren (or of this module) may have registered a name already: reuse it.
    const counter = <L extends string>(name: string, help: string, labelNames: L[], collect?: () => void) =>
      (registry.getSingleMetric(name) as Counter<L> | undefined) ??
      new Counter<L>({ name, help, labelNames, registers, ...(collect ? { collect } : {}) });
    const gauge = <L extends string>(name: string, help: string, labelNames: L[], collect?: () => void) =>
      (registry.getSingleMetric(name) as Gauge<L> | undefined) ??
      new Gauge<L>({ name, help, labelNames, registers, ...(collect ? { collect } : {}) });
    const histogram = <L extends string>(name: string, help: string, labelNames: L[], buckets: number[]) => {
      const existing = registry.getSingleMetric(name) as SeriesHistogram<L> | undefined;
      if (existing !== undefined && typeof existing.series === "function") return existing;
      return seriesHistogram<L>({ name, help, labelNames, buckets }, registry);
    };
    const flush = () => this.flushCounts();
    const C = "connection" as const;
    // A client's connections (consume, publish, or shared) are told apart by `role`.
    const R = "role" as const;

    this.connectionState = gauge(
      "warren_connection_state",
      "1 for the connection's current state, 0 for the others",
      [C, R, "state"],
    );
    this.connectionUp = gauge("warren_connection_up", "1 while the connection is running or blocked", [C, R]);
    this.reconnects = counter("warren_reconnects_total", "Connections re-established after a loss", [C, R]);
    this.recoveryDuration = histogram(
      "warren_recovery_duration_seconds",
      "Time from a lost connection to running again",
      [C, R],
      RECOVERY_BUCKETS,
    );
    this.channelRestarts = counter(
      "warren_channel_restarts_total",
      "Supervised channels reopened after a channel error",
      [C, R],
    );
    this.channelRenewals = counter(
      "warren_channel_renewals_total",
      "Publisher channels renewed after a nack streak",
      [C, R],
    );
    this.escalations = counter(
      "warren_supervisor_escalations_total",
      "Supervisor escalations: channel (a channel gave up, the connection restarts) or connection (the connection's restart intensity was exceeded: the backoff escalates)",
      [C, R, "level"],
    );
    this.hostCooldowns = counter(
      "warren_host_cooldowns_total",
      "Hosts set to rest after their connection died or they refused (the next attempt goes elsewhere)",
      [C, R],
    );
    this.blocked = gauge("warren_blocked", "1 while the broker blocks the connection", [C, R]);
    this.blockedSeconds = counter(
      "warren_blocked_seconds_total",
      "Time spent blocked by the broker",
      [C, R],
      () => this.collectBlocked(),
    );
    this.degraded = gauge(
      "warren_connection_degraded",
      "1 while the connection is degraded: restarts exceeded the restart intensity and it has not stayed up since",
      [C, R],
    );
    this.degradedSeconds = counter(
      "warren_connection_degraded_seconds_total",
      "Time spent degraded (escalated reconnect backoff)",
      [C, R],
      () => this.collectDegraded(),
    );
    this.heartbeatMisses = counter(
      "warren_heartbeat_misses_total",
      "Connections declared dead by missed heartbeats",
      [C, R],
    );
    this.credentialRefreshes = counter(
      "warren_credential_refreshes_total",
      "Credentials from connect({ credentials }): refreshes on open connections and failures to get them, by outcome: ok, provider_error, malformed, timeout, refused",
      [C, "outcome"],
    );
    this.eventLoopLag = gauge(
      "warren_event_loop_lag_seconds",
      "The event loop's largest delay since the previous scrape (the process's, the same for each connection)",
      [C],
      () => this.collectLoopLag(),
    );
    this.bytesReceived = counter("warren_bytes_received_total", "Bytes read from the socket", [C, R], () =>
      this.collectBytes(),
    );
    this.bytesSent = counter("warren_bytes_sent_total", "Bytes written to the socket", [C, R], () =>
      this.collectBytes(),
    );
    this.writeBuffer = gauge(
      "warren_write_buffer_bytes",
      "Bytes buffered in the process for the socket, not yet taken by the kernel (publishing waits above writeHighWaterMark)",
      [C, R],
      () => this.collectBytes(),
    );
    this.methodCalls = counter("warren_method_calls_total", "Synchronous AMQP methods sent", [
      C,
      R,
      "method",
    ]);
    this.methodTimeouts = counter(
      "warren_method_timeouts_total",
      "Synchronous AMQP methods that got no reply in time",
      [C, R, "method"],
    );
    this.methodDuration = histogram(
      "warren_method_duration_seconds",
      "Synchronous AMQP method sent to reply",
      [C, R, "method"],
      LATENCY_BUCKETS,
    );

    const X = "exchange" as const;
    this.published = counter("warren_published_total", "Messages accepted by publish()", [C, X], flush);
    this.confirmed = counter(
      "warren_confirmed_total",
      "Messages confirmed by the broker (basic.ack)",
      [C, X],
      flush,
    );
    this.nacked = counter(
      "warren_nacked_total",
      "basic.nack received (each nack, retried or not)",
      [C, X],
      flush,
    );
    this.nackRetries = counter("warren_nack_retries_total", "Nacked messages sent again", [C, X], flush);
    this.returned = counter(
      "warren_returned_total",
      "Messages returned as unroutable (mandatory)",
      [C, X],
      flush,
    );
    this.republished = counter(
      "warren_republished_total",
      "Messages sent again after a channel or connection died",
      [C, X],
      flush,
    );
    this.publishFailed = counter(
      "warren_publish_failed_total",
      "Publish promises rejected, by reason: nacked, unroutable, timeout, closed, refused",
      [C, X, "reason"],
      flush,
    );
    this.confirmDuration = histogram(
      "warren_publish_confirm_duration_seconds",
      "Time from publish() accepting a message to its confirm",
      [C, X],
      LATENCY_BUCKETS,
    );
    this.publishInFlight = gauge(
      "warren_publish_in_flight",
      "Messages accepted and not yet confirmed (all publishers)",
      [C],
      () => this.collectPublishers(),
    );
    this.outboxDepth = gauge("warren_outbox_depth", "Rows stored in outboxes, not yet confirmed", [C], () =>
      this.collectPublishers(),
    );
    this.outboxDeadLetters = gauge(
      "warren_outbox_dead_letters",
      "Rows in outboxes' dead-letter tables",
      [C],
      () => this.collectPublishers(),
    );

    const Q = "queue" as const;
    this.delivered = counter("warren_delivered_total", "Deliveries received", [C, Q], flush);
    this.acked = counter("warren_acked_total", "Deliveries acked", [C, Q], flush);
    this.consumerNacked = counter(
      "warren_consumer_nacked_total",
      "Deliveries nacked with requeue",
      [C, Q],
      flush,
    );
    this.rejected = counter(
      "warren_rejected_total",
      "Deliveries dead-lettered: rejected (to the queue's dead-letter exchange, or dropped), or moved to warren's dead-letter queue",
      [C, Q],
      flush,
    );
    this.retried = counter("warren_retried_total", "Deliveries sent to a retry (delay) queue", [C, Q], flush);
    this.handlerDuration = histogram(
      "warren_handler_duration_seconds",
      "Handler start to settled",
      [C, Q],
      LATENCY_BUCKETS,
    );
    this.handlersInFlight = gauge("warren_handlers_in_flight", "Handlers running", [C, Q], () =>
      this.collectConsumers(),
    );
    this.consumerRestarts = counter(
      "warren_consumer_restarts_total",
      "Consumers resubscribed (server cancel, channel error, reconnection)",
      [C, Q],
    );
    this.consumerSubscribeErrors = counter(
      "warren_consumer_subscribe_errors_total",
      "Failed subscription attempts of consumers, by error code (QUEUE_NOT_FOUND: the queue does not exist)",
      [C, Q, "code"],
    );

    // Request/reply (rpcClient/rpcServer), not the synchronous AMQP methods of warren_method_calls_total.
    this.rpcClientCalls = counter(
      "warren_rpc_client_calls_total",
      "RPC calls settled, by outcome: ok, remote_error, timeout, unroutable, connection_lost, closed, refused",
      [C, "outcome"],
      flush,
    );
    this.rpcClientDuration = histogram(
      "warren_rpc_client_duration_seconds",
      "RPC call() to its reply (ok and remote_error)",
      [C],
      LATENCY_BUCKETS,
    );
    this.rpcClientDropped = counter(
      "warren_rpc_client_replies_dropped_total",
      "RPC replies matching no outstanding call (late, after a timeout), dropped",
      [C],
      flush,
    );
    this.rpcClientRetries = counter(
      "warren_rpc_client_retries_total",
      "RPC requests sent again after their channel or connection died (retry)",
      [C],
      flush,
    );
    this.rpcServerRequests = counter(
      "warren_rpc_server_requests_total",
      "RPC requests served, by outcome: ok, error (error reply), no_reply_to (dropped), reply_failed (nacked)",
      [C, Q, "outcome"],
      flush,
    );
    this.rpcServerDuration = histogram(
      "warren_rpc_server_duration_seconds",
      "RPC request delivered to its reply sent",
      [C, Q],
      LATENCY_BUCKETS,
    );
  }

  /** A client starts using this registry: the event-loop monitor runs while one does. */
  attach(client: CollectedClient): void {
    this.clients.add(client);
    if (this.loop === undefined) {
      this.loop = watchEventLoop({ distribution: true });
      this.lagCollectedAt = this.loop.monitor.now();
    }
  }

  /** A client closed: its lag series drops to 0 (nothing would update it), the monitor stops with the last. */
  detach(client: CollectedClient): void {
    if (!this.clients.delete(client)) return;
    this.eventLoopLag.labels(client.name).set(0);
    if (this.clients.size === 0) {
      this.loop?.release();
      this.loop = undefined;
    }
  }

  // Several metrics share one read: each collect runs once per scrape, cheap either way.
  private collectLoopLag(): void {
    const monitor = this.loop?.monitor;
    if (monitor === undefined) return;
    const now = monitor.now();
    const seconds = monitor.peakSince(this.lagCollectedAt) / 1000;
    this.lagCollectedAt = now;
    for (const c of this.clients) this.eventLoopLag.labels(c.name).set(seconds);
  }
  private flushCounts(): void {
    for (const c of this.clients) c.flushCounts();
  }
  private collectDegraded(): void {
    for (const c of this.clients) c.collectDegraded();
  }

  private collectBlocked(): void {
    for (const c of this.clients) c.collectBlocked();
  }
  private collectBytes(): void {
    for (const c of this.clients) c.collectBytes();
  }
  private collectPublishers(): void {
    for (const c of this.clients) c.collectPublishers();
  }
  private collectConsumers(): void {
    for (const c of this.clients) c.collectConsumers();
  }
}

const registries = new WeakMap<Registry, RegistryMetrics>();

export function metricsFor(registry: Registry): RegistryMetrics {
  let m = registries.get(registry);
  if (m === undefined) {
    m = new RegistryMetrics(registry);
    registries.set(registry, m);
  }
  return m;
}
