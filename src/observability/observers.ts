/**
 * What the client layer reports to observability, and what observability reads from it: the
 * instrumentation interfaces the hot paths call, the outcome and state names metrics label, and
 * the narrow views of consumers and publishers that metrics watch. No imports: src/client and
 * src/observability both depend on this module, never on each other's classes.
 */

/** The connection supervisor's states, as `state` events, `client.state` and metrics name them. */
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

/** A state of the client (its connection supervisor). */
export type ClientState = (typeof CONNECTION_STATES)[number];

// ─── publishing ─────────────────────────────────────────────────────────────

/**
 * Instrumentation of publishes to one exchange (warren's metrics): called synchronously on the
 * hot path, so cheap and never throwing.
 */
export interface PublishStats {
  /** Accepted by publish(). */
  published(): void;
  /** Confirmed by the broker, `seconds` after it was accepted (not given for outbox rows). */
  confirmed(seconds?: number): void;
  /** A basic.nack (each one, retried or not). */
  nacked(): void;
  /** A nacked message sent again. */
  nackRetried(): void;
  /** Returned as unroutable (mandatory). */
  returned(): void;
  /** Sent again after its channel or connection died. */
  republished(): void;
  /** Its promise rejected with `error`. */
  failed(error: Error): void;
}

/** Gives the instrumentation of one exchange's publishes. */
export interface PublisherObserver {
  /** The instrumentation of publishes to exchange `name` ("" for the default exchange). */
  exchange(name: string): PublishStats;
}

/** What metrics read from a publisher when the registry is collected. */
export interface WatchedPublisher {
  gauges(): { unsettled: number; stored: number; deadLetters: number };
}

// ─── consuming ──────────────────────────────────────────────────────────────

/**
 * Instrumentation of one queue's deliveries (warren's metrics): called synchronously on the hot
 * path, so cheap and never throwing.
 */
export interface ConsumeStats {
  /** A delivery arrived. */
  delivered(): void;
  /** The handler settled after `seconds`. */
  handled(seconds: number): void;
  /** Acked (the handler succeeded). */
  acked(): void;
  /** Nacked with requeue. */
  nacked(): void;
  /** Nacked without requeue (dead-lettered by the queue, or dropped), or moved to warren's dead-letter queue. */
  rejected(): void;
  /** Sent to a retry (delay) queue. */
  retried?(): void;
  /** A subscription attempt failed with an error of this `code` (e.g. `QUEUE_NOT_FOUND`). */
  subscribeFailed?(code: string): void;
}

/** What metrics follow of a consumer: its queue, its running handlers, its state changes. */
export interface WatchedConsumer {
  readonly queue: string;
  readonly running: number;
  on(event: "state", fn: (change: { to: string }) => void): unknown;
}

// ─── request/reply (RPC) ────────────────────────────────────────────────────

/** How a call ended, as `warren_rpc_client_calls_total{outcome}` labels it. */
export type RpcCallOutcome =
  /** A reply arrived. */
  | "ok"
  /** An error reply arrived (RpcRemoteError). */
  | "remote_error"
  /** No reply within timeoutMs (RpcCallTimeoutError). */
  | "timeout"
  /** The broker returned the request: no queue is bound for it (UnroutableError). */
  | "unroutable"
  /** Its channel or connection died before the reply (RpcConnectionLostError), retries used up. */
  | "connection_lost"
  /** The RpcClient or the client was closed (ClientClosedError). */
  | "closed"
  /** The broker refused the publish (e.g. 404 no such exchange), or it could not be encoded. */
  | "refused";

/** Every RpcCallOutcome (metrics start a series at 0 for each). */
export const RPC_CALL_OUTCOMES: readonly RpcCallOutcome[] = [
  "ok",
  "remote_error",
  "timeout",
  "unroutable",
  "connection_lost",
  "closed",
  "refused",
];

/** How a request was served, as `warren_rpc_server_requests_total{outcome}` labels it. */
export type RpcServeOutcome =
  /** The handler succeeded and its reply was sent. */
  | "ok"
  /** The handler threw: an error reply was sent. */
  | "error"
  /** The request had no replyTo: acked and dropped (the `dropped` event). */
  | "no_reply_to"
  /** The reply could not be sent (no channel): the request is nacked, the broker redelivers it. */
  | "reply_failed";

/** Every RpcServeOutcome (metrics start a series at 0 for each). */
export const RPC_SERVE_OUTCOMES: readonly RpcServeOutcome[] = ["ok", "error", "no_reply_to", "reply_failed"];

/** Instrumentation of an RpcClient (warren's metrics): cheap, never throwing. */
export interface RpcClientStats {
  /** A call settled; `seconds` from call() to the settlement. */
  settled(outcome: RpcCallOutcome, seconds: number): void;
  /** A reply whose correlationId matches no outstanding call (late, after a timeout) was dropped. */
  droppedReply(): void;
  /** A call was sent again after its channel died (`retry`). */
  retried(): void;
}

/** Instrumentation of an RpcServer's queue. */
export interface RpcServerStats {
  /** A request was served with `outcome`, `seconds` after it arrived. */
  served(outcome: RpcServeOutcome, seconds: number): void;
}
