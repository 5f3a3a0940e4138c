/**
 * An AMQP 0-9-1 connection: handshake (SASL PLAIN / AMQPLAIN / EXTERNAL, tune),
 * heartbeats, channel multiplexing, connection.blocked, orderly close both ways.
 *
 * This is the session layer: it knows frames and methods, not state machines.
 * A Connection is single-use: once closed (by either side or by a fault) it
 * stays closed; supervision and recovery live above it.
 */

import type { Socket } from "node:net";
import {
  AuthenticationError,
  type ChannelError,
  ChannelLimitError,
  ConnectionClosedByBroker,
  ConnectionClosedError,
  ConnectionError,
  ConnectTimeoutError,
  DeprecatedFeatureError,
  FrameError,
  HandshakeError,
  HeartbeatTimeoutError,
  SocketError,
  TlsError,
} from "../errors.js";
import { deprecatedFeatureIn } from "../faults.js";
import { FRAME_OVERHEAD, FrameParser, HEARTBEAT_FRAME, writeMethodFrame } from "../protocol/frame.js";
import {
  ACCESS_REFUSED,
  CONNECTION_BLOCKED,
  CONNECTION_CLOSE,
  CONNECTION_CLOSE_OK,
  CONNECTION_UNBLOCKED,
  CONNECTION_UPDATE_SECRET_OK,
  decodeMethod,
  FRAME_HEARTBEAT,
  FRAME_METHOD,
  METHOD_NAMES,
  type Method,
  type MethodInput,
  PROTOCOL_HEADER,
} from "../protocol/generated/spec.js";
import { openSocket, SocketReader, toSocketError } from "../transport/socket.js";
import { FrameWriter } from "../transport/writer.js";
import { Channel } from "./channel.js";
import type { ChannelHost, MethodCallObserver } from "./channel-host.js";
import {
  type ConnectionOptions,
  DEFAULT_CHANNEL_MAX,
  type ResolvedOptions,
  resolveOptions,
} from "./connection-options.js";
import { type EventLoopLease, watchEventLoop } from "./event-loop.js";
import { TypedEmitter } from "./events.js";
import { handshake, type ServerInfo } from "./handshake.js";
import { Heartbeat } from "./heartbeat.js";
import { brokerDroppedAfterStall, stallBehind, timedOutAfterStall } from "./loop-stall.js";
import { redactUrl } from "./url.js";

/** frame_max during the handshake, before tune says what the broker allows. */
const HANDSHAKE_FRAME_MAX = 131072;

/** The events a Connection emits (`conn.on(name, listener)`). */
export interface ConnectionEvents {
  /**
   * connection.blocked: the broker stopped reading from this connection (memory or disk alarm);
   * `reason` is its text, e.g. "low on memory". Publishes wait in the socket meanwhile.
   */
  blocked: (reason: string) => void;
  /** connection.unblocked: the alarm cleared and the broker reads again. */
  unblocked: () => void;
  /** connection.update-secret-ok: the broker took the secret sent by updateSecret(). */
  secretUpdated: () => void;
  /**
   * Closed, once. `error` is undefined for an orderly close we asked for; otherwise why
   * (ConnectionClosedByBroker, HeartbeatTimeoutError, SocketError, FrameError…).
   */
  close: (error: ConnectionError | undefined) => void;
}

/** Progress callbacks of Connection.open (the supervisor's connecting → handshaking). */
export interface OpenHooks {
  /** TCP (and TLS) are up; the AMQP handshake starts. */
  onSocketOpen?: () => void;
  /** Instrumentation (metrics) of this connection and its channels. */
  observer?: ConnectionObserver;
}

/**
 * Instrumentation hooks (warren's metrics use them): called synchronously, must be cheap and
 * must not throw. Every hook is optional.
 */
export interface ConnectionObserver extends MethodCallObserver {
  /** The socket is up (before the handshake): `bytesReceived`/`bytesSent` count from here. */
  opened?(conn: Connection): void;
  /** The connection closed, whatever the cause: its byte counts are final. */
  closed?(conn: Connection): void;
  /** The connection was declared dead after two heartbeat intervals without data. */
  heartbeatMissed?(): void;
}

