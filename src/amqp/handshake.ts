/**
 * The AMQP 0-9-1 opening handshake, as the client plays it: protocol header → connection.start →
 * start-ok (SASL) → tune → tune-ok → open → open-ok. Separate from the Connection so that the
 * negotiation and the mapping of a refusal to a typed error read in one place; the Connection gives
 * it a narrow host (send, expect, and where to put what was negotiated).
 */
import { hostname } from "node:os";
import {
  AuthenticationError,
  ConnectionClosedByBroker,
  type ConnectionError,
  ConnectionLimitError,
  HandshakeError,
  VhostNotAllowedError,
} from "../errors.js";
import { isConnectionLimit } from "../faults.js";
import {
  ACCESS_REFUSED,
  CONNECTION_CLOSE,
  CONNECTION_OPEN_OK,
  CONNECTION_SECURE,
  CONNECTION_START,
  CONNECTION_TUNE,
  FRAME_MIN_SIZE,
  METHOD_NAMES,
  type Method,
  type MethodInput,
  NOT_ALLOWED,
} from "../protocol/generated/spec.js";
import type { FieldTable } from "../protocol/table.js";
import { VERSION } from "../version.js";
import type { ResolvedOptions } from "./connection-options.js";
import { saslResponse } from "./sasl.js";

/** What connection.start told of the broker. */
export interface ServerInfo {
  /** Its server-properties (product, version, capabilities, cluster_name, …). */
  properties: FieldTable;
  /** The SASL mechanisms it offers. */
  mechanisms: string[];
  /** The locales it offers. */
  locales: string[];
  /** The protocol's major version: 0. */
  versionMajor: number;
  /** The protocol's minor version: 9. */
  versionMinor: number;
}

/** What connection.tune settled. */
export interface Tuned {
  channelMax: number;
  /** 0: no limit. */
  frameMax: number;
  /** Seconds; 0: off. */
  heartbeat: number;
}

/** What the handshake needs of its connection. */
export interface HandshakeHost {
  readonly options: ResolvedOptions;
  /** Resolves with the next connection method, which must be one of `ids`. */
  expect(ids: readonly number[]): Promise<Method>;
  writeProtocolHeader(): void;
  /** Sends a method on channel 0. */
  send(method: MethodInput): void;
  /** connection.start came: the broker's properties. */
  started(server: ServerInfo): void;
  /** start-ok (the login) is about to be sent: a hang-up from now on is a refused login. */
  loggingIn(): void;
  /** tune-ok is sent with these values; frames may now be as large as `frameMax`. */
  tuned(t: Tuned): void;
  /** The broker closed the connection during the handshake: answer with close-ok, at once. */
  refused(): void;
}

/** Runs the handshake to connection.open-ok; throws the typed error of a refusal. */
export async function handshake(h: HandshakeHost): Promise<void> {
  const o = h.options;
  const startP = h.expect([CONNECTION_START]);
  h.writeProtocolHeader();
  const start = await startP;
  if (start.name !== "connection.start") throw new HandshakeError("expected connection.start");
  const s = start.args;
  if (s.versionMajor !== 0 || s.versionMinor !== 9) {
    throw new HandshakeError(`broker speaks AMQP ${s.versionMajor}-${s.versionMinor}, not 0-9-1`);
  }
  const offered = s.mechanisms.toString("utf8").split(" ").filter(Boolean);
  const locales = s.locales.toString("utf8").split(" ").filter(Boolean);
  h.started({
    properties: s.serverProperties,
    mechanisms: offered,
    locales,
    versionMajor: s.versionMajor,
    versionMinor: s.versionMinor,
  });
  const mechanism = o.authMechanisms.find((m) => offered.includes(m));
  if (!mechanism) {
    throw new HandshakeError(
      `the broker offers SASL mechanisms [${offered.join(", ")}], none of the configured [${o.authMechanisms.join(", ")}]`,
    );
  }
  const tuneP = h.expect([CONNECTION_TUNE, CONNECTION_SECURE, CONNECTION_CLOSE]);
  h.loggingIn();
  h.send({
    name: "connection.start-ok",
    args: {
      clientProperties: clientProperties(o),
      mechanism,
      response: saslResponse(mechanism, o.username, o.password),
      locale: locales[0] ?? "en_US",
    },
  });
  const tune = await tuneP;
  if (tune.name === "connection.secure") {
    throw new HandshakeError(
      `the broker sent a SASL challenge for ${mechanism}; warren's mechanisms take no challenge`,
    );
  }
  if (tune.name === "connection.close") {
    h.refused();
    throw refusal(tune.args, "start-ok", o);
  }
  if (tune.name !== "connection.tune") throw new HandshakeError("expected connection.tune");
  const t = negotiate(o, tune.args);
  h.send({ name: "connection.tune-ok", args: t });
  h.tuned(t);
  const openP = h.expect([CONNECTION_OPEN_OK, CONNECTION_CLOSE]);
  h.send({ name: "connection.open", args: { virtualHost: o.vhost } });
  const opened = await openP;
  if (opened.name === "connection.close") {
    h.refused();
    throw refusal(opened.args, "open", o);
  }
}

