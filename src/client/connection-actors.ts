/**
 * The two I/O actors the connection machine runs (machines/ stays pure): `connect` opens one
 * Connection to one host and reports SOCKET_OPEN, CONNECTED or CONNECT_FAILED; `watch` turns a
 * live connection's close, blocked and unblocked events into LOST, BLOCKED and UNBLOCKED.
 * Each returns its cleanup, called when the machine leaves the state that runs it.
 */
import type { ConnectionEvent, LifecycleError } from "../../machines/connection.js";
import { Connection, type ConnectionObserver, type OpenHooks } from "../amqp/connection.js";
import type { ConnectionOptions } from "../amqp/connection-options.js";
import { ConnectionClosedError } from "../errors.js";
import type { ClientOptions } from "./client-options.js";
import type { CredentialKeeper } from "./credential-refresh.js";

type SendBack = (e: ConnectionEvent) => void;

/** The connection options in a client's options (what is left once the client's own are taken out). */
export function connectionOptions(o: ClientOptions, url: string): ConnectionOptions {
  const {
    urls: _u,
    url: _url,
    reconnect: _r,
    restartIntensity: _ri,
    channelRestartIntensity: _ci,
    metrics: _me,
    shuffleHosts: _sh,
    hostCooldown: _hc,
    tracing: _tr,
    escalation: _es,
    giveUpAfter: _gu,
    connectWaitTimeout: _cw,
    closeTimeout: _ct,
    credentials: _cr,
    credentialRefresh: _crr,
    connections: _cs,
    ...rest
  } = o;
  return { ...rest, url };
}

/**
 * Opens a connection; `opened` gets it once the handshake is done. A connection that opens after
 * the machine gave up on the attempt (the cleanup ran) is closed at once. With `credentials`, they
 * are asked for first and override the URL's user and password.
 */
export function connectActor(
  options: ConnectionOptions,
  observer: ConnectionObserver | undefined,
  opened: (conn: Connection) => void,
  sendBack: SendBack,
  credentials?: CredentialKeeper,
): () => void {
  let abandoned = false;
  const hooks: OpenHooks = { onSocketOpen: () => !abandoned && sendBack({ type: "SOCKET_OPEN" }) };
  if (observer) hooks.observer = observer;
  const open = credentials
    ? credentials.open(({ username, password }) => Connection.open({ ...options, username, password }, hooks))
    : Connection.open(options, hooks);
  open.then(
    (conn) => {
      if (abandoned) {
        void conn.close({ timeout: 1000 });
        return;
      }
      opened(conn);
      sendBack({ type: "CONNECTED" });
    },
    (error: LifecycleError) => {
      if (!abandoned) sendBack({ type: "CONNECT_FAILED", error });
    },
  );
  return () => {
    abandoned = true;
  };
}

/**
 * Follows a live connection; `gone` is told when it closed (before LOST is sent). With
 * `credentials`, keeps its secret fresh meanwhile, and a close they explain is sent as theirs.
 */
export function watchActor(
  conn: Connection | undefined,
  gone: (conn: Connection) => void,
  sendBack: SendBack,
  credentials?: CredentialKeeper,
): () => void {
  if (!conn) {
    sendBack({ type: "LOST", error: new ConnectionClosedError("no connection") });
    return () => undefined;
  }
  const fresh = credentials?.keepFresh(conn, (error) => {
    void conn.close({ timeout: 1000, replyText: error.message.slice(0, 200) });
  });
  const onClose = (closed: LifecycleError | undefined) => {
    fresh?.stop();
    const error = fresh ? fresh.explain(closed) : closed;
    gone(conn);
    sendBack({ type: "LOST", error: error ?? new ConnectionClosedError("the connection closed") });
  };
  const onBlocked = (reason: string) => sendBack({ type: "BLOCKED", reason });
  const onUnblocked = () => sendBack({ type: "UNBLOCKED" });
  conn.on("close", onClose);
  conn.on("blocked", onBlocked);
  conn.on("unblocked", onUnblocked);
  if (conn.isBlocked) onBlocked(conn.blockedReason ?? "blocked");
  if (!conn.isOpen) onClose(conn.closeReason);
  return () => {
    fresh?.stop();
    conn.off("close", onClose);
    conn.off("blocked", onBlocked);
    conn.off("unblocked", onUnblocked);
  };
}
