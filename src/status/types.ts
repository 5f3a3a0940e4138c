/**
 * What the status server answers (docs/status.md has the same schema, with examples): the
 * snapshot of /status.json, the events of /events, the bodies of /healthz and /readyz. No
 * behaviour. Hosts are host:port and addresses are redacted URLs: never credentials.
 */
import type { LoopDelayStats } from "../amqp/event-loop.js";
import type { ConsumerState } from "../client/consumer-types.js";
import type { ConnectionRole } from "../client/slot-state.js";
import type { ClientState } from "../observability/observers.js";

/** An error as the status server shows it. */
export interface ErrorInfo {
  /** The class name, e.g. `ConnectionClosedByBroker`. */
  name: string;
  /**
   * The error's string `code`, when it has one: warren's (e.g. `CONNECTION_CLOSED_BY_BROKER`) or Node's (e.g.
   * `ECONNRESET`).
   */
  code?: string;
  /** Its message (never credentials). */
  message: string;
}

/** One transition of the client's supervisor. */
export interface Transition {
  /** When it happened (ISO 8601). */
  time: string;
  /** The state it left. */
  from: ClientState;
  /** The state it entered. */
  to: ClientState;
  /** host:port this transition concerns (the host tried or used, or the one that failed). */
  host: string;
  /** The restart intensity was exceeded and the connection has not stayed up since. */
  degraded: boolean;
  /** The error that caused it (to recovering, degraded or failed only). */
  error?: ErrorInfo;
  /** Which of the client's connections made it: consume, publish, or shared. */
  role?: ConnectionRole;
}

/** The last time an open connection was lost and the client was running again. */
export interface Recovery {
  /** When the client was running again (ISO 8601). */
  time: string;
  /** From the loss to running again, in ms. */
  downMs: number;
  /** What was lost: the error of the transition out of the open connection. */
  reason: ErrorInfo | null;
}

/** The restart intensity now: recoveries within its window, and how many more before `degraded`. */
export interface RestartBudget {
  /** Recoveries of an open connection within the last `withinMs`. */
  restarts: number;
  /** The intensity's limit (`restartIntensity.maxRestarts`, default 10). */
  maxRestarts: number;
  /** The intensity's window, in ms (`restartIntensity.withinMs`, default 30000). */
  withinMs: number;
  /** How many more recoveries within the window before the client is degraded. */
  left: number;
}

/** One of the client's connections (`client.connections`). */
export interface ConnectionStatus {
  /** What it carries: consume (consumers, the topology), publish (publishers, RPC), or shared (`connections: "single"`). */
  role: ConnectionRole;
  /** Its connection_name (`<connectionName>:<role>`), or null. */
  name: string | null;
  /** Its supervisor's state. */
  state: ClientState;
  /** Its degraded condition. */
  degraded: boolean;
  /** host:port it uses or tries; null before its first attempt. */
  host: string | null;
  /** Why the broker blocks it (connection.blocked), or null. */
  blocked: string | null;
}

/** The client part of the snapshot. */
export interface ClientStatus {
  /** The client's state (`client.state`): the worst of its connections'. */
  state: ClientState;
  /** The degraded condition (`client.degraded`). */
  degraded: boolean;
  /** host:port of the live connection (the consume one's, else the publish one's); null while there is none. */
  host: string | null;
  /** The brokers it uses, as URLs without passwords. */
  addresses: string[];
  /** Each host tried so far: attempts and the last error ("Name: message"), or null. */
  hostAttempts: { host: string; attempts: number; lastError: string | null }[];
  /** Why the broker blocks a connection (connection.blocked), or null. */
  blocked: string | null;
  /** The last recovery seen since the status server started, or null. */
  lastRecovery: Recovery | null;
  /** The restart intensity now (`client.restartBudget`). */
  restartBudget: RestartBudget;
  /** When the client entered its current state (ISO 8601), or null before the first transition seen. */
  stateSince: string | null;
  /**
   * Time spent, since the status server started, blocked by the broker (flow control), without a
   * connection after having had one (recovering: from the loss to running again) and degraded, in
   * ms; the current spell included.
   */
  timeIn: { blockedMs: number; recoveringMs: number; degradedMs: number };
  /** Each connection the client opened, with its own state. */
  connections: ConnectionStatus[];
}