interface Waiter {
  ids: readonly number[];
  resolve: (m: Method) => void;
  reject: (e: Error) => void;
}

/**
 * A low-level AMQP 0-9-1 connection (`await Connection.open(url)`), without supervision: when it
 * closes, by either side or by a fault, it stays closed and its channels with it. `connect()` gives
 * the supervised client built on it. Read the negotiated values below; do not set them.
 */
export class Connection extends TypedEmitter<ConnectionEvents> implements ChannelHost {
  /** The negotiated frame_max in bytes (0: no limit), valid once open. Bodies are split to fit. */
  frameMax = HANDSHAKE_FRAME_MAX;
  /** The negotiated channel_max: the highest channel number, valid once open. */
  channelMax = DEFAULT_CHANNEL_MAX;
  /**
   * The heartbeat interval in use, in seconds (0: off): the `heartbeat` option, else the broker's proposal.
   */
  heartbeat = 0;
  /** What the broker said in connection.start; set during the handshake. */
  server: ServerInfo | undefined;
  /** Set while the broker has blocked publishing on this connection. */
  blockedReason: string | undefined;
  /** Why it closed, if it did. */
  closeReason: ConnectionError | undefined;
  /** Instrumentation hooks (OpenHooks.observer); for its channels (ChannelHost), not applications. */
  readonly observer: ConnectionObserver | undefined;

  /** The frame buffer its channels write into (ChannelHost); not for applications. */
  readonly writer: FrameWriter;
  /**
   * The options in use: the URL, the fields that override it and the defaults, resolved. The
   * password is kept for reconnecting but is not enumerable (not in util.inspect, JSON or spreads).
   */
  readonly options: ResolvedOptions;
  private readonly socket: Socket;
  private readonly parser: FrameParser;
  /** Incoming chunks are overwritten by the next read: whatever is kept must be copied. @internal */
  readonly transient: boolean;
  /** Plain TCP: the one buffer every read lands in (TLS reads come as 'data' events). @internal */
  readonly reader: SocketReader | undefined;
  private readonly channels = new Map<number, Channel>();
  /** Channels we closed and whose close-ok has not come back: frames for them are dropped. */
  private readonly closingChannels = new Set<number>();
  private nextChannelId = 1;
  private state: "handshake" | "open" | "closing" | "closed" = "handshake";
  private waiter: Waiter | undefined;
  private heartbeats: Heartbeat | undefined;
  /** While heartbeats run: the event-loop monitor, to tell a stalled loop from a lost network. */
  private loop: EventLoopLease | undefined;
  private closePromise: Promise<void> | undefined;
  private startOkSent = false;
  private tuned = false;
  private resolveClosed!: () => void;
  private readonly closed: Promise<void>;