/** The lower of each limit (0 meaning none), at least the protocol's minimum frame. */
export function negotiate(
  o: Pick<ResolvedOptions, "channelMax" | "frameMax" | "heartbeat">,
  t: { channelMax: number; frameMax: number; heartbeat: number },
): Tuned {
  const lower = (client: number, server: number) =>
    client === 0 || server === 0 ? Math.max(client, server) : Math.min(client, server);
  let frameMax = lower(o.frameMax, t.frameMax);
  if (frameMax !== 0 && frameMax < FRAME_MIN_SIZE) frameMax = FRAME_MIN_SIZE;
  return {
    channelMax: lower(o.channelMax, t.channelMax) || 65535,
    frameMax,
    heartbeat: o.heartbeat ?? t.heartbeat,
  };
}

/** The typed error of a connection.close during the handshake, saying what to check. */
export function refusal(
  a: { replyCode: number; replyText: string; classId: number; methodId: number },
  step: "start-ok" | "open",
  o: Pick<ResolvedOptions, "username" | "vhost">,
): ConnectionError {
  const d = { ...a, methodName: METHOD_NAMES[(a.classId << 16) | a.methodId] };
  if (a.replyCode === ACCESS_REFUSED && step === "start-ok") {
    return new AuthenticationError(
      `the broker refused the credentials of user "${o.username}" (${a.replyText}); check the user name and password`,
    );
  }
  if (isConnectionLimit(a.replyCode, a.replyText)) {
    return new ConnectionLimitError({
      ...d,
      replyText: `${a.replyText} (the broker is at a connection limit; retrying until a connection is freed)`,
    });
  }
  if (a.replyCode === NOT_ALLOWED || a.replyCode === ACCESS_REFUSED) {
    return new VhostNotAllowedError({
      ...d,
      replyText: `${a.replyText} (vhost "${o.vhost}" is missing or user "${o.username}" may not use it)`,
    });
  }
  return new ConnectionClosedByBroker(d);
}

/** client-properties: who we are, what we understand, and the connection's name. */
export function clientProperties(
  o: Pick<ResolvedOptions, "clientProperties" | "connectionName">,
): FieldTable {
  const props: FieldTable = {
    product: "warren",
    version: VERSION,
    platform: `Node.js ${process.version}`,
    information: "AMQP 0-9-1 client for Node.js",
    host: hostname(),
    capabilities: {
      publisher_confirms: true,
      exchange_exchange_bindings: true,
      "basic.nack": true,
      consumer_cancel_notify: true,
      "connection.blocked": true,
      authentication_failure_close: true,
      per_consumer_qos: true,
    },
    ...o.clientProperties,
  };
  if (o.connectionName !== undefined) props["connection_name"] = o.connectionName;
  return props;
}
