/**
 * The fault table: one classification of every fault warren meets, used by every layer.
 *
 *   transient  recovered for ever (reconnect, reopen, resubscribe, re-publish), with growing backoff;
 *              visible in state events and metrics. `reported` ones are also emitted at once as the
 *              client's `error` event (rate-limited), because they are often a mistake that looks
 *              transient: a connection limit, a queue or host name that does not exist.
 *   permanent  the client (or that one operation) fails at once with a typed error that names what is
 *              wrong; retrying could not help.
 *
 * The error classes carry the outcome as `recoverable` (errors.ts asks this module for broker close
 * codes); machines and helpers read `recoverable`, `isReported()` and `isCallerFault()` and nothing
 * else, so a fault's class is decided here once. docs/faults.md is the same table for people (a unit
 * test keeps the two in step).
 *
 * No imports: errors.ts imports this module.
 */

/** transient: recovered for ever, with backoff; permanent: fails at once with a typed error. */
export type FaultClass = "transient" | "permanent";

/** One row of the table. */
export interface FaultRow {
  /** The fault, as a person would name it. */
  fault: string;
  /** Recovered for ever, or failing at once. */
  class: FaultClass;
  /** Transient, but also emitted as the client's `error` event (rate-limited). */
  reported: boolean;
  /** The error's class name (or what shows instead, in parentheses, e.g. "(state blocked)"). */
  error: string;
  /** The error's `code` ("-" when the fault is a state, not an error). */
  code: string;
  /** What warren does about it. */
  action: string;
}

