/**
 * Prometheus metrics (prom-client), opt-in:
 *
 *   const client = connect({ url, connectionName: "orders", metrics: { registry } });
 *   const client = connect({ url, metrics: true }); // prom-client's default registry
 *
 * The names, types and labels are the contract in dashboards/metrics.md. They are fed from
 * the session events and the machines' inspection stream, never from code inside the
 * machines (machines/ stays pure):
 *
 * - the connection and channel machines' `@xstate.snapshot` inspection events (the client
 *   passes `inspect` to createActor): connection state, reconnects, recovery duration, blocked
 *   time, channel restarts and renewals, supervisor escalations;
 * - the consumers' `state` events: consumer restarts;
 * - `ConnectionObserver` hooks in src/amqp: bytes, heartbeat misses, RPC calls/timeouts/latency;
 * - `PublisherObserver` / `ConsumeStats` hooks on the hot paths: series bound once per exchange
 *   or queue, incremented as plain numbers (prom-client's label children validate and hash the
 *   labels on every call) and added to prom-client's counters when the registry is collected;
 * - gauges of in-flight work and outbox rows are read when the registry is collected (scraped).
 *
 * Several clients may share one registry: the metric objects are created once per registry and
 * each client writes its own `connection` label (its connectionName, or "default").
 */
import { Counter, Gauge, Histogram, type Registry, register } from "prom-client";
import type { AnyActorRef, InspectionEvent } from "xstate";
import type { Connection, ConnectionObserver } from "../amqp/connection.js";
import type { Consumer, ConsumeStats } from "../client/consumer.js";
import type { Publisher, PublisherObserver, PublishStats } from "../client/publisher.js";
import {
  RPC_CALL_OUTCOMES,
  RPC_SERVE_OUTCOMES,
  type RpcCallOutcome,
  type RpcClientStats,
  type RpcServeOutcome,
  type RpcServerStats,
} from "../client/rpc.js";
import {
  ChannelClosedByBroker,
  PublishNackedError,
  TimeoutError,
  UnroutableError,
  WarrenError,
} from "../errors.js";

export interface MetricsOptions {
  /** Where the metrics are registered. Default: prom-client's default registry. */
  registry?: Registry;
  /**
   * Distinct `exchange` values, and distinct `queue` values, one client labels at most
   * (default 100); later ones are counted under `_other`.
   */
  maxLabelValues?: number;
}

/** The label value of names past the cap. */
export const OTHER_LABEL = "_other";
/** The label value of the default exchange (""). */
export const DEFAULT_EXCHANGE_LABEL = "(default)";
/** The client states, as `warren_connection_state{state}` labels them. */
export const CONNECTION_STATES = [
  "idle",
  "connecting",
  "handshaking",
  "restoring",
  "running",
  "blocked",
  "recovering",
  "degraded",
  "closing",
  "closed",
  "failed",
] as const;

/** Why a publish promise rejected, as `warren_publish_failed_total{reason}` labels it. */
export type PublishFailure = "nacked" | "unroutable" | "timeout" | "closed" | "refused";
const PUBLISH_FAILURES: readonly PublishFailure[] = ["nacked", "unroutable", "timeout", "closed", "refused"];

/** The reason label of a publish that failed with `error`. */
export function publishFailureReason(error: Error): PublishFailure {
  if (error instanceof PublishNackedError) return "nacked";
  if (error instanceof UnroutableError) return "unroutable";
  if (error instanceof TimeoutError) return "timeout";
  // The broker closed the channel because of this publish (e.g. 404 no exchange), or the
  // library would not send it (an unencodable header): refused. Everything else is a close.
  if (error instanceof ChannelClosedByBroker || !(error instanceof WarrenError)) return "refused";
  return "closed";
}

const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
const RECOVERY_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];

/** The metric objects of one registry, shared by every client that uses it. */
class RegistryMetrics {
  readonly clients = new Set<ClientMetrics>();

