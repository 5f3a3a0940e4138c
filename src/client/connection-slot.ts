/**
 * One of a client's connections, for one role (slot-state.ts): its own connection supervisor
 * (machines/connection.ts), its own hosts rotation and backoff, and the channels and consumers
 * that live on it. It connects, restores (topology first, through the client, then its channels
 * and consumers) and recovers on its own; the client makes it on first use and reads its state.
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
import type { Connection } from "../amqp/connection.js";
import { ConnectionClosedError } from "../errors.js";
import { isReported } from "../faults.js";
import type { ConnectionMetrics } from "../observability/metrics/connection-metrics.js";
import type { ClientState } from "../observability/observers.js";
import type { ClientOptions, DegradedChange, StateChange } from "./client-options.js";
import { connectActor, connectionOptions, watchActor } from "./connection-actors.js";
import type { Consumer } from "./consumer.js";
import type { CredentialKeeper } from "./credential-refresh.js";
import type { Hosts } from "./hosts.js";
import { ManagedChannel } from "./managed-channel.js";
import type { ConnectionRole } from "./slot-state.js";

type ConnActor = Actor<typeof connectionMachine>;

/** What a slot needs from its client. */
export interface SlotHost {
  readonly hosts: Hosts;
  /** The client's options (connection options, backoff, intensity…). */
  readonly options: ClientOptions;
  readonly channelIntensity: IntensityOptions;
  /** The login of `credentials`, shared by the client's connections (undefined: the URL's). */
  readonly credentials: CredentialKeeper | undefined;
  /** Declares the recorded topology again on a new connection, as this role needs it. */
  restoreTopology(conn: Connection, role: ConnectionRole): Promise<void>;
  /** Runs once for all slots on close (drain consumers, settle publishers) before each closes its channels. */
  beforeClose(): Promise<void>;
  /** A transition of this slot's supervisor. */
  changed(slot: ConnectionSlot, change: StateChange): void;
  /** This slot's degraded condition changed. */
  degradedChanged(slot: ConnectionSlot, change: DegradedChange): void;
  /** A fault the application must hear about (rate-limited by the client). */
  report(error: Error): void;
}

/** A supervised connection for one role, with its channels and consumers. */
export class ConnectionSlot {
  /** The live low-level connection, when there is one. */
  connection: Connection | undefined;
  /** The consumers on this connection, until they are cancelled. */
  readonly consumers = new Set<Consumer>();
  /** The supervised channels on this connection (publishers', RPC, the client's own). */
  readonly managed: ManagedChannel[] = [];
  private readonly actor: ConnActor;
  private stateName: ClientState = "idle";
  private degradedNow = false;
  /** host:port of the host tried or used now (or the one that failed). */
  private hostName = "";
  /** True once restore() started the supervised children on this connection (until it is lost). */
  private childrenUp = false;

  constructor(
    /** What this connection carries. */
    readonly role: ConnectionRole,
    /** The connection_name it gives the broker (undefined: none). */
    readonly name: string | undefined,
    private readonly host: SlotHost,
    /** Its metrics, labelled with its role, when metrics are on. */
    readonly metrics: ConnectionMetrics | undefined,
  ) {
    const o = host.options;
    const urls = host.hosts.urls;
    const machine = connectionMachine.provide({
      actors: {
        connect: fromCallback<ConnectionEvent, ConnectInput>(({ sendBack, input }) =>
          connectActor(
            {
              ...connectionOptions(o, host.hosts.url(input.hostIndex)),
              ...(name !== undefined ? { connectionName: name } : {}),
            },
            metrics,
            (conn) => {
              this.connection = conn;
            },
            sendBack,
            host.credentials,
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
            host.credentials,
          ),
        ),
        shutdown: fromPromise(() => this.shutdown()),
      },
    });
    this.actor = createActor(machine, {
      ...(metrics ? { inspect: metrics.inspect } : {}),
      input: {
        hostCount: urls.length,
        ...(o.hostCooldown !== undefined ? { hostCooldown: o.hostCooldown } : {}),
        backoff: { ...DEFAULT_BACKOFF, ...o.reconnect },
        intensity: { ...DEFAULT_INTENSITY, ...o.restartIntensity },
        escalation: { ...DEFAULT_ESCALATION, ...o.escalation },
        ...(o.giveUpAfter ? { giveUpAfter: o.giveUpAfter } : {}),
      },
    });
    this.actor.subscribe((snap) => this.onSnapshot(snap.value, snap.context));
    this.actor.start();
    // On the next microtask: a `state` listener attached right after connect() sees the first attempt too.
    queueMicrotask(() => {
      if (this.stateName === "idle") this.actor.send({ type: "START" });
    });
  }

  /** Its supervisor's state. */
  get state(): ClientState {
    return this.stateName;
  }

  /** Its restart intensity is exceeded (escalated backoff). */
  get degraded(): boolean {
    return this.degradedNow;
  }