  private constructor(
    socket: Socket,
    options: ResolvedOptions,
    observer?: ConnectionObserver,
    reader?: SocketReader,
  ) {
    super();
    this.socket = socket;
    this.observer = observer;
    // The password stays readable for reconnecting but out of util.inspect, JSON and spreads.
    this.options = { ...options };
    Object.defineProperty(this.options, "password", { value: options.password, enumerable: false });
    this.writer = new FrameWriter(socket, { highWaterMark: options.writeHighWaterMark });
    // Reads into one reused buffer (plain TCP) are transient: the parser and the channels copy what they keep.
    this.reader = reader;
    this.transient = reader !== undefined;
    this.parser = new FrameParser((t, c, p) => this.onFrame(t, c, p), HANDSHAKE_FRAME_MAX, {
      streamBodies: true,
      transient: this.transient,
    });
    this.closed = new Promise((r) => (this.resolveClosed = r));
    const onChunk = (chunk: Buffer) => {
      this.heartbeats?.received();
      try {
        this.parser.push(chunk);
      } catch (e) {
        if (this.state === "handshake" && this.server === undefined && e instanceof FrameError) {
          // Not even connection.start made sense: the peer does not speak AMQP 0-9-1 (e.g. it answered
          // with its own protocol header). Retrying will not help and it would not understand a close.
          const where = `${options.host}:${options.port}`;
          this.fail(
            new HandshakeError(`${where} does not speak AMQP 0-9-1: ${e.message}`, { cause: e }),
            false,
          );
          return;
        }
        this.fail(
          e instanceof ConnectionError
            ? e
            : new FrameError(e instanceof Error ? e.message : String(e), { cause: e, replyCode: 502 }),
          true,
        );
      }
    };
    if (reader !== undefined) reader.onChunk = onChunk;
    else socket.on("data", onChunk);
    socket.on("error", (err) => {
      const e = toSocketError(err, `${options.host}:${options.port}`);
      const stall = e instanceof TlsError ? undefined : this.stall();
      this.fail(
        stall === undefined
          ? e
          : new SocketError(`${e.message}: ${brokerDroppedAfterStall(stall, this.heartbeat)}`, {
              cause: err,
              eventLoopStallMs: stall,
            }),
        false,
      );
    });
    socket.on("close", () => {
      if (this.state === "handshake" && this.startOkSent && !this.tuned) {
        // A broker without authentication_failure_close hangs up after start-ok on bad credentials.
        this.fail(
          new AuthenticationError(
            `${options.host}:${options.port} closed the connection after the login (start-ok): most likely it refused the credentials of user "${options.username}"`,
          ),
          false,
        );
        return;
      }
      if (this.state === "closing") {
        this.fail(new ConnectionClosedError("socket closed while the connection was closing"), false);
      } else if (this.state !== "closed") {
        const stall = this.stall();
        const lost = `connection to ${options.host}:${options.port} was closed by the peer without connection.close`;
        this.fail(
          stall === undefined
            ? new SocketError(lost)
            : new SocketError(`${lost}: ${brokerDroppedAfterStall(stall, this.heartbeat)}`, {
                eventLoopStallMs: stall,
              }),
          false,
        );
      }
    });
  }

