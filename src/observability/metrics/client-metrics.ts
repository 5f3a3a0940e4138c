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
 * each client writes its own `connection` label (its connectionName, or "default"). The series of
 * each of its connections (state, recoveries, bytes…) also carry a `role` label (consume, publish,
 * or shared with `connections: "single"`): connection-metrics.ts.
 */
import type { Gauge, Registry } from "prom-client";
import type {
  PublisherObserver,
  PublishStats,
  RpcClientStats,
  RpcServerStats,
  WatchedConsumer,
  WatchedPublisher,
} from "../observers.js";
import { type CollectedClient, metricsFor, type RegistryMetrics } from "./catalogue.js";
import { ConnectionMetrics } from "./connection-metrics.js";
import { DEFAULT_EXCHANGE_LABEL, OTHER_LABEL } from "./labels.js";
import type { MetricsOptions } from "./options.js";
import type { Count } from "./primitives.js";
import { promRegistry } from "./prom.js";
import { ExchangeStats, QueueStats, RpcClientSeries, RpcServerSeries } from "./series.js";

/**
 * The metrics of one client. The client hands it to its publishers (PublisherObserver) and its
 * consumers (`queue()`), and each of its connections gets a ConnectionMetrics (`connection()`).
 */
export class ClientMetrics implements PublisherObserver, CollectedClient {
  readonly name: string;
  readonly registry: Registry;
  private readonly m: RegistryMetrics;
  private readonly maxLabels: number;
  private readonly exchanges = new Map<string, ExchangeStats>();
  private readonly queues = new Map<string, QueueStats>();
  private otherExchange: ExchangeStats | undefined;
  private otherQueue: QueueStats | undefined;
  private rpcClientSeries: RpcClientSeries | undefined;
  private readonly rpcServerSeries = new Map<string, RpcServerSeries>();
  /** Hot-path counter series, added to prom-client's counters when collected. */
  private readonly counts: Count[] = [];
  /** The last exchange looked up (publishers mostly use one): no Map lookup for it. */
  private lastExchange: string | undefined;
  private lastExchangeStats: ExchangeStats | undefined;

  /** The metrics of each connection the client opened. */
  private readonly connections: ConnectionMetrics[] = [];

  private readonly publishers = new Set<WatchedPublisher>();
  private readonly consumers = new Set<WatchedConsumer>();
  /** Queue labels the handlers-in-flight gauge was set for. */
  private readonly inFlightQueues = new Set<string>();
  private attached = true;

  // label children bound once
  private readonly inFlight: Gauge.Internal<"connection">;
  private readonly outboxDepth: Gauge.Internal<"connection">;
  private readonly deadLetters: Gauge.Internal<"connection">;

  constructor(options: MetricsOptions | true, connectionName: string | undefined) {
    const o = options === true ? {} : options;
    this.registry = promRegistry(o.registry);
    this.m = metricsFor(this.registry);
    this.maxLabels = Math.max(0, o.maxLabelValues ?? 100);
    this.name = connectionName ?? "default";
    const n = this.name;
    this.inFlight = this.m.publishInFlight.labels(n);
    this.outboxDepth = this.m.outboxDepth.labels(n);
    this.deadLetters = this.m.outboxDeadLetters.labels(n);
    this.inFlight.set(0);
    this.outboxDepth.set(0);
    this.deadLetters.set(0);
    this.m.eventLoopLag.labels(n).set(0);
    this.m.attach(this);
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

  // ─── connections ────────────────────────────────────────────────────────

  /** The metrics of a new connection of this client, labelled with its `role`. */
  connection(role: string): ConnectionMetrics {
    const c = new ConnectionMetrics(this.m, this.name, role);
    this.connections.push(c);
    return c;
  }

  /** A refresh of `connect({ credentials })` (ok), or a failure to get or use them. */
  credentialOutcome(outcome: string): void {
    this.m.credentialRefreshes.labels(this.name, outcome).inc();
  }

  // ─── consumers and publishers ───────────────────────────────────────────

  /** Follows a consumer: its restarts (from its state events) and its running handlers. */
  watchConsumer(consumer: WatchedConsumer): void {
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
  watchPublisher(publisher: WatchedPublisher): void {
    this.publishers.add(publisher);
  }

  // ─── collected at scrape time ───────────────────────────────────────────

  /** @internal */
  flushCounts(): void {
    for (const c of this.counts) c.flush();
  }

  /** @internal */
  collectBlocked(): void {
    for (const c of this.connections) c.collectBlocked();
  }

  /** @internal */
  collectDegraded(): void {
    for (const c of this.connections) c.collectDegraded();
  }

  /** @internal */
  collectBytes(): void {
    for (const c of this.connections) c.collectBytes();
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
  detach(): void {
    if (!this.attached) return;
    this.attached = false;
    this.flushCounts();
    this.collectBytes();
    this.publishers.clear();
    this.consumers.clear();
    this.collectPublishers();
    this.collectConsumers();
    this.m.detach(this);
  }
}
