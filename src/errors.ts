/**
 * warren's one error tree. Every error has a `name`, a stable string `code`, a
 * `recoverable` flag (would reconnecting / reopening the channel help?) and an
 * optional `cause`. Messages say what to do next. Credentials never appear here.
 */

export abstract class WarrenError extends Error {
  abstract readonly code: string;
  /** True when reconnecting (connection errors) or reopening the channel (channel errors) may succeed. */
  abstract readonly recoverable: boolean;
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

// ─── connection level ───────────────────────────────────────────────────────

export abstract class ConnectionError extends WarrenError {}

/** The peer sent bytes that are not valid AMQP frames (bad frame end, oversized, unknown type); it ends the connection. */
export class FrameError extends ConnectionError {
  readonly code = "FRAME_ERROR";
  readonly recoverable = true;
  /** AMQP reply code warren sends in its connection.close (501 frame-error, 505 unexpected-frame…). */
  readonly replyCode: number;
  constructor(message: string, options?: ErrorOptions & { replyCode?: number }) {
    super(message, options);
    this.replyCode = options?.replyCode ?? 501;
  }
}

/** The TCP/TLS socket failed (refused, reset, DNS, certificate rejected…). */
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

/** The broker did not offer a mechanism we can use, or spoke another protocol version. */
export class HandshakeError extends ConnectionError {
  readonly code = "HANDSHAKE_FAILED";
  readonly recoverable = false;
}

export interface BrokerCloseDetails {
  replyCode: number;
  replyText: string;
  classId: number;
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
  readonly recoverable: boolean;
  readonly replyCode: number;
  readonly replyText: string;
  readonly classId: number;
  readonly methodId: number;
  readonly methodName: string | undefined;
  constructor(details: BrokerCloseDetails, options?: ErrorOptions) {
    super(describeClose("connection", details), options);
    this.replyCode = details.replyCode;
    this.replyText = details.replyText;
    this.classId = details.classId;
    this.methodId = details.methodId;
    this.methodName = details.methodName;
    // 320 connection-forced (broker shutdown, rabbitmqctl close_connection) and resource errors are
    // worth a reconnect; 530 not-allowed (vhost) and 403 are not.
    this.recoverable = details.replyCode === 320 || details.replyCode === 506 || details.replyCode === 541;
  }
}

/** The vhost does not exist or the user may not use it (530 NOT_ALLOWED on connection.open). */
export class VhostNotAllowedError extends ConnectionClosedByBroker {
  override readonly code = "VHOST_NOT_ALLOWED";
  override readonly recoverable = false;
}

/** A supervisor restarted its children more often than its restart intensity allows, and gave up. */
export class RestartIntensityError extends ConnectionError {
  readonly code = "RESTART_INTENSITY_EXCEEDED";
  readonly recoverable = false;
}

/** The client was closed (by the application) while the operation was waiting. */
export class ClientClosedError extends ConnectionError {
  readonly code = "CLIENT_CLOSED";
  readonly recoverable = false;
}

/** An operation waited longer than its timeout for the connection to come back. */
export class NotConnectedError extends ConnectionError {
  readonly code = "NOT_CONNECTED";
  readonly recoverable = true;
}

/** An operation was attempted on a connection that is closed or closing. */
export class ConnectionClosedError extends ConnectionError {
  readonly code = "CONNECTION_CLOSED";
  readonly recoverable = true;
}

// ─── channel level ──────────────────────────────────────────────────────────

export abstract class ChannelError extends WarrenError {}

/** The broker closed the channel (404 not-found, 406 precondition-failed, 403 access-refused, 405 locked…). */
export class ChannelClosedByBroker extends ChannelError {
  readonly code = "CHANNEL_CLOSED_BY_BROKER";
  readonly recoverable = true;
  readonly replyCode: number;
  readonly replyText: string;
  readonly classId: number;
  readonly methodId: number;
  readonly methodName: string | undefined;
  constructor(details: BrokerCloseDetails, options?: ErrorOptions) {
    super(describeClose("channel", details), options);
    this.replyCode = details.replyCode;
    this.replyText = details.replyText;
    this.classId = details.classId;
    this.methodId = details.methodId;
    this.methodName = details.methodName;
  }
}

/** An operation was attempted on a channel that is closed (see `cause` for why it closed). */
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
  constructor(message: string, options?: ErrorOptions & { attempts?: number }) {
    super(message, options);
    this.attempts = options?.attempts ?? 1;
  }
}

/** A mandatory publish could not be routed to any queue (basic.return). */
export class UnroutableError extends ChannelError {
  readonly code = "UNROUTABLE";
  readonly recoverable = false;
  readonly replyCode: number;
  readonly replyText: string;
  readonly exchange: string;
  readonly routingKey: string;
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

/** An operation waited longer than its bound (e.g. publishing while the broker blocks the connection). */
export class TimeoutError extends WarrenError {
  readonly code = "TIMEOUT";
  readonly recoverable = true;
}

/** A synchronous method got no reply in time. */
export class RpcTimeoutError extends ChannelError {
  readonly code = "RPC_TIMEOUT";
  readonly recoverable = true;
}

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
  readonly remoteName: string;
  readonly remoteMessage: string;
  readonly remoteCode: string | undefined;
  constructor(remote: { name: string; message: string; code?: string | undefined }, options?: ErrorOptions) {
    super(`the RPC server failed: ${remote.name}: ${remote.message}`, options);
    this.remoteName = remote.name;
    this.remoteMessage = remote.message;
    this.remoteCode = remote.code;
  }
}