/** One consumer in the snapshot (`client.consumers`, RPC servers' included). */
export interface ConsumerStatus {
  /** The queue as given to consume() (the first name of a server-named queue). */
  queue: string;
  /** Its name on the broker now (a server-named queue is renamed by recoveries). */
  queueName: string;
  /** Its machine's state (`consumer.state`). */
  state: ConsumerState;
  /** The channel it consumes on, or null while it has none. */
  channel: number | null;
  /** Its basic.qos prefetch (at least its concurrency). */
  prefetch: number;
  /** Handlers run at once at most; null: unbounded (a manual consumer, `client.messages()`). */
  concurrency: number | null;
  /** Handlers running now. */
  running: number;
  /**
   * Its counts since it started (`consumer.stats`; see ConsumerStats), `lastSubscribeError` null when none.
   */
  stats: {
    delivered: number;
    acked: number;
    failed: number;
    requeued: number;
    retried: number;
    deadLettered: number;
    inFlight: number;
    subscribeErrors: number;
    lastSubscribeError: string | null;
  };
}

/** One publisher in the snapshot (`client.publishers`, the default one included). */
export interface PublisherStatus {
  /** The channel it publishes on, or null while it has none. */
  channel: number | null;
  /** Accepted and not yet confirmed. */
  pending: number;
  /** Rows its outbox holds (0 without one). */
  stored: number;
  /** Rows its outbox set aside as dead letters (0 without one). */
  deadLetters: number;
  /** Nacked publishes sent again, and channels renewed after a nack streak (`publisher.counters`). */
  counters: { nackRetries: number; channelRenewals: number };
  /** Published, confirmed and nacked since it started (`publisher.totals`). */
  totals: { published: number; confirmed: number; nacked: number };
}

/** One RPC client in the snapshot. */
export interface RpcClientStatus {
  /** The channel it calls on, or null while it has none. */
  channel: number | null;
  /** The reply consumer is set up on an open channel. */
  ready: boolean;
  /** Calls sent and awaiting their reply. */
  inFlight: number;
  /** Calls accepted and not yet sent. */
  queued: number;
}

/** One RPC server in the snapshot. */
export interface RpcServerStatus {
  /** The queue it serves. */
  queue: string;
  /** Its consumer's state; `starting` before it exists (while its queue is declared). */
  state: ConsumerState | "starting";
  /** Its consumer's channel, or null while it has none. */
  channel: number | null;
  /** Handlers running now. */
  inFlight: number;
  /** Requests served since it started (any outcome). */
  served: number;
}

/** GET /status.json */
export interface StatusSnapshot {
  /** When it was taken (ISO 8601). */
  time: string;
  /** warren's version. */
  version: string;
  /** When the status server started recording (ISO 8601): transitions and recoveries since then. */
  since: string;
  /** The client and its connection. */
  client: ClientStatus;
  /** Its consumers, until cancelled. */
  consumers: ConsumerStatus[];
  /** Its publishers, closed ones too. */
  publishers: PublisherStatus[];
  /** Its RPC clients and servers. */
  rpc: { clients: RpcClientStatus[]; servers: RpcServerStatus[] };
  /** The last transitions, oldest first (at most `history` of them). */
  transitions: Transition[];
  /** Clients of /events now, and those dropped for reading too slowly. */
  events: { clients: number; dropped: number };
}

/**
 * What the rates count, per second: publishers' `published`, `confirmed`, `nacked`; `retried`:
 * publishes sent again after a nack plus deliveries retried through the retry topology; consumers'
 * `delivered`, `acked`, `rejected` (requeued), `deadLettered`; RPC clients' calls (`rpcCalls`) and
 * RPC servers' requests served (`rpcServed`).
 */
export const RATE_NAMES = [
  "published",
  "confirmed",
  "nacked",
  "retried",
  "delivered",
  "acked",
  "rejected",
  "deadLettered",
  "rpcCalls",
  "rpcServed",
] as const;
export type RateName = (typeof RATE_NAMES)[number];

/** The `rates` event of /events: per second over the last interval, from the counters. */
export type Rates = Record<RateName, number> & {
  /** The end of the interval (ISO 8601). */
  time: string;
  /** Its length in ms. */
  intervalMs: number;
};

/** GET /readyz */
export interface Readiness {
  /** Running, not degraded, and every consumer consuming (the answer is 200; else 503). */
  ready: boolean;
  /** The client's state. */
  state: ClientState;
  /** Why it is not ready (empty when it is). */
  reasons: string[];
}

/** GET /healthz */
export interface Health {
  /** Always "ok": the process answers. */
  status: "ok";
  /** Since the status server started, in seconds. */
  uptimeSeconds: number;
  /** Event-loop delay (node:perf_hooks monitorEventLoopDelay) over the last 10 s window, in ms. */
  eventLoopDelayMs: LoopDelayStats;
}