  /**
   * Opens a connection and completes the AMQP handshake (a URL string, or options with an
   * optional `url`), all within `connectionTimeout`. Rejects with ConfigError (a bad URL or
   * option), SocketError (refused, reset, DNS), TlsError (certificate not trusted),
   * ConnectTimeoutError, AuthenticationError (wrong user or password), VhostNotAllowedError,
   * ConnectionLimitError, HandshakeError (not AMQP 0-9-1, no common SASL mechanism) or
   * ConnectionClosedByBroker. Messages never contain the password.
   */
  static async open(options: ConnectionOptions | string = {}, hooks: OpenHooks = {}): Promise<Connection> {
    const o = resolveOptions(options);
    const deadline = Date.now() + o.connectionTimeout;
    const reader = o.tls === undefined ? new SocketReader() : undefined;
    const socket = await openSocket({
      host: o.host,
      port: o.port,
      tls: o.tls,
      connectTimeout: o.connectionTimeout,
      reader,
    });
    hooks.onSocketOpen?.();
    const conn = new Connection(socket, o, hooks.observer, reader);
    hooks.observer?.opened?.(conn);
    const remaining = Math.max(1, deadline - Date.now());
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        const err = new ConnectTimeoutError(
          `AMQP handshake with ${o.host}:${o.port} did not complete within ${o.connectionTimeout} ms (the peer accepted TCP but did not answer as an AMQP broker)`,
        );
        conn.fail(err, false);
        reject(err);
      }, remaining);
    });
    try {
      await Promise.race([conn.handshake(), timeout]);
    } catch (e) {
      conn.fail(e as ConnectionError, false);
      throw conn.closeReason ?? e;
    } finally {
      clearTimeout(timer);
    }
    return conn;
  }

  /** True from the end of the handshake until the connection starts closing. */
  get isOpen(): boolean {
    return this.state === "open";
  }

  /** True while the broker blocks the connection (between the `blocked` and `unblocked` events). */
  get isBlocked(): boolean {
    return this.blockedReason !== undefined;
  }

  /** Bytes read from the socket so far. */
  get bytesReceived(): number {
    return this.socket.bytesRead;
  }

  /** Bytes written to the socket so far. */
  get bytesSent(): number {
    return this.socket.bytesWritten;
  }

  /** Where this connection goes, without credentials. */
  get address(): string {
    return `${this.options.tls ? "amqps" : "amqp"}://${this.options.host}:${this.options.port}/${encodeURIComponent(this.options.vhost)}`;
  }

  // ─── handshake ──────────────────────────────────────────────────────────

  private expect(ids: readonly number[]): Promise<Method> {
    return new Promise((resolve, reject) => {
      this.waiter = { ids, resolve, reject };
    });
  }

  private async handshake(): Promise<void> {
    const n = await handshake({
      options: this.options,
      expect: (ids) => this.expect(ids),
      writeProtocolHeader: () => this.socket.write(PROTOCOL_HEADER),
      send: (method) => this.send(0, method),
      started: (server) => {
        this.server = server;
      },
      loggingIn: () => {
        this.startOkSent = true;
      },
      tuned: (t) => {
        this.tuned = true;
        this.channelMax = t.channelMax;
        this.frameMax = t.frameMax;
        this.heartbeat = t.heartbeat;
        this.parser.setFrameMax(t.frameMax);
      },
      refused: () => {
        this.sendRaw(0, { name: "connection.close-ok", args: {} });
        this.writer.flushNow(); // Connection.open tears down at once: the close-ok must go out first
      },
    });
    void n;
    this.state = "open";
    if (this.heartbeat > 0) this.loop = watchEventLoop();
    this.heartbeats = new Heartbeat(this.heartbeat, {
      bytesOut: () => this.socket.bytesWritten + this.writer.pending,
      sendHeartbeat: () => {
        this.writer.reserve(HEARTBEAT_FRAME.length);
        HEARTBEAT_FRAME.copy(this.writer.buf, this.writer.pos);
        this.writer.commit(this.writer.pos + HEARTBEAT_FRAME.length);
      },
      peerSilent: () => {
        this.observer?.heartbeatMissed?.();
        const stall = this.stall();
        const silent = `no data from ${this.options.host}:${this.options.port} for ${this.heartbeat * 2} s (two heartbeat intervals)`;
        this.fail(
          stall === undefined
            ? new HeartbeatTimeoutError(`${silent}: the broker or the network is gone`)
            : new HeartbeatTimeoutError(`${silent}: ${timedOutAfterStall(stall)}`, {
                eventLoopStallMs: stall,
              }),
          false,
        );
      },
    });
  }

  /** A stall of the event loop that explains losing the broker now (loop-stall.ts), if any. */
  private stall(): number | undefined {
    return this.state === "open" && this.loop ? stallBehind(this.loop.monitor, this.heartbeat) : undefined;
  }

  // ─── sending ────────────────────────────────────────────────────────────

  /**
   * Encodes and queues one method frame on `channel` (0: the connection itself). Throws
   * ConnectionClosedError when closed. The Channel API sends methods for you: prefer it.
   */
  send(channel: number, method: MethodInput): void {
    if (this.state === "closed") {
      throw new ConnectionClosedError("the connection is closed", { cause: this.closeReason });
    }
    this.sendRaw(channel, method);
  }

  private sendRaw(channel: number, method: MethodInput): void {
    const w = this.writer;
    w.reserve(4096);
    let end: number;
    try {
      end = writeMethodFrame(w.buf, w.pos, channel, method, this.frameMax);
    } catch (e) {
      if (!(e instanceof RangeError)) throw e;
      w.reserve(this.frameMax === 0 ? 16 * 1024 * 1024 : this.frameMax + FRAME_OVERHEAD);
      end = writeMethodFrame(w.buf, w.pos, channel, method, this.frameMax);
    }
    w.commit(end);
  }

  // ─── receiving ──────────────────────────────────────────────────────────

  private onFrame(type: number, channel: number, payload: Buffer): void {
    if (channel === 0) {
      // The handshake's methods carry views of their frame (connection.start's mechanisms, secure's
      // challenge) read after this returns: a transient read is copied first (channel 0 is rare).
      if (type === FRAME_METHOD)
        this.onConnectionMethod(decodeMethod(this.transient ? Buffer.from(payload) : payload));
      else if (type !== FRAME_HEARTBEAT)
        throw new FrameError(`frame type ${type} on channel 0`, { replyCode: 503 });
      return;
    }
    const ch = this.channels.get(channel);
    if (ch) {
      ch.onFrame(type, payload);
      return;
    }
    if (this.closingChannels.has(channel)) {
      // Until close-ok, frames for a channel we are closing are dropped (AMQP 0-9-1 §2.3.5.2).
      if (type === FRAME_METHOD && payload.readUInt32BE(0) === 0x00140029)
        this.closingChannels.delete(channel);
      return;
    }
    throw new FrameError(`frame for channel ${channel}, which is not open`, { replyCode: 504 });
  }

  private onConnectionMethod(m: Method): void {
    const w = this.waiter;
    if (w?.ids.includes(m.id)) {
      this.waiter = undefined;
      w.resolve(m);
      return;
    }
    switch (m.id) {
      case CONNECTION_CLOSE: {
        if (m.name !== "connection.close") return;
        this.sendRaw(0, { name: "connection.close-ok", args: {} });
        this.writer.flushNow();
        const a = m.args;
        const details = { ...a, methodName: METHOD_NAMES[(a.classId << 16) | a.methodId] };
        const feature = deprecatedFeatureIn(a.replyCode, a.replyText);
        const err =
          this.state === "handshake" && a.replyCode === ACCESS_REFUSED
            ? new AuthenticationError(
                `the broker refused the credentials of user "${this.options.username}" (${a.replyText})`,
              )
            : feature !== undefined
              ? new DeprecatedFeatureError({ ...details, feature })
              : new ConnectionClosedByBroker(details);
        this.fail(err, false);
        return;
      }
      case CONNECTION_CLOSE_OK:
        if (this.state === "closing") this.finish(undefined);
        return;
      case CONNECTION_BLOCKED:
        if (m.name !== "connection.blocked") return;
        this.blockedReason = m.args.reason || "blocked";
        this.emit("blocked", this.blockedReason);
        return;
      case CONNECTION_UNBLOCKED:
        this.blockedReason = undefined;
        this.emit("unblocked");
        return;
      case CONNECTION_UPDATE_SECRET_OK:
        this.emit("secretUpdated");
        return;
      default:
        throw new FrameError(`unexpected ${m.name} on channel 0`, { replyCode: 505 });
    }
  }

  // ─── channels ───────────────────────────────────────────────────────────

  /**
   * Opens a new channel (channel.open) on the next free number after the last one given.
   * Rejects with ConnectionClosedError when the connection is not open, ChannelLimitError when
   * every number up to channelMax is in use, MethodTimeoutError when channel.open-ok does not come.
   */
  async openChannel(): Promise<Channel> {
    if (this.state !== "open")
      throw new ConnectionClosedError("the connection is not open", { cause: this.closeReason });
    const id = this.allocateChannelId();
    const ch = new Channel(this, id);
    this.channels.set(id, ch);
    await ch.open();
    return ch;
  }

  private allocateChannelId(): number {
    const max = this.channelMax;
    for (let i = 0; i < max; i++) {
      const id = this.nextChannelId;
      this.nextChannelId = id >= max ? 1 : id + 1;
      if (!this.channels.has(id) && !this.closingChannels.has(id)) return id;
    }
    throw new ChannelLimitError(
      `all ${max} channels of this connection are in use; close some or use another connection`,
    );
  }

  /** Called by a channel once it is closed (ChannelHost): its number is free (after close-ok, if awaited). Not for applications. */
  releaseChannel(id: number, awaitingCloseOk: boolean): void {
    this.channels.delete(id);
    if (awaitingCloseOk) this.closingChannels.add(id);
  }

  /** Channels currently open. */
  get openChannels(): number {
    return this.channels.size;
  }

  /**
   * Sends connection.update-secret (a RabbitMQ extension; e.g. a refreshed OAuth 2 token) and
   * returns at once. The broker answers update-secret-ok (the `secretUpdated` event); a secret it
   * refuses closes the connection (the `close` event: ConnectionClosedByBroker 530). Throws
   * ConnectionClosedError when closed. `connect({ credentials })` does this for you.
   */
  updateSecret(newSecret: string, reason: string): void {
    this.send(0, { name: "connection.update-secret", args: { newSecret, reason } });
  }

  // ─── closing ────────────────────────────────────────────────────────────

  /**
   * Orderly close: connection.close, wait for close-ok, then the socket. `timeout` bounds the wait
   * in ms (default 5000; past it the socket is closed anyway); `replyText` is the reason sent
   * (default "goodbye"). Never rejects. Idempotent: a second call returns the same promise.
   */
  close(opts: { timeout?: number; replyText?: string } = {}): Promise<void> {
    if (this.closePromise) return this.closePromise;
    if (this.state === "closed") return Promise.resolve();
    this.state = "closing";
    this.closePromise = (async () => {
      try {
        this.sendRaw(0, {
          name: "connection.close",
          args: { replyCode: 200, replyText: opts.replyText ?? "goodbye", classId: 0, methodId: 0 },
        });
      } catch {
        // already failing
      }
      const timer = setTimeout(() => this.finish(undefined), opts.timeout ?? 5000);
      await this.closed;
      clearTimeout(timer);
    })();
    return this.closePromise;
  }

  /**
   * @internal Tears everything down after a fault (`close` event with `error`). `sendClose` tells
   * the broker why first (for frame errors). Applications call close().
   */
  fail(error: ConnectionError, sendClose: boolean): void {
    if (this.state === "closed") return;
    if (sendClose && this.socket.writable) {
      try {
        const code = error instanceof FrameError ? error.replyCode : 541;
        this.sendRaw(0, {
          name: "connection.close",
          args: { replyCode: code, replyText: error.message.slice(0, 200), classId: 0, methodId: 0 },
        });
        this.writer.flushNow();
      } catch {
        // nothing more to do
      }
    }
    this.finish(error, sendClose);
  }

  /** `graceful`: end the socket after the queued bytes (our connection.close) went out, rather than reset it. */
  private finish(error: ConnectionError | undefined, graceful = error === undefined): void {
    if (this.state === "closed") return;
    this.state = "closed";
    this.closeReason = error;
    this.heartbeats?.stop();
    this.loop?.release();
    if (this.waiter) {
      this.waiter.reject(error ?? new ConnectionClosedError("connection closed during the handshake"));
      this.waiter = undefined;
    }
    // A refusal of what a channel asked (a deprecated feature) fails that request with the refusal
    // itself: the caller reads what to do, not "the connection closed".
    const chErr =
      error instanceof DeprecatedFeatureError
        ? error
        : new ConnectionClosedError(
            error ? `the connection closed: ${error.message}` : "the connection was closed",
            error ? { cause: error } : undefined,
          );
    for (const ch of [...this.channels.values()]) ch.connectionClosed(chErr);
    this.channels.clear();
    this.writer.close();
    if (graceful) this.socket.end(() => this.socket.destroy());
    else this.socket.destroy();
    setTimeout(() => this.socket.destroy(), 1000).unref();
    this.resolveClosed();
    this.observer?.closed?.(this);
    this.emit("close", error);
  }

  /** Resolves once the connection is closed, whatever the cause. */
  whenClosed(): Promise<void> {
    return this.closed;
  }
}

export { VERSION } from "../version.js";
export {
  type ConnectionOptions,
  MIN_FRAME_MAX,
  type ResolvedOptions,
  resolveOptions,
} from "./connection-options.js";
export type { ChannelError, ServerInfo };
export { redactUrl };