/** The fault table, one row per fault; docs/faults.md prints the same rows. */
export const FAULTS: readonly FaultRow[] = [
  {
    fault: "TCP connection refused, reset, timed out, host or network unreachable",
    class: "transient",
    reported: false,
    error: "SocketError",
    code: "SOCKET_ERROR",
    action: "reconnect with backoff; the host rests and the next one is tried",
  },
  {
    fault: "DNS name not found (ENOTFOUND) or DNS not answering (EAI_AGAIN)",
    class: "transient",
    reported: true,
    error: "SocketError",
    code: "SOCKET_ERROR",
    action: "reconnect with backoff; reported, since a wrong host name looks the same",
  },
  {
    fault: "no handshake within connectionTimeout",
    class: "transient",
    reported: false,
    error: "ConnectTimeoutError",
    code: "CONNECT_TIMEOUT",
    action: "reconnect with backoff",
  },
  {
    fault: "TLS handshake cut (reset, closed, protocol error)",
    class: "transient",
    reported: false,
    error: "SocketError",
    code: "SOCKET_ERROR",
    action: "reconnect with backoff",
  },
  {
    fault: "TLS trust failure (certificate untrusted, expired, or for another name)",
    class: "permanent",
    reported: false,
    error: "TlsError",
    code: "TLS_ERROR",
    action: "fail: pass the broker's CA as tls.ca, or connect to the name on its certificate",
  },
  {
    fault: "the peer does not speak AMQP 0-9-1 (wrong port)",
    class: "permanent",
    reported: false,
    error: "HandshakeError",
    code: "HANDSHAKE_FAILED",
    action: "fail: check the port (5672, or 5671 for TLS)",
  },
  {
    fault: "credentials refused (403 ACCESS_REFUSED at login)",
    class: "permanent",
    reported: false,
    error: "AuthenticationError",
    code: "AUTHENTICATION_FAILED",
    action:
      "fail: check the user name and password (with a credentials provider: after one more login with new credentials from it)",
  },
  {
    fault:
      "the credentials provider (connect({ credentials })) throws, rejects or does not answer within credentialRefresh.timeoutMs",
    class: "transient",
    reported: true,
    error: "CredentialsError",
    code: "CREDENTIALS_ERROR",
    action:
      "before a connection attempt: the attempt fails and is retried with the reconnect backoff; on an open connection: the refresh is retried with backoff until the credentials expire",
  },
  {
    fault:
      "the credentials provider returns something malformed (no string username and password, a bad expiresAt)",
    class: "permanent",
    reported: false,
    error: "CredentialsError",
    code: "CREDENTIALS_ERROR",
    action: "fail: the provider must resolve to { username, password, expiresAt? }",
  },
  {
    fault: "a refreshed secret refused by the broker (530 NOT_ALLOWED in reply to connection.update-secret)",
    class: "transient",
    reported: true,
    error: "CredentialsError",
    code: "CREDENTIALS_ERROR",
    action:
      "reconnect with new credentials from the provider; a login refused with those too is AuthenticationError",
  },
  {
    fault: "credentials expiring on an open connection before a refresh succeeded",
    class: "transient",
    reported: true,
    error: "CredentialsError",
    code: "CREDENTIALS_ERROR",
    action:
      "the connection is closed just before they expire and opened again with new credentials (the broker would refuse its operations)",
  },
  {
    fault: "vhost missing or not allowed for the user (530 NOT_ALLOWED, 403 on connection.open)",
    class: "permanent",
    reported: false,
    error: "VhostNotAllowedError",
    code: "VHOST_NOT_ALLOWED",
    action: "fail: create the vhost, or grant the user permissions on it",
  },
  {
    fault: "connection limit reached (530 NOT_ALLOWED: vhost, user or node connection limit)",
    class: "transient",
    reported: true,
    error: "ConnectionLimitError",
    code: "CONNECTION_LIMIT",
    action: "reconnect with backoff; connects once a connection is freed",
  },
  {
    fault: "heartbeat timeout (nothing heard for two intervals)",
    class: "transient",
    reported: false,
    error: "HeartbeatTimeoutError",
    code: "HEARTBEAT_TIMEOUT",
    action: "reconnect with backoff",
  },
  {
    fault:
      "the event loop blocked for a heartbeat interval or more (CPU-bound work), then the connection lost",
    class: "transient",
    reported: false,
    error: "SocketError / HeartbeatTimeoutError",
    code: "SOCKET_ERROR / HEARTBEAT_TIMEOUT",
    action:
      "reconnect with backoff; the message says how long the loop was blocked, and eventLoopStallMs holds it",
  },
  {
    fault: "connection closed by the broker: 320 CONNECTION_FORCED (shutdown, close_connection)",
    class: "transient",
    reported: false,
    error: "ConnectionClosedByBroker",
    code: "CONNECTION_CLOSED_BY_BROKER",
    action: "reconnect with backoff, next host first",
  },
  {
    fault: "connection closed by the broker: 541 INTERNAL_ERROR, 506 RESOURCE_ERROR",
    class: "transient",
    reported: false,
    error: "ConnectionClosedByBroker",
    code: "CONNECTION_CLOSED_BY_BROKER",
    action: "reconnect with backoff",
  },
  {
    fault:
      'a deprecated feature the broker does not permit (541 INTERNAL_ERROR "Feature `…` is deprecated", e.g. a transient non-exclusive queue on RabbitMQ 4.3)',
    class: "permanent",
    reported: false,
    error: "DeprecatedFeatureError",
    code: "DEPRECATED_FEATURE",
    action:
      "fail: the same request would close every connection again; stop using the feature (a queue durable or exclusive), or permit it on every node",
  },
  {
    fault:
      "connection closed for a protocol error: 501-505 (frame, syntax, command, channel, unexpected frame)",
    class: "transient",
    reported: false,
    error: "ConnectionClosedByBroker / FrameError",
    code: "CONNECTION_CLOSED_BY_BROKER / FRAME_ERROR",
    action: "reconnect with backoff",
  },
  {
    fault: "connection closed by the broker: 540 NOT_IMPLEMENTED (a method this broker does not support)",
    class: "permanent",
    reported: false,
    error: "ConnectionClosedByBroker",
    code: "CONNECTION_CLOSED_BY_BROKER",
    action: "fail: the same request would be refused again; do not use that feature with this broker",
  },
  {
    fault: "connection closed by the broker with a code not in this table",
    class: "transient",
    reported: true,
    error: "ConnectionClosedByBroker",
    code: "CONNECTION_CLOSED_BY_BROKER",
    action: "reconnect with backoff; reported",
  },
  {
    fault: "restarts faster than the restart intensity (a flapping link)",
    class: "transient",
    reported: false,
    error: "(the fault that caused them)",
    code: "-",
    action:
      "`degraded`: the backoff grows up to 30 s, resets after the connection stayed up; `failed` only with giveUpAfter",
  },
  {
    fault: "the caller's limit ran out (giveUpAfter)",
    class: "permanent",
    reported: false,
    error: "RestartIntensityError",
    code: "RESTART_INTENSITY_EXCEEDED",
    action: "fail (only when the caller opted in)",
  },
  {
    fault: "memory or disk alarm (connection.blocked)",
    class: "transient",
    reported: false,
    error: "(state blocked)",
    code: "-",
    action: "publishes wait, bounded by publishTimeout (TimeoutError)",
  },
  {
    fault: "a consumer's queue does not exist (404 NOT_FOUND on basic.consume)",
    class: "transient",
    reported: true,
    error: "QueueNotFoundError",
    code: "QUEUE_NOT_FOUND",
    action: "resubscribe with backoff (it starts once the queue is declared); consumer.ready() rejects",
  },
  {
    fault:
      "exclusive queue or consumer held by another connection (405 RESOURCE_LOCKED, 403 in exclusive use)",
    class: "transient",
    reported: true,
    error: "ChannelClosedByBroker",
    code: "CHANNEL_CLOSED_BY_BROKER",
    action: "resubscribe with backoff: a standby consumer takes over once the other lets go",
  },
  {
    fault: "a consumer's subscription refused (403 ACCESS_REFUSED, 406 inequivalent queue arguments)",
    class: "permanent",
    reported: false,
    error: "ChannelClosedByBroker",
    code: "CHANNEL_CLOSED_BY_BROKER",
    action: "the consumer fails (state failed, the client's error event); consumer.ready() rejects",
  },
  {
    fault: "the caller's request refused: 404 (exchange missing), 403 (access), 406 (inequivalent arguments)",
    class: "permanent",
    reported: false,
    error: "ChannelClosedByBroker",
    code: "CHANNEL_CLOSED_BY_BROKER",
    action: "that publish or declare rejects; the channel reopens, not counted as a restart",
  },
  {
    fault: "server-sent basic.cancel (queue deleted, its node down)",
    class: "transient",
    reported: false,
    error: "(consumer state resubscribing)",
    code: "-",
    action: "resubscribe with backoff, re-declaring the queue if this client declared it",
  },
  {
    fault: "basic.nack from the broker (e.g. a quorum queue without a leader)",
    class: "transient",
    reported: false,
    error: "PublishNackedError",
    code: "PUBLISH_NACKED",
    action: "published again, the channel renewed after a streak; rejects after the retries",
  },
  {
    fault: "mandatory publish unroutable (basic.return)",
    class: "permanent",
    reported: false,
    error: "UnroutableError",
    code: "UNROUTABLE",
    action: "that publish rejects",
  },
  {
    fault: "no reply to a synchronous method in time",
    class: "transient",
    reported: false,
    error: "MethodTimeoutError",
    code: "METHOD_TIMEOUT",
    action: "the channel is reopened",
  },
  {
    fault: "an invalid URL or option",
    class: "permanent",
    reported: false,
    error: "ConfigError",
    code: "CONFIG_ERROR",
    action: "thrown at once by the call",
  },
  {
    fault:
      "an optional package a feature needs is not installed (prom-client for metrics, better-sqlite3 for the outbox)",
    class: "permanent",
    reported: false,
    error: "MissingDependencyError",
    code: "MISSING_DEPENDENCY",
    action:
      "thrown at once by connect({ metrics }), serveMetrics() or client.publisher({ outbox }): install the package it names",
  },
  {
    fault: "the outbox file locked by another connection or process (SQLITE_BUSY, SQLITE_LOCKED)",
    class: "transient",
    reported: true,
    error: "OutboxError",
    code: "OUTBOX_ERROR",
    action:
      "publishes wait, retried every 5-250 ms, and reject with OutboxError (recoverable) after publishTimeout; the relay and the deletes of confirmed rows resume once the lock is gone",
  },
  {
    fault: "the outbox file is not an SQLite database (SQLITE_NOTADB)",
    class: "permanent",
    reported: false,
    error: "OutboxError",
    code: "OUTBOX_ERROR",
    action: "client.publisher() throws: point outbox.path at an outbox or at a new file",
  },
  {
    fault: "the outbox database is corrupt (SQLITE_CORRUPT, or PRAGMA quick_check fails at start-up)",
    class: "permanent",
    reported: false,
    error: "OutboxError",
    code: "OUTBOX_ERROR",
    action:
      "client.publisher() throws (later: that publish rejects, relay faults reach the client's error event): restore the file or move it away",
  },
  {
    fault: "the outbox cannot be written: read-only file, directory or file system (SQLITE_READONLY)",
    class: "permanent",
    reported: false,
    error: "OutboxError",
    code: "OUTBOX_ERROR",
    action:
      "client.publisher() throws (a write is tried at start-up; later: that publish rejects): give the process write access",
  },
  {
    fault: "the disk is full (SQLITE_FULL)",
    class: "permanent",
    reported: false,
    error: "OutboxError",
    code: "OUTBOX_ERROR",
    action:
      "that publish rejects, not stored; later ones are tried again; confirmed rows are deleted once there is room",
  },
  {
    fault: "an I/O error on the outbox file (SQLITE_IOERR_*, e.g. a write past RLIMIT_FSIZE)",
    class: "permanent",
    reported: false,
    error: "OutboxError",
    code: "OUTBOX_ERROR",
    action:
      "that publish rejects, not stored; failed deletes and relay reads are retried and reach the client's error event",
  },
  {
    fault: "the outbox file cannot be opened (SQLITE_CANTOPEN: a missing directory, a directory)",
    class: "permanent",
    reported: false,
    error: "OutboxError",
    code: "OUTBOX_ERROR",
    action: "client.publisher() throws: point outbox.path at a file in an existing directory",
  },
];

