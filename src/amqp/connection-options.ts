/**
 * The options of a connection: what users pass (ConnectionOptions, a URL and fields that override
 * it), and what the connection uses once the URL and the defaults are resolved (ResolvedOptions).
 * Bad values are a ConfigError here, before any socket is opened.
 */
import { ConfigError } from "../errors.js";
import type { FieldTable } from "../protocol/table.js";
import type { TlsOptions } from "../transport/socket.js";
import { type AuthMechanism, parseUrl } from "./url.js";

/**
 * The smallest `frameMax` accepted, in bytes (less, but for 0, is a ConfigError): RabbitMQ 4.1 and later
 * refuse a frame_max below 8192.
 */
export const MIN_FRAME_MAX = 8192;
const DEFAULT_FRAME_MAX = 131072;
/** The channel_max warren asks for unless told otherwise. */
export const DEFAULT_CHANNEL_MAX = 2047;

/**
 * `Connection.open()` options (and, but for url/host/port, `connect()`'s): a URL and fields that
 * override it. A bad value is a ConfigError before any socket is opened. docs/connecting.md.
 */
export interface ConnectionOptions {
  /** amqp[s]://user:pass@host:port/vhost?heartbeat=… — fields below override what it says. */
  url?: string;
  /** Broker host name or IP address. Default 127.0.0.1. */
  host?: string;
  /** Broker TCP port. Default 5672, or 5671 with TLS. */
  port?: number;
  /** Virtual host. Default "/". */
  vhost?: string;
  /** User name for SASL PLAIN/AMQPLAIN. Default "guest". */
  username?: string;
  /** Password. Default "guest". Never shown in errors, logs or util.inspect. */
  password?: string;
  /** TLS options; setting this (or an amqps: URL) turns TLS on. Verification is on by default. */
  tls?: TlsOptions | boolean;
  /** Heartbeat interval in seconds; 0 turns heartbeats off. Default: the broker's proposal (60 s on RabbitMQ). */
  heartbeat?: number;
  /** Largest frame in bytes (at least 8192). Default 131072; the smaller of ours and the broker's wins. */
  frameMax?: number;
  /** Most channels; default 2047, the smaller of ours and the broker's wins. */
  channelMax?: number;
  /** Milliseconds for TCP + TLS + handshake. Default 30000. */
  connectionTimeout?: number;
  /** SASL mechanisms in order of preference. Default PLAIN, then AMQPLAIN. EXTERNAL needs a TLS client certificate. */
  authMechanism?: AuthMechanism | AuthMechanism[];
  /** Shown in the management UI and `rabbitmqctl list_connections client_properties`. */
  connectionName?: string;
  /** Extra client properties (merged over warren's). */
  clientProperties?: FieldTable;
  /** Largest incoming message body accepted, in bytes (default 512 MiB, RabbitMQ's own ceiling). */
  maxMessageSize?: number;
  /**
   * Bytes buffered for the socket past which the connection is full (default 4 MiB):
   * `basicPublish()` returns false and publishers wait until it drains.
   */
  writeHighWaterMark?: number;
  /**
   * Milliseconds to wait for the reply to a synchronous method (declare, bind, get, close…) before
   * giving up the channel with MethodTimeoutError. Default 30000; 0 waits for ever.
   */
  methodTimeout?: number;
  /** @deprecated renamed methodTimeout (a synchronous AMQP method, not an RPC call). */
  rpcTimeout?: number;
}

/**
 * Options after URL and defaults are resolved (`conn.options`): each field as in ConnectionOptions,
 * its default filled in.
 */
export interface ResolvedOptions {
  host: string;
  port: number;
  vhost: string;
  username: string;
  /** Not enumerable on `conn.options`. */
  password: string;
  /** Undefined: plain TCP. */
  tls: TlsOptions | undefined;
  /** Undefined: the broker's proposal. */
  heartbeat: number | undefined;
  frameMax: number;
  channelMax: number;
  connectionTimeout: number;
  authMechanisms: AuthMechanism[];
  connectionName: string | undefined;
  clientProperties: FieldTable | undefined;
  maxMessageSize: number;
  writeHighWaterMark: number;
  methodTimeout: number;
}

/**
 * Merges a URL (or options with one), the fields that override it and the defaults; throws ConfigError on a
 * bad value.
 */
export function resolveOptions(o: ConnectionOptions | string = {}): ResolvedOptions {
  const opts: ConnectionOptions = typeof o === "string" ? { url: o } : o;
  const u = opts.url !== undefined ? parseUrl(opts.url) : undefined;
  let tls: TlsOptions | undefined = u?.tls;
  if (opts.tls === true) tls = { ...tls };
  else if (opts.tls === false) tls = undefined;
  else if (opts.tls) tls = { ...tls, ...opts.tls };
  const mech = opts.authMechanism ?? u?.authMechanism ?? ["PLAIN", "AMQPLAIN"];
  const frameMax = opts.frameMax ?? u?.frameMax ?? DEFAULT_FRAME_MAX;
  if (frameMax !== 0 && frameMax < MIN_FRAME_MAX) {
    throw new ConfigError(`frameMax ${frameMax} is below ${MIN_FRAME_MAX}, which RabbitMQ 4.1+ requires`);
  }
  const r: ResolvedOptions = {
    host: opts.host ?? u?.host ?? "127.0.0.1",
    port: opts.port ?? u?.port ?? (tls ? 5671 : 5672),
    vhost: opts.vhost ?? u?.vhost ?? "/",
    username: opts.username ?? u?.username ?? "guest",
    password: opts.password ?? u?.password ?? "guest",
    tls,
    heartbeat: opts.heartbeat ?? u?.heartbeat,
    frameMax,
    channelMax: opts.channelMax ?? u?.channelMax ?? DEFAULT_CHANNEL_MAX,
    connectionTimeout: opts.connectionTimeout ?? u?.connectionTimeout ?? 30000,
    authMechanisms: Array.isArray(mech) ? mech : [mech],
    connectionName: opts.connectionName,
    clientProperties: opts.clientProperties,
    maxMessageSize: opts.maxMessageSize ?? 512 * 1024 * 1024,
    writeHighWaterMark: opts.writeHighWaterMark ?? 4 * 1024 * 1024,
    methodTimeout: opts.methodTimeout ?? opts.rpcTimeout ?? 30000,
  };
  if (
    r.heartbeat !== undefined &&
    (!Number.isInteger(r.heartbeat) || r.heartbeat < 0 || r.heartbeat > 65535)
  ) {
    throw new ConfigError(`heartbeat must be a whole number of seconds 0..65535, got ${r.heartbeat}`);
  }
  if (!Number.isInteger(r.port) || r.port < 1 || r.port > 65535)
    throw new ConfigError(`port ${r.port} is out of range`);
  return r;
}
