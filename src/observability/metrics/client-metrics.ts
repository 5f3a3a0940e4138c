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
import type { Counter, Gauge, Registry } from "prom-client";
import type { AnyActorRef, InspectionEvent } from "xstate";
import { leafName } from "../../../machines/state-value.js";
import type { Connection, ConnectionObserver } from "../../amqp/connection.js";
import {
  CONNECTION_STATES,
  type PublisherObserver,
  type PublishStats,
  type RpcClientStats,
  type RpcServerStats,
  type WatchedConsumer,
  type WatchedPublisher,
} from "../observers.js";
import { type CollectedClient, metricsFor, type RegistryMetrics } from "./catalogue.js";
import { DEFAULT_EXCHANGE_LABEL, OTHER_LABEL } from "./labels.js";
import type { MetricsOptions } from "./options.js";
import type { Count, Series } from "./primitives.js";
import { promRegistry } from "./prom.js";
import { ExchangeStats, QueueStats, RpcClientSeries, RpcServerSeries } from "./series.js";

interface MethodChildren {
  calls: Counter.Internal;
  timeouts: Counter.Internal;
  duration: Series;
}

/**
 * The metrics of one client. The client hands it to its connections (ConnectionObserver), its
 * publishers (PublisherObserver), its consumers (`queue()`), and its actors (`inspect`).
 */
export class ClientMetrics implements ConnectionObserver, PublisherObserver, CollectedClient {
  readonly name: string;
  readonly registry: Registry;
  private readonly m: RegistryMetrics;
  private readonly maxLabels: number;
  private readonly exchanges = new Map<string, ExchangeStats>();
  private readonly queues = new Map<string, QueueStats>();
  private otherExchange: ExchangeStats | undefined;
  private otherQueue: QueueStats | undefined;
  private readonly methods = new Map<string, MethodChildren>();
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

  private readonly publishers = new Set<WatchedPublisher>();
  private readonly consumers = new Set<WatchedConsumer>();
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
    this.registry = promRegistry(o.registry);
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
    m.eventLoopLag.labels(n).set(0);
    m.attach(this);
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

  /** A refresh of `connect({ credentials })` (ok), or a failure to get or use them. */
  credentialOutcome(outcome: string): void {
    this.m.credentialRefreshes.labels(this.name, outcome).inc();
  }

  methodSent(method: string): void {
    this.method(method).calls.inc();
  }

  methodReplied(method: string, seconds: number): void {
    this.method(method).duration.observe(seconds);
  }

  methodTimedOut(method: string): void {
    this.method(method).timeouts.inc();
  }

  /** AMQP method names are a small fixed set: no cap needed. */
  private method(method: string): MethodChildren {
    let r = this.methods.get(method);
    if (r === undefined) {
      r = {
        calls: this.m.methodCalls.labels(this.name, method),
        timeouts: this.m.methodTimeouts.labels(this.name, method),
        duration: this.m.methodDuration.series({ connection: this.name, method }),
      };
      r.timeouts.inc(0);
      this.methods.set(method, r);
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
    this.m.detach(this);
  }
}