  readonly connectionState: Gauge<"connection" | "state">;
  readonly connectionUp: Gauge<"connection">;
  readonly reconnects: Counter<"connection">;
  readonly recoveryDuration: SeriesHistogram<"connection">;
  readonly channelRestarts: Counter<"connection">;
  readonly channelRenewals: Counter<"connection">;
  readonly escalations: Counter<"connection" | "level">;
  readonly hostCooldowns: Counter<"connection">;
  readonly blocked: Gauge<"connection">;
  readonly blockedSeconds: Counter<"connection">;
  readonly degraded: Gauge<"connection">;
  readonly degradedSeconds: Counter<"connection">;
  readonly heartbeatMisses: Counter<"connection">;
  readonly bytesReceived: Counter<"connection">;
  readonly bytesSent: Counter<"connection">;
  readonly writeBuffer: Gauge<"connection">;
  readonly rpcCalls: Counter<"connection" | "method">;
  readonly rpcTimeouts: Counter<"connection" | "method">;
  readonly rpcDuration: SeriesHistogram<"connection" | "method">;

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
      return new SeriesHistogram<L>({ name, help, labelNames, buckets }, registry);
    };
    const flush = () => this.flushCounts();
    const C = "connection" as const;

    this.connectionState = gauge(
      "warren_connection_state",
      "1 for the client's current state, 0 for the others",
      [C, "state"],
    );
    this.connectionUp = gauge("warren_connection_up", "1 while the client is running or blocked", [C]);
    this.reconnects = counter("warren_reconnects_total", "Connections re-established after a loss", [C]);
    this.recoveryDuration = histogram(
      "warren_recovery_duration_seconds",
      "Time from a lost connection to running again",
      [C],
      RECOVERY_BUCKETS,
    );
    this.channelRestarts = counter(
      "warren_channel_restarts_total",
      "Supervised channels reopened after a channel error",
      [C],
    );
    this.channelRenewals = counter(
      "warren_channel_renewals_total",
      "Publisher channels renewed after a nack streak",
      [C],
    );
    this.escalations = counter(
      "warren_supervisor_escalations_total",
      "Supervisor escalations: channel (a channel gave up, the connection restarts) or connection (the connection's restart intensity was exceeded: the backoff escalates)",
      [C, "level"],
    );
    this.hostCooldowns = counter(
      "warren_host_cooldowns_total",
      "Hosts set to rest after their connection died or they refused (the next attempt goes elsewhere)",
      [C],
    );
    this.blocked = gauge("warren_blocked", "1 while the broker blocks the connection", [C]);
    this.blockedSeconds = counter(
      "warren_blocked_seconds_total",
      "Time spent blocked by the broker",
      [C],
      () => this.collectBlocked(),
    );
    this.degraded = gauge(
      "warren_connection_degraded",
      "1 while the connection is degraded: restarts exceeded the restart intensity and it has not stayed up since",
      [C],
    );
    this.degradedSeconds = counter(
      "warren_connection_degraded_seconds_total",
      "Time spent degraded (escalated reconnect backoff)",
      [C],
      () => this.collectDegraded(),
    );
    this.heartbeatMisses = counter(
      "warren_heartbeat_misses_total",
      "Connections declared dead by missed heartbeats",
      [C],
    );
    this.bytesReceived = counter("warren_bytes_received_total", "Bytes read from the socket", [C], () =>
      this.collectBytes(),
    );
    this.bytesSent = counter("warren_bytes_sent_total", "Bytes written to the socket", [C], () =>
      this.collectBytes(),
    );
    this.writeBuffer = gauge(
      "warren_write_buffer_bytes",
      "Bytes buffered in the process for the socket, not yet taken by the kernel (publishing waits above writeHighWaterMark)",
      [C],
      () => this.collectBytes(),
    );
    this.rpcCalls = counter("warren_rpc_calls_total", "Synchronous AMQP methods sent", [C, "method"]);
    this.rpcTimeouts = counter(
      "warren_rpc_timeouts_total",
      "Synchronous AMQP methods that got no reply in time",
      [C, "method"],
    );
    this.rpcDuration = histogram(
      "warren_rpc_duration_seconds",
      "Synchronous AMQP method sent to reply",
      [C, "method"],
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

    // Request/reply (rpcClient/rpcServer), not the synchronous AMQP methods of warren_rpc_calls_total.
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

  // Several metrics share one read: each collect runs once per scrape, cheap either way.
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

function metricsFor(registry: Registry): RegistryMetrics {
  let m = registries.get(registry);
  if (m === undefined) {
    m = new RegistryMetrics(registry);
    registries.set(registry, m);
  }
  return m;
}

/**
 * A counter series fed from a hot path: a plain number, added to its prom-client series when the
 * registry is collected (prom-client's own children hash their labels on every increment).
 */
class Count {
  n = 0;
  private flushed = 0;

  constructor(private readonly target: Counter.Internal) {
    target.inc(0); // the series exists from the start, at 0
  }

  inc(): void {
    this.n++;
  }

  flush(): void {
    if (this.n === this.flushed) return;
    this.target.inc(this.n - this.flushed);
    this.flushed = this.n;
  }
}

/** One labelled series of a SeriesHistogram: observe() is a bucket search and three additions. */
class Series {
  readonly buckets: number[];
  sum = 0;
  count = 0;

  constructor(
    readonly labels: Readonly<Record<string, string>>,
    private readonly bounds: readonly number[],
  ) {
    this.buckets = new Array<number>(bounds.length + 1).fill(0);
  }

  observe(value: number): void {
    const b = this.bounds;
    let i = 0;
    while (i < b.length && value > b[i]!) i++;
    this.buckets[i] = this.buckets[i]! + 1;
    this.sum += value;
    this.count++;
  }

  clear(): void {
    this.buckets.fill(0);
    this.sum = 0;
    this.count = 0;
  }
}

type HistogramExport<L extends string> = Awaited<ReturnType<Histogram<L>["get"]>>;

/**
 * A prom-client Histogram (registered, exposed and typed as one) whose series are plain objects:
 * `series(labels)` is looked up once per exchange, queue or method, and observing does not go
 * through prom-client's per-call label validation and hashing. Exported in prom-client's format.
 */
class SeriesHistogram<L extends string> extends Histogram<L> {
  private readonly all = new Map<string, Series>();

  constructor(
    private readonly meta: { name: string; help: string; labelNames: L[]; buckets: number[] },
    registry: Registry,
  ) {
    super({ ...meta, registers: [registry] });
  }

  /** The series for these labels (created at 0 on first use). */
  series(labels: Record<L, string>): Series {
    const key = this.meta.labelNames.map((l) => labels[l]).join("\u0000");
    let s = this.all.get(key);
    if (s === undefined) {
      s = new Series({ ...labels }, this.meta.buckets);
      this.all.set(key, s);
    }
    return s;
  }

  override async get(): Promise<HistogramExport<L>> {
    return this.export();
  }

  /** What prom-client's Registry formats (it prefers this to get() when present). */
  async getForPromString(): Promise<HistogramExport<L>> {
    return this.export();
  }

  override reset(): void {
    super.reset();
    // prom-client's constructor calls reset() before this class's fields exist.
    const all = this.all as Map<string, Series> | undefined;
    if (all !== undefined) for (const s of all.values()) s.clear();
  }

  private export(): HistogramExport<L> {
    const { name, help, buckets } = this.meta;
    const values: { labels: Record<string, string | number>; value: number; metricName: string }[] = [];
    for (const s of this.all.values()) {
      let acc = 0;
      for (let i = 0; i < buckets.length; i++) {
        acc += s.buckets[i]!;
        values.push({ labels: { ...s.labels, le: buckets[i]! }, value: acc, metricName: `${name}_bucket` });
      }
      values.push({ labels: { ...s.labels, le: "+Inf" }, value: s.count, metricName: `${name}_bucket` });
      values.push({ labels: s.labels, value: s.sum, metricName: `${name}_sum` });
      values.push({ labels: s.labels, value: s.count, metricName: `${name}_count` });
    }
    return { name, help, type: "histogram", values, aggregator: "sum" } as unknown as HistogramExport<L>;
  }
}

/** One exchange's series, bound once. */
class ExchangeStats implements PublishStats {
  private readonly publishedN: Count;
  private readonly confirmedN: Count;
  private readonly nackedN: Count;
  private readonly nackRetriesN: Count;
  private readonly returnedN: Count;
  private readonly republishedN: Count;
  private readonly latency: Series;
  private readonly failures = new Map<PublishFailure, Count>();

  constructor(m: RegistryMetrics, connection: string, label: string, counts: Count[]) {
    const count = (c: Counter<"connection" | "exchange">) => {
      const n = new Count(c.labels(connection, label));
      counts.push(n);
      return n;
    };
    this.publishedN = count(m.published);
    this.confirmedN = count(m.confirmed);
    this.nackedN = count(m.nacked);
    this.nackRetriesN = count(m.nackRetries);
    this.returnedN = count(m.returned);
    this.republishedN = count(m.republished);
    this.latency = m.confirmDuration.series({ connection, exchange: label });
    for (const reason of PUBLISH_FAILURES) {
      const n = new Count(m.publishFailed.labels(connection, label, reason));
      counts.push(n);
      this.failures.set(reason, n);
    }
  }

  published(): void {
    this.publishedN.inc();
  }
  confirmed(seconds?: number): void {
    this.confirmedN.inc();
    if (seconds !== undefined) this.latency.observe(seconds);
  }
  nacked(): void {
    this.nackedN.inc();
  }
  nackRetried(): void {
    this.nackRetriesN.inc();
  }
  returned(): void {
    this.returnedN.inc();
  }
  republished(): void {
    this.republishedN.inc();
  }
  failed(error: Error): void {
    this.failures.get(publishFailureReason(error))?.inc();
  }
}

/** One queue's series, bound once. */
class QueueStats implements ConsumeStats {
  private readonly deliveredN: Count;
  private readonly ackedN: Count;
  private readonly nackedN: Count;
  private readonly rejectedN: Count;
  private readonly retriedN: Count;
  private readonly duration: Series;
  readonly restarts: Counter.Internal;
  /** Failed subscription attempts by error code (rare: no batching). */
  private readonly subscribeErrors = new Map<string, Counter.Internal>();

  constructor(
    private readonly m: RegistryMetrics,
    private readonly connection: string,
    private readonly label: string,
    counts: Count[],
  ) {
    const count = (c: Counter<"connection" | "queue">) => {
      const n = new Count(c.labels(connection, label));
      counts.push(n);
      return n;
    };
    this.deliveredN = count(m.delivered);
    this.ackedN = count(m.acked);
    this.nackedN = count(m.consumerNacked);
    this.rejectedN = count(m.rejected);
    this.duration = m.handlerDuration.series({ connection, queue: label });
    this.restarts = m.consumerRestarts.labels(connection, label);
    this.restarts.inc(0);
    this.retriedN = count(m.retried);
    // At 0 from the start, so that the first missing-queue error is an increase (the alert).
    this.subscribeErrorsOf("QUEUE_NOT_FOUND");
  }

  private subscribeErrorsOf(code: string): Counter.Internal {
    let c = this.subscribeErrors.get(code);
    if (c === undefined) {
      c = this.m.consumerSubscribeErrors.labels(this.connection, this.label, code);
      c.inc(0);
      this.subscribeErrors.set(code, c);
    }
    return c;
  }

  delivered(): void {
    this.deliveredN.inc();
  }
  handled(seconds: number): void {
    this.duration.observe(seconds);
  }
  acked(): void {
    this.ackedN.inc();
  }
  nacked(): void {
    this.nackedN.inc();
  }
  rejected(): void {
    this.rejectedN.inc();
  }
  retried(): void {
    this.retriedN.inc();
  }
  subscribeFailed(code: string): void {
    this.subscribeErrorsOf(code).inc();
  }
}

/** An RPC client's series (one set per client connection), bound once. */
class RpcClientSeries implements RpcClientStats {
  private readonly outcomes = new Map<RpcCallOutcome, Count>();
  private readonly duration: Series;
  private readonly dropped: Count;
  private readonly retries: Count;

  constructor(m: RegistryMetrics, connection: string, counts: Count[]) {
    for (const o of RPC_CALL_OUTCOMES) {
      const n = new Count(m.rpcClientCalls.labels(connection, o));
      counts.push(n);
      this.outcomes.set(o, n);
    }
    this.duration = m.rpcClientDuration.series({ connection });
    this.dropped = new Count(m.rpcClientDropped.labels(connection));
    this.retries = new Count(m.rpcClientRetries.labels(connection));
    counts.push(this.dropped, this.retries);
  }

  settled(outcome: RpcCallOutcome, seconds: number): void {
    this.outcomes.get(outcome)?.inc();
    if (outcome === "ok" || outcome === "remote_error") this.duration.observe(seconds);
  }
  droppedReply(): void {
    this.dropped.inc();
  }
  retried(): void {
    this.retries.inc();
  }
}

/** An RPC server queue's series, bound once. */
class RpcServerSeries implements RpcServerStats {
  private readonly outcomes = new Map<RpcServeOutcome, Count>();
  private readonly duration: Series;

  constructor(m: RegistryMetrics, connection: string, queue: string, counts: Count[]) {
    for (const o of RPC_SERVE_OUTCOMES) {
      const n = new Count(m.rpcServerRequests.labels(connection, queue, o));
      counts.push(n);
      this.outcomes.set(o, n);
    }
    this.duration = m.rpcServerDuration.series({ connection, queue });
  }

  served(outcome: RpcServeOutcome, seconds: number): void {
    this.outcomes.get(outcome)?.inc();
    if (outcome === "ok" || outcome === "error") this.duration.observe(seconds);
  }
}

interface RpcChildren {
  calls: Counter.Internal;
  timeouts: Counter.Internal;
  duration: Series;
}

/**
 * The metrics of one client. The client hands it to its connections (ConnectionObserver), its
 * publishers (PublisherObserver), its consumers (`queue()`), and its actors (`inspect`).
 */
export class ClientMetrics implements ConnectionObserver, PublisherObserver {
  readonly name: string;
  readonly registry: Registry;
  private readonly m: RegistryMetrics;
  private readonly maxLabels: number;
  private readonly exchanges = new Map<string, ExchangeStats>();
  private readonly queues = new Map<string, QueueStats>();
  private otherExchange: ExchangeStats | undefined;
  private otherQueue: QueueStats | undefined;
  private readonly rpcs = new Map<string, RpcChildren>();
  private rpcClientSeries: RpcClientSeries | undefined;
  private readonly rpcServerSeries = new Map<string, RpcServerSeries>();
  /** Hot-path counter series, added to prom-client's counters when collected. */
  private readonly counts: Count[] = [];
  /** The last exchange looked up (publishers mostly use one): no Map lookup for it. */
  private lastExchange: string | undefined;
  private lastExchangeStats: ExchangeStats | undefined;

  // connection lifecycle (from the connection machine's snapshots)
  private state = "idle";
  private everUp = false;
  private lostAt: number | undefined;
  private blockedSince: number | undefined;
  private degradedSince: number | undefined;
  private level = 0;
  private readonly channelStates = new WeakMap<AnyActorRef, string>();

  // bytes: folded from closed connections, plus the live ones at collect time
  private readonly live = new Set<Connection>();
  private bytesInClosed = 0;
  private bytesOutClosed = 0;
  private bytesInReported = 0;
  private bytesOutReported = 0;

  private readonly publishers = new Set<Publisher>();
  private readonly consumers = new Set<Consumer>();
  /** Queue labels the handlers-in-flight gauge was set for. */
  private readonly inFlightQueues = new Set<string>();
  private attached = true;

  // label children bound once
  private readonly stateGauges: Map<string, Gauge.Internal<"connection" | "state">>;
  private readonly up: Gauge.Internal<"connection">;
  private readonly reconnects: Counter.Internal;
  private readonly hostCooldowns: Counter.Internal;
  /** The connection machine's per-host rest table, last seen. */
  private cooldownUntil: readonly number[] = [];
  private readonly recovery: Series;
  private readonly channelRestarts: Counter.Internal;
  private readonly channelRenewals: Counter.Internal;
  private readonly channelEscalations: Counter.Internal;
  private readonly connectionEscalations: Counter.Internal;
  private readonly blocked: Gauge.Internal<"connection">;
  private readonly blockedSeconds: Counter.Internal;
  private readonly degradedGauge: Gauge.Internal<"connection">;
  private readonly degradedSeconds: Counter.Internal;
  private readonly heartbeatMisses: Counter.Internal;
  private readonly bytesIn: Counter.Internal;
  private readonly bytesOut: Counter.Internal;
  private readonly writeBuffer: Gauge.Internal<"connection">;
  private readonly inFlight: Gauge.Internal<"connection">;
  private readonly outboxDepth: Gauge.Internal<"connection">;
  private readonly deadLetters: Gauge.Internal<"connection">;

  constructor(options: MetricsOptions | true, connectionName: string | undefined) {
    const o = options === true ? {} : options;
    this.registry = o.registry ?? register;
    this.m = metricsFor(this.registry);
    this.maxLabels = Math.max(0, o.maxLabelValues ?? 100);
    this.name = connectionName ?? "default";
    const m = this.m;
    const n = this.name;
    this.stateGauges = new Map(CONNECTION_STATES.map((s) => [s, m.connectionState.labels(n, s)]));
    this.up = m.connectionUp.labels(n);
    this.reconnects = m.reconnects.labels(n);
    this.recovery = m.recoveryDuration.series({ connection: n });
    this.channelRestarts = m.channelRestarts.labels(n);
    this.channelRenewals = m.channelRenewals.labels(n);
    this.channelEscalations = m.escalations.labels(n, "channel");
    this.connectionEscalations = m.escalations.labels(n, "connection");
    this.hostCooldowns = m.hostCooldowns.labels(n);
    this.blocked = m.blocked.labels(n);
    this.blockedSeconds = m.blockedSeconds.labels(n);
    this.degradedGauge = m.degraded.labels(n);
    this.degradedSeconds = m.degradedSeconds.labels(n);
    this.heartbeatMisses = m.heartbeatMisses.labels(n);
    this.bytesIn = m.bytesReceived.labels(n);
    this.bytesOut = m.bytesSent.labels(n);
    this.writeBuffer = m.writeBuffer.labels(n);
    this.inFlight = m.publishInFlight.labels(n);
    this.outboxDepth = m.outboxDepth.labels(n);
    this.deadLetters = m.outboxDeadLetters.labels(n);
    // Every connection-level series exists from the start (at 0), so rates and alerts see it.
    for (const [s, g] of this.stateGauges) g.set(s === "idle" ? 1 : 0);
    this.up.set(0);
    this.blocked.set(0);
    this.degradedGauge.set(0);
    this.writeBuffer.set(0);
    for (const c of [
      this.reconnects,
      this.channelRestarts,
      this.channelRenewals,
      this.channelEscalations,
      this.connectionEscalations,
      this.hostCooldowns,
      this.blockedSeconds,
      this.degradedSeconds,
      this.heartbeatMisses,
      this.bytesIn,
      this.bytesOut,
    ])
      c.inc(0);
    this.inFlight.set(0);
    this.outboxDepth.set(0);
    this.deadLetters.set(0);
    m.clients.add(this);
  }

  // ─── label values (bounded) ─────────────────────────────────────────────

  /** The instrumentation of publishes to `name` (`_other` past the cap). */
  exchange(name: string): PublishStats {
    if (name === this.lastExchange) return this.lastExchangeStats!;
    let s = this.exchanges.get(name);
    if (s === undefined) {
      if (this.exchanges.size >= this.maxLabels) {
        this.otherExchange ??= new ExchangeStats(this.m, this.name, OTHER_LABEL, this.counts);
        return this.otherExchange;
      }
      s = new ExchangeStats(this.m, this.name, name === "" ? DEFAULT_EXCHANGE_LABEL : name, this.counts);
      this.exchanges.set(name, s);
    }
    this.lastExchange = name;
    this.lastExchangeStats = s;
    return s;
  }

  /** The instrumentation of deliveries from `name` (`_other` past the cap). */
  queue(name: string): QueueStats {
    const s = this.queues.get(name);
    if (s !== undefined) return s;
    if (this.queues.size >= this.maxLabels) {
      this.otherQueue ??= new QueueStats(this.m, this.name, OTHER_LABEL, this.counts);
      return this.otherQueue;
    }
    const created = new QueueStats(this.m, this.name, name, this.counts);
    this.queues.set(name, created);
    return created;
  }

  /** The instrumentation of the client's RPC clients (request/reply; all of them share it). */
  rpcClientStats(): RpcClientStats {
    this.rpcClientSeries ??= new RpcClientSeries(this.m, this.name, this.counts);
    return this.rpcClientSeries;
  }

  /** The instrumentation of an RPC server on `queue` (`_other` past the label cap). */
  rpcServerStats(queue: string): RpcServerStats {
    let label = queue;
    if (!this.rpcServerSeries.has(queue) && this.rpcServerSeries.size >= this.maxLabels) label = OTHER_LABEL;
    let s = this.rpcServerSeries.get(label);
    if (s === undefined) {
      s = new RpcServerSeries(this.m, this.name, label, this.counts);
      this.rpcServerSeries.set(label, s);
    }
    return s;
  }

  private queueLabel(name: string): string {
    return this.queues.has(name) ? name : OTHER_LABEL;
  }

  // ─── ConnectionObserver (src/amqp) ──────────────────────────────────────

  opened(conn: Connection): void {
    this.live.add(conn);
  }

  closed(conn: Connection): void {
    if (!this.live.delete(conn)) return;
    this.bytesInClosed += conn.bytesReceived;
    this.bytesOutClosed += conn.bytesSent;
  }

  heartbeatMissed(): void {
    this.heartbeatMisses.inc();
  }

  rpcSent(method: string): void {
    this.rpc(method).calls.inc();
  }

  rpcReplied(method: string, seconds: number): void {
    this.rpc(method).duration.observe(seconds);
  }

  rpcTimedOut(method: string): void {
    this.rpc(method).timeouts.inc();
  }

  /** AMQP method names are a small fixed set: no cap needed. */
  private rpc(method: string): RpcChildren {
    let r = this.rpcs.get(method);
    if (r === undefined) {
      r = {
        calls: this.m.rpcCalls.labels(this.name, method),
        timeouts: this.m.rpcTimeouts.labels(this.name, method),
        duration: this.m.rpcDuration.series({ connection: this.name, method }),
      };
      r.timeouts.inc(0);
      this.rpcs.set(method, r);
    }
    return r;
  }

  // ─── the machines' inspection stream ────────────────────────────────────

  /** Pass as `inspect` to createActor for the connection and channel machines. */
  readonly inspect = (ev: InspectionEvent): void => {
    if (ev.type !== "@xstate.snapshot") return;
    const snap = ev.snapshot as {
      machine?: { id?: string };
      value?: unknown;
      context?: { cooldownUntil?: readonly number[]; degraded?: boolean; level?: number };
    };
    const id = snap.machine?.id;
    if (id === "connection") {
      this.connectionState(leafName(snap.value));
      this.degradedState(snap.context?.degraded === true, snap.context?.level ?? 0);
      const rest = snap.context?.cooldownUntil;
      if (rest !== undefined && rest !== this.cooldownUntil) {
        // A new table: count the hosts whose rest was extended.
        for (let i = 0; i < rest.length; i++)
          if ((rest[i] ?? 0) > (this.cooldownUntil[i] ?? 0)) this.hostCooldowns.inc();
        this.cooldownUntil = rest;
      }
    } else if (id === "channel")
      this.channelState(ev.actorRef as AnyActorRef, leafName(snap.value), ev.event.type);
  };

  private connectionState(to: string): void {
    const from = this.state;
    if (to === from) return;
    this.state = to;
    const now = performance.now();
    this.stateGauges.get(from)?.set(0);
    this.stateGauges.get(to)?.set(1);
    const upNow = to === "running" || to === "blocked";
    this.up.set(upNow ? 1 : 0);
    if (to === "blocked") {
      this.blockedSince = now;
      this.blocked.set(1);
    } else if (from === "blocked") {
      if (this.blockedSince !== undefined) this.blockedSeconds.inc((now - this.blockedSince) / 1000);
      this.blockedSince = undefined;
      this.blocked.set(0);
    }
    if (upNow) {
      if (this.lostAt !== undefined) {
        this.reconnects.inc();
        this.recovery.observe((now - this.lostAt) / 1000);
        this.lostAt = undefined;
      }
      this.everUp = true;
    } else if (to === "recovering" || to === "degraded") {
      // Lost: from an open connection, or a restore that failed after the first time we were up.
      if (this.everUp) this.lostAt ??= now;
    } else if (to === "closing" || to === "closed" || to === "failed") {
      this.lostAt = undefined;
    }
    if (to === "closed") {
      this.degradedState(false, 0);
      this.detach();
    }
  }

  /** The degraded condition, and each escalation (a level up) of the connection's backoff. */
  private degradedState(degraded: boolean, level: number): void {
    if (level > this.level) this.connectionEscalations.inc(level - this.level);
    this.level = level;
    if (degraded === (this.degradedSince !== undefined)) return;
    const now = performance.now();
    if (degraded) {
      this.degradedSince = now;
      this.degradedGauge.set(1);
    } else {
      if (this.degradedSince !== undefined) this.degradedSeconds.inc((now - this.degradedSince) / 1000);
      this.degradedSince = undefined;
      this.degradedGauge.set(0);
    }
  }

  private channelState(actor: AnyActorRef, to: string, cause: string): void {
    const from = this.channelStates.get(actor);
    if (from === to) return;
    this.channelStates.set(actor, to);
    if (to === "reopening") {
      if (cause === "RENEW") this.channelRenewals.inc();
      else this.channelRestarts.inc();
    } else if (to === "failed") this.channelEscalations.inc();
  }

  // ─── consumers and publishers ───────────────────────────────────────────

  /** Follows a consumer: its restarts (from its state events) and its running handlers. */
  watchConsumer(consumer: Consumer): void {
    this.consumers.add(consumer);
    const restarts = this.queue(consumer.queue).restarts;
    let subscribed = false;
    consumer.on("state", ({ to }) => {
      if (to === "consuming") {
        if (subscribed) restarts.inc();
        subscribed = true;
      } else if (to === "cancelled") this.consumers.delete(consumer);
    });
  }

  /** Follows a publisher's in-flight messages and outbox. */
  watchPublisher(publisher: Publisher): void {
    this.publishers.add(publisher);
  }

  // ─── collected at scrape time ───────────────────────────────────────────

  /** @internal */
  flushCounts(): void {
    for (const c of this.counts) c.flush();
  }

  /** @internal */
  collectBlocked(): void {
    if (this.blockedSince === undefined) return;
    const now = performance.now();
    this.blockedSeconds.inc((now - this.blockedSince) / 1000);
    this.blockedSince = now;
  }

  /** @internal */
  collectDegraded(): void {
    if (this.degradedSince === undefined) return;
    const now = performance.now();
    this.degradedSeconds.inc((now - this.degradedSince) / 1000);
    this.degradedSince = now;
  }

  /** @internal */
  collectBytes(): void {
    let rx = this.bytesInClosed;
    let tx = this.bytesOutClosed;
    let buffered = 0;
    for (const c of this.live) {
      rx += c.bytesReceived;
      tx += c.bytesSent;
      buffered += c.writer.pending;
    }
    this.writeBuffer.set(buffered);
    if (rx > this.bytesInReported) this.bytesIn.inc(rx - this.bytesInReported);
    if (tx > this.bytesOutReported) this.bytesOut.inc(tx - this.bytesOutReported);
    this.bytesInReported = Math.max(rx, this.bytesInReported);
    this.bytesOutReported = Math.max(tx, this.bytesOutReported);
  }

  /** @internal */
  collectPublishers(): void {
    let unsettled = 0;
    let stored = 0;
    let dead = 0;
    for (const p of this.publishers) {
      try {
        const g = p.gauges();
        unsettled += g.unsettled;
        stored += g.stored;
        dead += g.deadLetters;
      } catch {
        // an outbox closed under us: counted as empty
      }
    }
    this.inFlight.set(unsettled);
    this.outboxDepth.set(stored);
    this.deadLetters.set(dead);
  }

  /** @internal */
  collectConsumers(): void {
    const running = new Map<string, number>();
    for (const c of this.consumers) {
      const label = this.queueLabel(c.queue);
      running.set(label, (running.get(label) ?? 0) + c.running);
    }
    for (const q of this.inFlightQueues) if (!running.has(q)) running.set(q, 0);
    for (const [q, n] of running) {
      this.m.handlersInFlight.labels(this.name, q).set(n);
      this.inFlightQueues.add(q);
    }
  }

  /** The client closed: final values, then it is no longer collected. */
  private detach(): void {
    if (!this.attached) return;
    this.attached = false;
    this.flushCounts();
    this.collectBytes();
    this.publishers.clear();
    this.consumers.clear();
    this.collectPublishers();
    this.collectConsumers();
    this.m.clients.delete(this);
  }
}

/** The innermost state name of a machine state value. */
function leafName(value: unknown): string {
  let v = value;
  while (v !== null && typeof v === "object") v = Object.values(v as Record<string, unknown>)[0];
  return String(v);
}
