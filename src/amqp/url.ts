/**
 * RabbitMQ URI parsing: amqp://user:pass@host:port/vhost?heartbeat=10&frame_max=131072
 * &channel_max=2047&connection_timeout=10000&auth_mechanism=PLAIN (repeatable),
 * plus for amqps: cacertfile, certfile, keyfile, verify=verify_peer|verify_none,
 * server_name_indication. Errors never contain the password.
 */
import { readFileSync } from "node:fs";
import { ConfigError } from "../errors.js";
import type { TlsOptions } from "../transport/socket.js";

/**
 * A SASL mechanism warren speaks: PLAIN and AMQPLAIN send the user and password; EXTERNAL logs in with the
 * TLS client certificate.
 */
export type AuthMechanism = "PLAIN" | "AMQPLAIN" | "EXTERNAL";
const MECHANISMS: readonly AuthMechanism[] = ["PLAIN", "AMQPLAIN", "EXTERNAL"];

/** What `parseUrl()` read from a RabbitMQ URI; the optional fields are set only when the URL has them. */
export interface ParsedUrl {
  /** amqps means TLS. */
  protocol: "amqp" | "amqps";
  /** Host name or IP address (an IPv6 address without its brackets). */
  host: string;
  /** The URL's port, else 5672 (amqp) or 5671 (amqps). */
  port: number;
  /** Percent-decoded; "guest" when the URL has none. */
  username: string;
  /** Percent-decoded; "guest" when the URL has no user, "" when it has a user and no password. */
  password: string;
  /** Percent-decoded path (`%2F` is "/"); "/" when the URL has no path. */
  vhost: string;
  /** `heartbeat` parameter, seconds (0 turns heartbeats off). */
  heartbeat?: number;
  /** `frame_max` parameter, bytes. */
  frameMax?: number;
  /** `channel_max` parameter. */
  channelMax?: number;
  /** `connection_timeout` parameter, ms. */
  connectionTimeout?: number;
  /** `auth_mechanism` parameters, in the order given (upper-cased). */
  authMechanism?: AuthMechanism[];
  /**
   * amqps only: the PEM files read (`cacertfile`, `certfile`, `keyfile`), `verify`, `server_name_indication`.
   */
  tls?: TlsOptions;
}

/** The URL with its password replaced by "***": safe for logs and errors. */
export function redactUrl(url: string): string {
  return url.replace(/^(\w+:\/\/[^:/@]*:)[^@/]*@/, "$1***@");
}

function intParam(name: string, value: string, min: number, max: number): number {
  if (!/^\d+$/.test(value)) throw new ConfigError(`URL parameter ${name}=${value} is not a whole number`);
  const n = Number(value);
  if (n < min || n > max)
    throw new ConfigError(`URL parameter ${name}=${value} is out of range ${min}..${max}`);
  return n;
}

function readPem(param: string, path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (e) {
    throw new ConfigError(`URL parameter ${param}: cannot read ${path}: ${(e as Error).message}`, {
      cause: e,
    });
  }
}

/**
 * Parses a RabbitMQ URI: `amqp[s]://user:pass@host:port/vhost?heartbeat=10&…` (parameters in the
 * module comment and docs/connecting.md). Reads the PEM files it names. Throws ConfigError for a
 * bad URL, an unknown parameter, a value out of range or an unreadable file; the message shows the
 * URL with its password masked.
 */
export function parseUrl(url: string): ParsedUrl {
  const safe = redactUrl(url);
  let u: URL;
  try {
    u = new URL(url);
  } catch (e) {
    throw new ConfigError(`not a valid AMQP URL: ${safe} (expected amqp://user:pass@host:port/vhost)`, {
      cause: e,
    });
  }
  const scheme = u.protocol.slice(0, -1);
  if (scheme !== "amqp" && scheme !== "amqps") {
    throw new ConfigError(`unsupported URL scheme "${scheme}:" in ${safe}; use amqp: or amqps:`);
  }
  if (!u.hostname) throw new ConfigError(`no host in URL ${safe}`);
  let vhost = "/";
  if (u.pathname.length > 1) {
    const raw = u.pathname.slice(1);
    if (raw.includes("/"))
      throw new ConfigError(`a vhost in a URL must have its "/" encoded as %2F: ${safe}`);
    try {
      vhost = decodeURIComponent(raw);
    } catch (e) {
      throw new ConfigError(`bad percent-encoding in the vhost of ${safe}`, { cause: e });
    }
  }
  const dec = (s: string, what: string) => {
    try {
      return decodeURIComponent(s);
    } catch (e) {
      throw new ConfigError(`bad percent-encoding in the ${what} of ${safe}`, { cause: e });
    }
  };
  const out: ParsedUrl = {
    protocol: scheme,
    host: u.hostname.startsWith("[") ? u.hostname.slice(1, -1) : u.hostname,
    port: u.port ? Number(u.port) : scheme === "amqps" ? 5671 : 5672,
    username: u.username ? dec(u.username, "user name") : "guest",
    password: u.password ? dec(u.password, "password") : u.username ? "" : "guest",
    vhost,
  };
  const tls: TlsOptions = {};
  for (const [key, value] of u.searchParams) {
    switch (key) {
      case "heartbeat":
        out.heartbeat = intParam(key, value, 0, 65535);
        break;
      case "frame_max":
        out.frameMax = intParam(key, value, 0, 0xffff_ffff);
        break;
      case "channel_max":
        out.channelMax = intParam(key, value, 0, 65535);
        break;
      case "connection_timeout":
        out.connectionTimeout = intParam(key, value, 1, 0x7fff_ffff);
        break;
      case "auth_mechanism": {
        const m = value.toUpperCase() as AuthMechanism;
        if (!MECHANISMS.includes(m)) {
          throw new ConfigError(
            `auth_mechanism=${value} is not supported; use one of ${MECHANISMS.join(", ")}`,
          );
        }
        out.authMechanism = [...(out.authMechanism ?? []), m];
        break;
      }
      case "cacertfile":
        tls.ca = readPem(key, value);
        break;
      case "certfile":
        tls.cert = readPem(key, value);
        break;
      case "keyfile":
        tls.key = readPem(key, value);
        break;
      case "verify":
        if (value !== "verify_peer" && value !== "verify_none") {
          throw new ConfigError(`verify=${value}: use verify_peer or verify_none`);
        }
        tls.rejectUnauthorized = value === "verify_peer";
        break;
      case "server_name_indication":
        tls.servername = value;
        break;
      default:
        throw new ConfigError(
          `unknown URL parameter "${key}" in ${safe}; known: heartbeat, frame_max, channel_max, connection_timeout, auth_mechanism, cacertfile, certfile, keyfile, verify, server_name_indication`,
        );
    }
  }
  if (scheme === "amqps") out.tls = tls;
  else if (Object.keys(tls).length > 0) throw new ConfigError(`TLS parameters need an amqps: URL: ${safe}`);
  return out;
}