// ─── broker close codes (AMQP 0-9-1 reply codes) ───────────────────────────────

/** Reply codes that end a connection for good: the same request would be refused again. */
const PERMANENT_CLOSE_CODES = new Set([
  402, // INVALID_PATH
  403, // ACCESS_REFUSED
  530, // NOT_ALLOWED (but see isConnectionLimit)
  540, // NOT_IMPLEMENTED
]);

/** Reply codes known to the table as transient; any other code is transient too, but reported. */
const KNOWN_TRANSIENT_CLOSE_CODES = new Set([320, 501, 502, 503, 504, 505, 506, 541]);

/** A connection.close with `replyCode`: would reconnecting help? */
export function brokerCloseIsTransient(replyCode: number): boolean {
  return !PERMANENT_CLOSE_CODES.has(replyCode);
}

/** A connection.close whose code is in no row of the table (transient, but the application hears of it). */
export function brokerCloseIsUnknown(replyCode: number): boolean {
  return !PERMANENT_CLOSE_CODES.has(replyCode) && !KNOWN_TRANSIENT_CLOSE_CODES.has(replyCode);
}

/**
 * The deprecated feature a broker's close names (RabbitMQ 3.12+ deprecated features: "INTERNAL_ERROR -
 * Feature `transient_nonexcl_queues` is deprecated. By default, this feature is not permitted
 * anymore."), if any. RabbitMQ closes the whole connection with 541 when a request needs a feature
 * that is not permitted; reconnecting and asking again would meet the same refusal.
 */
