/**
 * The metrics of one of a client's connections (its `consume`, `publish` or `shared` one): its
 * supervisor's state, recoveries, blocked and degraded time, channel restarts, bytes and AMQP
 * methods, labelled `{connection, role}`. Fed from the connection and channel machines'
 * inspection stream and the session's ConnectionObserver hooks (machines/ stays pure); the
 * client-wide series (publishes, deliveries, RPC) are ClientMetrics'.
 */
import type { Counter, Gauge } from "prom-client";
import type { AnyActorRef, InspectionEvent } from "xstate";
import { leafName } from "../../../machines/state-value.js";
import type { Connection, ConnectionObserver } from "../../amqp/connection.js";
import { CONNECTION_STATES } from "../observers.js";
import type { RegistryMetrics } from "./catalogue.js";
import type { Series } from "./primitives.js";

interface MethodChildren {
  calls: Counter.Internal;
  timeouts: Counter.Internal;
  duration: Series;
}

/** One connection's series, bound once; collected by its client's ClientMetrics. */
export class ConnectionMetrics implements ConnectionObserver {
  private readonly labels: { connection: string; role: string };
  private readonly methods = new Map<string, MethodChildren>();

  // lifecycle (from the connection machine's snapshots)
  private state = "idle";
  private everUp = false;
  private lostAt: number | undefined;
  private blockedSince: number | undefined;
  private degradedSince: number | undefined;
  private level = 0;
  private readonly channelStates = new WeakMap<AnyActorRef, string>();
  /** The connection machine's per-host rest table, last seen. */
  private cooldownUntil: readonly number[] = [];

  // bytes: folded from closed connections, plus the live ones at collect time
  private readonly live = new Set<Connection>();
  private bytesInClosed = 0;
  private bytesOutClosed = 0;
  private bytesInReported = 0;
  private bytesOutReported = 0;

  private readonly stateGauges: Map<string, Gauge.Internal<string>>;
  private readonly up: Gauge.Internal<string>;
  private readonly reconnects: Counter.Internal;
  private readonly hostCooldowns: Counter.Internal;
  private readonly recovery: Series;
  private readonly channelRestarts: Counter.Internal;
  private readonly channelRenewals: Counter.Internal;
  private readonly channelEscalations: Counter.Internal;
  private readonly connectionEscalations: Counter.Internal;
  private readonly blocked: Gauge.Internal<string>;
  private readonly blockedSeconds: Counter.Internal;
  private readonly degradedGauge: Gauge.Internal<string>;
  private readonly degradedSeconds: Counter.Internal;
  private readonly heartbeatMisses: Counter.Internal;
  private readonly bytesIn: Counter.Internal;
  private readonly bytesOut: Counter.Internal;
  private readonly writeBuffer: Gauge.Internal<string>;

  constructor(
    private readonly m: RegistryMetrics,
    connection: string,
    role: string,
  ) {
    const l = { connection, role };
    this.labels = l;
    this.stateGauges = new Map(
      CONNECTION_STATES.map((state) => [state, m.connectionState.labels({ ...l, state })]),
    );
    this.up = m.connectionUp.labels(l);
    this.reconnects = m.reconnects.labels(l);
    this.recovery = m.recoveryDuration.series(l);
    this.channelRestarts = m.channelRestarts.labels(l);
    this.channelRenewals = m.channelRenewals.labels(l);
    this.channelEscalations = m.escalations.labels({ ...l, level: "channel" });
    this.connectionEscalations = m.escalations.labels({ ...l, level: "connection" });
    this.hostCooldowns = m.hostCooldowns.labels(l);
    this.blocked = m.blocked.labels(l);
    this.blockedSeconds = m.blockedSeconds.labels(l);
    this.degradedGauge = m.degraded.labels(l);
    this.degradedSeconds = m.degradedSeconds.labels(l);
    this.heartbeatMisses = m.heartbeatMisses.labels(l);
    this.bytesIn = m.bytesReceived.labels(l);
    this.bytesOut = m.bytesSent.labels(l);
    this.writeBuffer = m.writeBuffer.labels(l);
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
      const l = { ...this.labels, method };
      r = {
        calls: this.m.methodCalls.labels(l),
        timeouts: this.m.methodTimeouts.labels(l),
        duration: this.m.methodDuration.series(l),
      };
      r.timeouts.inc(0);
      this.methods.set(method, r);
    }
    return r;
  }

  // ─── the machines' inspection stream ────────────────────────────────────

  /** Pass as `inspect` to createActor for this connection's connection and channel machines. */
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
    if (to === "closed") this.degradedState(false, 0);
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

  // ─── collected at scrape time ───────────────────────────────────────────

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
}
