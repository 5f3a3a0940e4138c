/**
 * warren's one error tree. Every error has a `name`, a stable string `code`, a
 * `recoverable` flag (would reconnecting / reopening the channel help?) and an
 * optional `cause`. Messages say what to do next. Credentials never appear here.
 * Which faults are transient and which permanent is decided in one place: faults.ts.
 */
import {
  brokerCloseIsTransient,
  type CredentialsFault,
  credentialsFaultIsTransient,
  sqliteFaultIsTransient,
} from "./faults.js";

/**
 * The root of warren's errors: `instanceof WarrenError` tells them from others. `name` is the
 * class's name; `cause` (ErrorOptions) the underlying error, when there is one.
 */
export abstract class WarrenError extends Error {
  /** A stable string per kind of error (e.g. "CONNECTION_LIMIT"): match on it rather than on messages. */
  abstract readonly code: string;
  /** True when reconnecting (connection errors) or reopening the channel (channel errors) may succeed. */
  abstract readonly recoverable: boolean;
  /** `message` says what went wrong and what to do next; `options.cause` is kept as `cause`. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
  }
}

// ─── codec ──────────────────────────────────────────────────────────────────

/** A value could not be encoded or decoded (bad field-table type, string too long, truncated data). */
export class FieldTableError extends WarrenError {
  readonly code = "FIELD_TABLE_ERROR";
  readonly recoverable = false;
}

/** A frame larger than the negotiated frame_max, or a message larger than maxMessageSize, was offered. */
export class FrameTooLargeError extends WarrenError {
  readonly code = "FRAME_TOO_LARGE";
  readonly recoverable = false;
}

// ─── configuration ──────────────────────────────────────────────────────────

/** An AMQP URL or an option is invalid. The message never contains the password. */
export class ConfigError extends WarrenError {
  readonly code = "CONFIG_ERROR";
  readonly recoverable = false;
}

/**
 * An optional peer package a feature needs is not installed: prom-client for metrics
 * (`connect({ metrics })`, `serveMetrics()`), better-sqlite3 for the durable outbox
 * (`client.publisher({ outbox })`). Thrown at once by the call that needs it; the message names the
 * package and the command that installs it. docs/client.md, "Installing: what is optional".
 */
export class MissingDependencyError extends WarrenError {
  readonly code = "MISSING_DEPENDENCY";
  readonly recoverable = false;
  /** The npm package to install, e.g. "prom-client". */
  readonly packageName: string;
  /** `message` names the package and the feature; `options.cause` is Node's MODULE_NOT_FOUND error. */
  constructor(message: string, options: ErrorOptions & { packageName: string }) {
    super(message, options);
    this.packageName = options.packageName;
  }
}

// ─── connection level ───────────────────────────────────────────────────────

/** ErrorOptions of the connection-level errors. */
export interface ConnectionErrorOptions extends ErrorOptions {
  /** See ConnectionError.eventLoopStallMs. */
  eventLoopStallMs?: number | undefined;
}

/** Errors of the connection level: the connection failed, was refused, or is not there. */
export abstract class ConnectionError extends WarrenError {
  /**
   * How long (ms) the event loop had been blocked, when the connection was lost (heartbeat timeout,
   * socket closed or reset by the broker) soon after a block of at least one heartbeat interval:
   * the block, not the network, is the likely cause, and the message says so. Undefined otherwise.
   */
  declare readonly eventLoopStallMs: number | undefined;
  /** `options.eventLoopStallMs` sets `eventLoopStallMs`. */
  constructor(message: string, options?: ConnectionErrorOptions) {
    super(message, options);
    // Only when there was a stall: no own property otherwise.
    if (options?.eventLoopStallMs !== undefined) this.eventLoopStallMs = options.eventLoopStallMs;
  }
}

/** The peer sent bytes that are not valid AMQP frames (bad frame end, oversized, unknown type); it ends the connection. */
export class FrameError extends ConnectionError {
  readonly code = "FRAME_ERROR";
  readonly recoverable = true;
  /** AMQP reply code warren sends in its connection.close (501 frame-error, 505 unexpected-frame…). */
  readonly replyCode: number;
  /** `options.replyCode` defaults to 501 (frame-error). */
  constructor(message: string, options?: ErrorOptions & { replyCode?: number }) {
    super(message, options);
    this.replyCode = options?.replyCode ?? 501;
  }
}

/**
 * The TCP/TLS socket failed (refused, reset, DNS…); a certificate that is not trusted is its subclass
 * TlsError.
 */
export class SocketError extends ConnectionError {
  readonly code: string = "SOCKET_ERROR";
  readonly recoverable: boolean = true;
}

/** TLS verification failed: the server's certificate is not trusted or does not match. Not retried. */
export class TlsError extends SocketError {
  override readonly code = "TLS_ERROR";
  override readonly recoverable = false;
}

/** No handshake completed within connectionTimeout. */
export class ConnectTimeoutError extends ConnectionError {
  readonly code = "CONNECT_TIMEOUT";
  readonly recoverable = true;
}

/** Nothing was heard from the broker for two heartbeat intervals. */
export class HeartbeatTimeoutError extends ConnectionError {
  readonly code = "HEARTBEAT_TIMEOUT";
  readonly recoverable = true;
}

/** The broker refused the credentials (authentication_failure_close or 403 on start-ok). */
export class AuthenticationError extends ConnectionError {
  readonly code = "AUTHENTICATION_FAILED";
  readonly recoverable = false;
}

/**
 * The credentials of `connect({ credentials })` could not be had or kept fresh; `reason` says how.
 * Recoverable (retried with backoff, and reported) unless `reason` is "malformed": "provider" (the
 * provider threw, rejected or did not answer in time), "refused" (the broker refused a refreshed
 * secret: the connection closed and is opened again with new credentials), "expired" (no refresh
 * succeeded before they expired: the connection is opened again). "malformed": the provider's
 * answer is not `{ username, password, expiresAt? }`; fix the provider. Messages never contain a
 * password or token.
 */
export class CredentialsError extends ConnectionError {
  readonly code = "CREDENTIALS_ERROR";
  /** False only for "malformed" (the fault table, faults.ts). */
  readonly recoverable: boolean;
  /** What went wrong: provider, malformed, refused or expired. */
  readonly reason: CredentialsFault;
  /** `recoverable` is decided by `options.reason`. */
  constructor(message: string, options: ErrorOptions & { reason: CredentialsFault }) {
    super(message, options);
    this.reason = options.reason;
    this.recoverable = credentialsFaultIsTransient(options.reason);
  }
}

/** The broker did not offer a mechanism we can use, or spoke another protocol version. */
export class HandshakeError extends ConnectionError {
  readonly code = "HANDSHAKE_FAILED";
  readonly recoverable = false;
}

/** The fields of a connection.close or channel.close the broker sent. */
export interface BrokerCloseDetails {
  /** AMQP reply code, e.g. 320 CONNECTION_FORCED, 404 NOT_FOUND, 406 PRECONDITION_FAILED. */
  replyCode: number;
  /** The broker's explanation, e.g. "NOT_FOUND - no queue 'jobs' in vhost '/'". */
  replyText: string;
  /** Class of the method that caused the close (0 when none). */
  classId: number;
  /** Method, within classId, that caused the close (0 when none). */
  methodId: number;
  /** e.g. "queue.declare", when the close names a method. */
  methodName?: string | undefined;
}

function describeClose(scope: string, d: BrokerCloseDetails): string {
  const m = d.methodName ? ` in reply to ${d.methodName}` : "";
  return `${scope} closed by broker: ${d.replyCode} ${d.replyText}${m}`;
}

/** The broker closed the connection (connection.close). */
export class ConnectionClosedByBroker extends ConnectionError {
  readonly code: string = "CONNECTION_CLOSED_BY_BROKER";
  /**
   * Decided by the reply code (the fault table, faults.ts): false for 402 INVALID_PATH, 403
   * ACCESS_REFUSED, 530 NOT_ALLOWED and 540 NOT_IMPLEMENTED, which a reconnection would meet again;
   * true for any other (320 CONNECTION_FORCED, 501–506, 541, and codes the table does not know).
   */
  readonly recoverable: boolean;
  /** AMQP reply code, e.g. 320 CONNECTION_FORCED (a broker shutting down or close_connection). */
  readonly replyCode: number;
  /** The broker's explanation. */
  readonly replyText: string;
  /** Class of the method that caused the close (0 when none). */
  readonly classId: number;
  /** Method, within classId, that caused the close (0 when none). */
  readonly methodId: number;
  /** The method that caused the close, e.g. "exchange.declare", when the close names one. */
  readonly methodName: string | undefined;
  /** The message is built from `details` ("connection closed by broker: 320 …"). */
  constructor(details: BrokerCloseDetails, options?: ErrorOptions) {
    super(describeClose("connection", details), options);
    this.replyCode = details.replyCode;
    this.replyText = details.replyText;
    this.classId = details.classId;
    this.methodId = details.methodId;
    this.methodName = details.methodName;
    // The fault table (faults.ts) decides: 320 connection-forced, frame and resource errors, 541 are
    // worth a reconnect; 402/403/530 (credentials, vhost) are not.
    this.recoverable = brokerCloseIsTransient(details.replyCode);
  }
}

/**
 * The broker refused the connection because a connection limit is reached (530 NOT_ALLOWED
 * "... connection limit (N) is reached": the vhost's max-connections, the user's, or the node's).
 * Transient: typically a rolling deploy; the client keeps trying with backoff and reports each refusal.
 */
export class ConnectionLimitError extends ConnectionClosedByBroker {
  override readonly code = "CONNECTION_LIMIT";
  /** Always true: a connection is freed sooner or later. */
  override readonly recoverable = true;
}

/** The vhost does not exist or the user may not use it (530 NOT_ALLOWED on connection.open). */
export class VhostNotAllowedError extends ConnectionClosedByBroker {
  override readonly code = "VHOST_NOT_ALLOWED";
  /** Always false: create the vhost, or grant the user permissions on it. */
  override readonly recoverable = false;
}

/**
 * The broker closed the connection because a request needs a deprecated feature it does not permit
 * (541 INTERNAL_ERROR "Feature `transient_nonexcl_queues` is deprecated…": RabbitMQ 4.3 refuses a
 * transient non-exclusive queue by default). Permanent: every reconnection that asked again would be
 * closed the same way. docs/rabbitmq-4.md.
 */
export class DeprecatedFeatureError extends ConnectionClosedByBroker {
  override readonly code = "DEPRECATED_FEATURE";
  /** Always false: stop using the feature, or permit it on every node of the cluster. */
  override readonly recoverable = false;
  /** The feature the broker named, e.g. "transient_nonexcl_queues". */
  readonly feature: string;
  constructor(details: BrokerCloseDetails & { feature: string }, options?: ErrorOptions) {
    super({ ...details, replyText: `${details.replyText} (${deprecatedAdvice(details.feature)})` }, options);
    this.feature = details.feature;
  }
}

/** What to do about a deprecated feature the broker refused. */
function deprecatedAdvice(feature: string): string {
  const permit = `or permit it on every node: deprecated_features.permit.${feature} = true in rabbitmq.conf`;
  return feature === "transient_nonexcl_queues"
    ? `a queue that is neither durable nor exclusive is refused: declare it durable (declare()'s default for a named queue) or exclusive, ${permit}`
    : `stop using the deprecated feature ${feature}, ${permit}`;
}

/**
 * The client gave up, as the caller asked (`giveUpAfter`): it could not stay connected for that many
 * attempts or that long. Without `giveUpAfter` the client never gives up on a transient fault.
 */
export class RestartIntensityError extends ConnectionError {
  readonly code = "RESTART_INTENSITY_EXCEEDED";
  readonly recoverable = false;
}

/**
 * The client (or the publisher, consumer or RPC client or server the operation belongs to) was
 * closed before the operation completed, or the client failed: then `cause` is the error that
 * failed it.
 */
export class ClientClosedError extends ConnectionError {
  readonly code = "CLIENT_CLOSED";
  readonly recoverable = false;
}

/**
 * An operation waited longer than its timeout for the connection to come back: `declare()`,
 * `deleteQueue()`, `deleteExchange()` and `unbind()` after `connectWaitTimeout`. The client keeps
 * trying: call again later.
 */
export class NotConnectedError extends ConnectionError {
  readonly code = "NOT_CONNECTED";
  readonly recoverable = true;
}

/** One host `ready({ timeoutMs })` tried: how often, and its last error (no credentials). */
export interface HostAttempts {
  /** host:port */
  host: string;
  /** Connection attempts made on it. */
  attempts: number;
  /** "Name: message" of its last failure, undefined if none failed yet. */
  lastError: string | undefined;
}

/**
 * `client.ready({ timeoutMs })` ran out of time; `hosts` lists each host tried and its last error.
 * The client goes on recovering (close() it to stop).
 */
export class ReadyTimeoutError extends ConnectionError {
  readonly code = "READY_TIMEOUT";
  readonly recoverable = true;
  /** Each host tried: its attempts and last error. */
  readonly hosts: readonly HostAttempts[];
  /** The message names `timeoutMs` (ms) and each host with its attempts and last error. */
  constructor(timeoutMs: number, hosts: readonly HostAttempts[], options?: ErrorOptions) {
    const tried =
      hosts.length === 0
        ? "no host answered yet"
        : hosts
            .map(
              (h) =>
                `${h.host} (${h.attempts} attempt${h.attempts === 1 ? "" : "s"}${h.lastError ? `, last: ${h.lastError}` : ""})`,
            )
            .join("; ");
    super(
      `not ready within ${timeoutMs} ms: ${tried}. Check that a broker runs there and is reachable; the client keeps trying until closed`,
      options,
    );
    this.hosts = hosts;
  }
}

/**
 * An operation was attempted on a connection that is closed or closing, or was pending on a
 * channel when its connection closed (`cause` says why it closed).
 */
export class ConnectionClosedError extends ConnectionError {
  readonly code = "CONNECTION_CLOSED";
  readonly recoverable = true;
}

// ─── channel level ──────────────────────────────────────────────────────────

/** Errors of the channel level: one channel or one operation failed; the connection is fine. */
export abstract class ChannelError extends WarrenError {}

/** The broker closed the channel (404 not-found, 406 precondition-failed, 403 access-refused, 405 locked…). */
export class ChannelClosedByBroker extends ChannelError {
  readonly code = "CHANNEL_CLOSED_BY_BROKER";
  readonly recoverable = true;
  /**
   * AMQP reply code, e.g. 404 NOT_FOUND, 406 PRECONDITION_FAILED, 403 ACCESS_REFUSED, 405 RESOURCE_LOCKED.
   */
  readonly replyCode: number;
  /** The broker's explanation, e.g. "NOT_FOUND - no exchange 'orders' in vhost '/'". */
  readonly replyText: string;
  /** Class of the method that caused the close (0 when none). */
  readonly classId: number;
  /** Method, within classId, that caused the close (0 when none). */
  readonly methodId: number;
  /** The method that caused the close, e.g. "basic.publish" or "queue.declare", when the close names one. */
  readonly methodName: string | undefined;
  /** The message is built from `details` ("channel closed by broker: 404 …"). */
  constructor(details: BrokerCloseDetails, options?: ErrorOptions) {
    super(describeClose("channel", details), options);
    this.replyCode = details.replyCode;
    this.replyText = details.replyText;
    this.classId = details.classId;
    this.methodId = details.methodId;
    this.methodName = details.methodName;
  }
}

/**
 * A consumer's queue does not exist (404 NOT_FOUND on basic.consume) and was not declared by this
 * client. Reported at once (the client's `error` event, `consumer.ready()`), and retried with backoff:
 * the consumer starts by itself once the queue is declared.
 */
export class QueueNotFoundError extends ChannelError {
  readonly code = "QUEUE_NOT_FOUND";
  readonly recoverable = true;
  /** The queue's name. */
  readonly queue: string;
  /** The message names `queue` and what to do. */
  constructor(queue: string, options?: ErrorOptions) {
    super(
      `queue "${queue}" does not exist: check its name, or declare it (client.declare) before consuming; the consumer retries and starts once it exists`,
      options,
    );
    this.queue = queue;
  }
}

/**
 * An operation was attempted on a channel that is closed, or was pending (a method, an unconfirmed
 * publish) when it closed; `cause` says why it closed, when it was not closed on purpose.
 */
export class ChannelClosedError extends ChannelError {
  readonly code = "CHANNEL_CLOSED";
  readonly recoverable = true;
}

/** All channel ids up to channel_max are in use. */
export class ChannelLimitError extends ChannelError {
  readonly code = "CHANNEL_LIMIT";
  readonly recoverable = false;
}

/** The broker answered basic.nack for a publish: it did not take responsibility for it. */
export class PublishNackedError extends ChannelError {
  readonly code = "PUBLISH_NACKED";
  readonly recoverable = true;
  /** How many times the broker nacked it (a publisher retries nacks before giving up). */
  readonly attempts: number;
  /** `options.attempts` defaults to 1. */
  constructor(message: string, options?: ErrorOptions & { attempts?: number }) {
    super(message, options);
    this.attempts = options?.attempts ?? 1;
  }
}

/** A mandatory publish could not be routed to any queue (basic.return). */
export class UnroutableError extends ChannelError {
  readonly code = "UNROUTABLE";
  readonly recoverable = false;
  /** basic.return's reply code: 312 NO_ROUTE. */
  readonly replyCode: number;
  /** basic.return's reply text, e.g. "NO_ROUTE". */
  readonly replyText: string;
  /** The exchange the message was published to. */
  readonly exchange: string;
  /** The routing key no queue was bound for. */
  readonly routingKey: string;
  /** The message is built from `details` (basic.return's fields). */
  constructor(
    details: { replyCode: number; replyText: string; exchange: string; routingKey: string },
    options?: ErrorOptions,
  ) {
    super(
      `message returned by broker: ${details.replyCode} ${details.replyText} (exchange "${details.exchange}", routing key "${details.routingKey}")`,
      options,
    );
    this.replyCode = details.replyCode;
    this.replyText = details.replyText;
    this.exchange = details.exchange;
    this.routingKey = details.routingKey;
  }
}

/**
 * An operation waited longer than its bound: a publish not sent within `publishTimeout` (e.g. while
 * the broker blocks the connection), a handler still running after the consumer's `timeoutMs`, or
 * a handler a drain stopped waiting for (its `signal`'s reason).
 */
export class TimeoutError extends WarrenError {
  readonly code = "TIMEOUT";
  readonly recoverable = true;
}

/**
 * A synchronous AMQP method (declare, bind, get, close…) got no reply within `methodTimeout`: its
 * channel was closed, since later replies could no longer be matched. Not an RPC call.
 */
export class MethodTimeoutError extends ChannelError {
  readonly code = "METHOD_TIMEOUT";
  readonly recoverable = true;
}

/** @deprecated renamed MethodTimeoutError (a synchronous AMQP method, not an RPC call). */
export const RpcTimeoutError = MethodTimeoutError;
/** @deprecated renamed MethodTimeoutError. */
export type RpcTimeoutError = MethodTimeoutError;

// ─── request/reply (RPC over direct reply-to; not the synchronous AMQP methods above) ──────

/** An RPC call (`rpcClient().call()`) got no reply within its timeoutMs; a later reply is dropped. */
export class RpcCallTimeoutError extends WarrenError {
  readonly code = "RPC_CALL_TIMEOUT";
  readonly recoverable = true;
}

/**
 * The channel or connection that carried an RPC request closed before its reply came: the reply
 * can no longer reach this client. The server may have processed the request; call again (or
 * pass `retry` for idempotent requests).
 */
export class RpcConnectionLostError extends ConnectionError {
  readonly code = "RPC_CONNECTION_LOST";
  readonly recoverable = true;
}

/** The RPC server's handler failed; `remoteName`, `remoteMessage` (and `remoteCode`) are what it sent back. */
export class RpcRemoteError extends WarrenError {
  readonly code = "RPC_REMOTE_ERROR";
  readonly recoverable = false;
  /** The `name` of the error the handler threw, e.g. "TypeError". */
  readonly remoteName: string;
  /** Its message. */
  readonly remoteMessage: string;
  /** Its string `code`, when it had one (warren's errors do). */
  readonly remoteCode: string | undefined;
  /** `remote` is the error reply's header: name, message and code. */
  constructor(remote: { name: string; message: string; code?: string | undefined }, options?: ErrorOptions) {
    super(`the RPC server failed: ${remote.name}: ${remote.message}`, options);
    this.remoteName = remote.name;
    this.remoteMessage = remote.message;
    this.remoteCode = remote.code;
  }
}

// ─── durable outbox (SQLite) ────────────────────────────────────────────────

/**
 * The outbox's SQLite file failed: `sqliteCode` is SQLite's (extended) result code, `path` the file.
 * Recoverable only when the file is busy or locked by another connection or process: publishes wait
 * and retry until publishTimeout, then reject with this error. Any other code (not a database,
 * corrupt, read-only, disk full, I/O error, cannot open) is permanent: `client.publisher()` throws
 * it, or that publish rejects, at once; nothing accepted is dropped in silence.
 */
export class OutboxError extends WarrenError {
  readonly code = "OUTBOX_ERROR";
  /** True only for a file busy or locked by another connection or process (SQLITE_BUSY, SQLITE_LOCKED). */
  readonly recoverable: boolean;
  /** SQLite's (extended) result code, e.g. "SQLITE_BUSY", "SQLITE_CORRUPT", "SQLITE_FULL". */
  readonly sqliteCode: string;
  /** The outbox file. */
  readonly path: string;
  /** `recoverable` is decided by `options.sqliteCode` (the fault table, faults.ts). */
  constructor(message: string, options: ErrorOptions & { sqliteCode: string; path: string }) {
    super(message, options);
    this.sqliteCode = options.sqliteCode;
    this.path = options.path;
    this.recoverable = sqliteFaultIsTransient(options.sqliteCode);
  }
}