export function deprecatedFeatureIn(replyCode: number, replyText: string): string | undefined {
  if (replyCode !== 541) return undefined;
  return /Feature [`'"]?([a-z0-9_]+)[`'"]? is deprecated/i.exec(replyText)?.[1];
}

/** RabbitMQ's 530 over a vhost, user or node connection limit ("... connection limit (N) is reached"). */
export function isConnectionLimit(replyCode: number, replyText: string): boolean {
  return replyCode === 530 && /connection limit/i.test(replyText);
}

/** Socket error codes of a DNS failure: the name is wrong, or DNS does not answer. */
const DNS_CODES = new Set(["ENOTFOUND", "EAI_AGAIN", "EAI_NONAME", "EAI_FAIL"]);

/** The Node error code (`ECONNREFUSED`, `ENOTFOUND`…) behind an error, if any. */
export function systemCode(err: unknown): string | undefined {
  for (let e: unknown = err, depth = 0; e !== undefined && e !== null && depth < 4; depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string" && /^E[A-Z_]+$/.test(code)) return code;
    e = (e as { cause?: unknown }).cause;
  }
  return undefined;
}

// ─── the outbox's storage (SQLite result codes) ───────────────────────────────

/**
 * An SQLite (extended) result code of the outbox's file: would waiting help? Only a file busy or
 * locked by another connection or process (SQLITE_BUSY, SQLITE_LOCKED and their extended codes).
 */
export function sqliteFaultIsTransient(sqliteCode: string): boolean {
  return /^SQLITE_(BUSY|LOCKED)(_|$)/.test(sqliteCode);
}

// ─── credentials (connect({ credentials })) ─────────────────────────────────────

/**
 * How credentials failed: the provider threw or timed out, answered something malformed, the broker
 * refused a refreshed secret, or they expired on an open connection before a refresh succeeded.
 */
export type CredentialsFault = "provider" | "malformed" | "refused" | "expired";

/** Would asking the provider again help? Yes, unless what it answered is malformed. */
export function credentialsFaultIsTransient(reason: CredentialsFault): boolean {
  return reason !== "malformed";
}

// ─── the questions every layer asks ──────────────────────────────────────────

interface Classified {
  recoverable?: boolean;
  code?: string;
  replyCode?: number;
  replyText?: string;
  methodName?: string | undefined;
}

/** Transient: recovering (reconnect, reopen, resubscribe) may succeed. Anything not typed is transient. */
export function isTransient(err: unknown): boolean {
  return (err as Classified | undefined)?.recoverable !== false;
}

/** Permanent: fail at once, naming what is wrong. */
export function isPermanent(err: unknown): boolean {
  return !isTransient(err);
}

/**
 * A transient fault the application should hear about at once (the client's `error` event, rate-
 * limited) while it is retried: a connection limit, a missing queue, a DNS failure, a locked
 * resource (an outbox file too), a broker close code the table does not know, credentials that
 * could not be had or kept fresh.
 */
export function isReported(err: unknown): boolean {
  if (err === undefined || err === null || !isTransient(err)) return false;
  const e = err as Classified;
  switch (e.code) {
    case "CONNECTION_LIMIT":
    case "QUEUE_NOT_FOUND":
    case "OUTBOX_ERROR":
    case "CREDENTIALS_ERROR":
      return true;
    case "CONNECTION_CLOSED_BY_BROKER":
      return typeof e.replyCode === "number" && brokerCloseIsUnknown(e.replyCode);
    case "CHANNEL_CLOSED_BY_BROKER":
      return e.replyCode === 405 || isExclusiveInUse(e);
    case "SOCKET_ERROR":
      return DNS_CODES.has(systemCode(err) ?? "");
    default:
      return false;
  }
}

/**
 * The broker closed a channel because of what the caller asked of it (a publish to a missing
 * exchange, a declare with other arguments, no access): the request fails, the channel is reopened,
 * and it does not count toward the channel's restart intensity.
 */
export function isCallerFault(err: unknown): boolean {
  const e = err as Classified | undefined;
  if (e?.code !== "CHANNEL_CLOSED_BY_BROKER" || e.methodName === undefined) return false;
  return /^(basic\.publish|basic\.consume|exchange\.|queue\.)/.test(e.methodName);
}

/** 403 "in exclusive use": another connection holds an exclusive consumer on the queue (it may let go). */
function isExclusiveInUse(e: Classified): boolean {
  return e.replyCode === 403 && /exclusive use/i.test(e.replyText ?? "");
}

/**
 * A channel close the caller's subscription cannot recover from by retrying: 403 (no access) or 406
 * (inequivalent arguments) on its queue. 403 "in exclusive use" is not one: that lock is released.
 */
export function isRefusal(err: unknown): boolean {
  const e = err as Classified | undefined;
  if (e?.code !== "CHANNEL_CLOSED_BY_BROKER") return false;
  return e.replyCode === 406 || (e.replyCode === 403 && !isExclusiveInUse(e));
}

/** The exchange a broker's refusal names (`NOT_FOUND - no exchange 'x' in vhost '/'`), if any. */
export function exchangeNamedIn(replyText: string): string | undefined {
  return /exchange '([^']*)'/.exec(replyText)?.[1];
}

/**
 * True when a channel close is the broker refusing a publish to `exchange` (e.g. 404 no exchange
 * 'x'): the messages to it fail. A close caused by another method, or naming another exchange, is no
 * verdict on the message: it is sent again.
 */
export function refusedPublishTo(
  close: { readonly replyText: string; readonly methodName?: string | undefined },
  exchange: string,
): boolean {
  if (close.methodName !== undefined && close.methodName !== "basic.publish") return false;
  const named = exchangeNamedIn(close.replyText);
  // The broker calls the default exchange (published to as "") 'amq.default' in its texts, e.g.
  // "403 ACCESS_REFUSED - write access to exchange 'amq.default' in vhost '/' refused".
  return named === undefined || named === exchange || (exchange === "" && named === "amq.default");
}
