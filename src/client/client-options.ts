/**
 * The supervised client's options and events: what `connect()` takes and what a Client emits.
 * No behaviour (src/client/client.ts).
 */
import type {
  BackoffOptions,
  EscalationOptions,
  GiveUpOptions,
  IntensityOptions,
} from "../../machines/backoff.js";
import type { ConnectionOptions } from "../amqp/connection-options.js";
import type { WarrenError } from "../errors.js";
import type { MetricsOptions } from "../observability/metrics/options.js";
import type { ClientState } from "../observability/observers.js";
import type { TracingOption } from "../observability/tracing.js";
import type { CredentialsChange } from "./credential-refresh.js";
import type { CredentialRefreshOptions, Credentials, CredentialsProvider } from "./credentials.js";
import type { ConnectionRole, ConnectionsMode } from "./slot-state.js";

/**
 * `connect()` options: every connection option (docs/connecting.md) but host and port, which come
 * from `url` or `urls`, and the supervision's own (docs/client.md).
 */
export interface ClientOptions extends Omit<ConnectionOptions, "url" | "host" | "port"> {
  /**
   * Brokers to use, in order. After a connection to one dies (or it refuses), the others are
   * tried first: that host rests for `hostCooldown` ms.
   */
  urls?: string[];
  /** Shuffle `urls` once, on creation, so a fleet of clients spreads over the nodes (default false). */
  shuffleHosts?: boolean;
  /** How long a host that died or refused rests before it is tried again (ms, default 10000). */
  hostCooldown?: number;
  /** One broker (same as urls: [url]). Default: $AMQP_URL or amqp://guest:guest@127.0.0.1:5672/. */
  url?: string;
  /**
   * The login, overriding the URL's user and password: a fixed `{ username, password }`, or a
   * provider (`() => Promise<{ username, password, expiresAt? }>`) asked before every connection
   * attempt, so a reconnect logs in with fresh credentials. When its answer has `expiresAt` (a Date
   * or ms since the epoch), the open connection gets new ones before then (connection.update-secret,
   * no reconnect). A login it supplied that is refused is tried once more with new ones. See
   * docs/connecting.md, "Credential providers and OAuth 2.0".
   */
  credentials?: Credentials | CredentialsProvider;
  /** When and how expiring credentials are refreshed (margin, timeout, retry backoff). */
  credentialRefresh?: CredentialRefreshOptions;
  /** Reconnect backoff: full jitter, ceiling initial × multiplier^n up to max (ms). Default 100, 2000, 2. */
  reconnect?: Partial<BackoffOptions>;
  /**
   * At most maxRestarts recoveries of an open connection within withinMs; beyond it the client is
   * `degraded` and its backoff escalates (never `failed`). Default 10 in 30 s.
   */
  restartIntensity?: Partial<IntensityOptions>;
  /**
   * The escalated backoff while degraded: its ceiling doubles per exceeded intensity up to
   * `maxBackoff` (default 30000 ms); the condition resets once the connection stayed up
   * `resetAfterMs` (default 30000 ms).
   */
  escalation?: Partial<EscalationOptions>;
  /**
   * Opt in to giving up on transient faults: `failed` (RestartIntensityError) once this many failed
   * attempts and restarts, or this long, pass without the connection staying up for
   * `escalation.resetAfterMs`. Checked at each failure. Default: never give up.
   */
  giveUpAfter?: GiveUpOptions;
  /** The same for each supervised channel (beyond it, the channel escalates to the connection). */
  channelRestartIntensity?: Partial<IntensityOptions>;
  /**
   * How long `declare()`, `deleteQueue()`, `deleteExchange()` and `unbind()` wait for the
   * connection, in ms (default 30000); past it they reject with NotConnectedError. Publishes are
   * bounded by their publisher's `publishTimeout` instead.
   */
  connectWaitTimeout?: number;
  /**
   * How long close() waits, in ms (default 10000): for each consumer's running handlers (the
   * default `drainTimeout` of consumers), for outstanding confirms and RPC calls, and for the
   * broker's close-ok.
   */
  closeTimeout?: number;
  /**
   * Prometheus metrics (default off): `{ registry, maxLabelValues }`, or `true` for prom-client's
   * default registry. See docs/observability.md and dashboards/metrics.md.
   */
  metrics?: boolean | MetricsOptions;
  /**
   * OpenTelemetry traces (default off): a producer span per publish, a consumer span per
   * delivery, W3C trace context in the message headers. `true` uses the global tracer provider;
   * `{ tracer }` a tracer of your own.
   */
  tracing?: TracingOption;
  /**
   * `"separate"` (default): consumers (and RPC servers' requests, and the topology) use one
   * connection, named `<connectionName>:consume`, and publishers (and RPC clients, and RPC servers'
   * replies) another, named `<connectionName>:publish`, each opened on first use: RabbitMQ blocks a
   * publishing connection during a memory or disk alarm, and consumers on it would stop acking.
   * `"single"`: one connection for everything, named `connectionName`. docs/connecting.md.
   */
  connections?: ConnectionsMode;
}

/**
 * A `state` event: one transition of the supervisor of one of the client's connections (`role`
 * says which; `client.state` is the worst of them all).
 */
export interface StateChange {
  /** The state it left. */
  from: ClientState;
  /** The state it entered. */
  to: ClientState;
  /** Only the error that caused this transition (to recovering, degraded or failed); else undefined. */
  error: WarrenError | Error | undefined;
  /**
   * host:port this transition concerns: the host being tried or used, or (to recovering, degraded,
   * failed) the one that failed. Never credentials.
   */
  host: string;
  /** The restart intensity was exceeded and the connection has not stayed up since (see `degraded`). */
  degraded: boolean;
  /** Which of the client's connections made this transition: consume, publish, or shared (`connections: "single"`). */
  role: ConnectionRole;
  /** That connection's name (`<connectionName>:<role>`, or connectionName when shared; undefined: none). */
  connection: string | undefined;
}

/** The degraded condition began or ended. */
export interface DegradedChange {
  /** True when the condition began, false when the connection stayed up long enough to end it. */
  degraded: boolean;
  /** Escalation level: how often the restart intensity was exceeded since the connection was healthy. */
  level: number;
  /** Which of the client's connections it concerns. */
  role: ConnectionRole;
}

/** The events a Client emits (`client.on(name, listener)`). */
export interface ClientEvents {
  /** Every lifecycle transition of each connection's supervisor (`role` says which connection). */
  state: (change: StateChange) => void;
  /**
   * A fault the application must hear about: a permanent one that ended the client (`recoverable`
   * false), or a reported transient one it keeps retrying (a connection limit, a missing queue, a
   * DNS failure: faults.ts), rate-limited to once per 5 s for the same fault.
   */
  error: (error: WarrenError | Error) => void;
  /** The restart intensity was exceeded (degraded: the backoff escalates), or the connection stayed up again. */
  degraded: (change: DegradedChange) => void;
  /**
   * A server-named queue got a new name after a recovery: `queue` is the name it was first given
   * (what `client.queueName()` and consumers take), `from` its previous name, `to` its new one.
   */
  queueRenamed: (change: { queue: string; from: string; to: string }) => void;
  /** A publisher's channel was closed and opened again because the broker kept nacking on it. */
  channelRenewed: (info: { reason: "nacks" }) => void;
  /**
   * With `credentials`: each refresh of expiring credentials and each failure to get them (a
   * transient failure is also an `error` event, rate-limited).
   */
  credentials: (change: CredentialsChange) => void;
}