  /** host:port of the host it uses or tries now ("" before the first attempt). */
  get hostNow(): string {
    return this.hostName;
  }

  /** Restoring, running or blocked. */
  get isOpen(): boolean {
    return this.stateName === "restoring" || this.stateName === "running" || this.stateName === "blocked";
  }

  /** True when a channel or consumer made now can start at once (restore() already ran). */
  get ready(): boolean {
    return this.isOpen && this.childrenUp;
  }

  /** The error that failed it, if it failed. */
  get error(): LifecycleError | undefined {
    return this.actor.getSnapshot().context.error;
  }

  /** Its restart intensity now. */
  get restartBudget(): { restarts: number; maxRestarts: number; withinMs: number; left: number } {
    const { restarts, intensity, now } = this.actor.getSnapshot().context;
    const t = now();
    const recent = restarts.filter((r) => t - r < intensity.withinMs).length;
    const { maxRestarts, withinMs } = intensity;
    return { restarts: recent, maxRestarts, withinMs, left: Math.max(0, maxRestarts - recent) };
  }

  /** Closes it (graceful: the shutdown actor runs); resolves once it is closed. */
  close(): Promise<void> {
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
    return done;
  }

  /** A supervised channel on this connection. */
  managedChannel(setup: (ch: Channel) => Promise<void>): ManagedChannel {
    const m = new ManagedChannel(this, setup, this.ready, this.host.channelIntensity);
    this.managed.push(m);
    return m;
  }

  /** Adds a consumer made on this connection (it leaves once cancelled). */
  adopt(c: Consumer): void {
    this.consumers.add(c);
    c.on("state", ({ to }) => {
      if (to === "cancelled") this.consumers.delete(c);
    });
  }

  /** @internal opens a raw channel on the live connection */
  openRawChannel(): Promise<Channel> {
    const conn = this.connection;
    // childrenUp, not the state name: restore() starts the children before the state event is seen.
    if (!conn?.isOpen || !this.childrenUp) return Promise.reject(new ConnectionClosedError("not connected"));
    return conn.openChannel();
  }

  /** @internal a supervised channel gave up: restart the connection (counts toward its intensity). */
  escalate(error: LifecycleError): void {
    this.actor.send({ type: "ESCALATE", error });
    void this.connection?.close({ timeout: 1000 });
  }

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
      const change = { degraded: context.degraded, level: context.level, role: this.role };
      // A change of condition without a change of state (reset while running) is told here alone.
      if (to === this.stateName) this.host.degradedChanged(this, change);
      else queueMicrotask(() => this.host.degradedChanged(this, change));
    }
    if (to === this.stateName) return;
    const failure = to === "recovering" || to === "degraded" || to === "failed";
    const error = failure ? context.error : undefined;
    const hosts = this.host.hosts;
    const host = hosts.name(failure ? context.failedHost : context.hostIndex);
    this.hostName = host;
    if (failure && error !== undefined && to !== "failed") {
      hosts.failed(host, error);
      if (isReported(error)) this.host.report(error);
    }
    const from = this.stateName;
    this.stateName = to;
    if (to === "connecting") hosts.attempted(host);
    const wasOpen = from === "restoring" || from === "running" || from === "blocked";
    if (!this.isOpen) this.childrenUp = false;
    // Closing is not a lost connection: shutdown() drains consumers and closes channels itself.
    if (wasOpen && !this.isOpen && to !== "closing") {
      for (const c of this.consumers) c.send({ type: "CONNECTION_LOST" });
      for (const m of this.managed) m.actor.send({ type: "CONNECTION_LOST" });
    }
    if (to === "failed" || to === "closed") {
      for (const c of this.consumers) c.send({ type: "CONNECTION_LOST" });
      for (const m of this.managed)
        if (m.actor.getSnapshot().status !== "done") m.actor.send({ type: "CLOSE" });
      if (to === "failed") {
        const conn = this.connection;
        this.connection = undefined;
        void conn?.close({ timeout: 1000 });
      }
    }
    this.host.changed(this, {
      from,
      to,
      error,
      host,
      degraded: context.degraded,
      role: this.role,
      connection: this.name,
    });
  }

  /** After (re)connecting: topology, then channels, then consumers (waiting for their first attempt). */
  private async restore(): Promise<void> {
    const conn = this.connection;
    if (!conn?.isOpen) throw new ConnectionClosedError("the connection closed before it could be restored");
    await this.host.restoreTopology(conn, this.role);
    // Channels and consumers created from here on start at once (they would miss the broadcast).
    this.childrenUp = true;
    for (const m of this.managed) m.actor.send({ type: "CONNECTED" });
    const consumers = [...this.consumers];
    for (const c of consumers) c.send({ type: "CONNECTED" });
    await Promise.all(consumers.map((c) => c.settled()));
  }

  private async shutdown(): Promise<void> {
    await this.host.beforeClose();
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
    if (conn) await conn.close({ timeout: this.host.options.closeTimeout ?? 10_000 });
  }
}
