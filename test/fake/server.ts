/**
 * A scripted fake AMQP 0-9-1 server for tests, built on warren's own codec.
 *
 *   const fake = await FakeServer.start(async (peer) => {
 *     await peer.handshake({ heartbeat: 0 });
 *     peer.answerDefaults();                 // channel.open → open-ok, queue.declare → declare-ok, …
 *     await peer.method("queue.declare");    // wait for what the client sent
 *     peer.sendRaw(Buffer.from([1, 0, 0]));  // anything at all
 *   });
 *   const conn = await Connection.open({ port: fake.port });
 *   const peer = await fake.peer();          // the server side of that connection
 *   …
 *   await fake.close();
 *
 * The script runs once per accepted connection. A script that does nothing accepts
 * TCP and says nothing. Every frame the client sends is recorded (decoded when it
 * is a method) in `peer.frames`. Script errors never escape: they are kept in
 * `fake.errors` for the test to check.
 */
import net from "node:net";
import { FrameParser, writeBodyFrame, writeHeaderFrame, writeMethodFrame } from "../../src/protocol/frame.js";
import {
  type BasicProperties,
  CLASS_IDS,
  decodeMethod,
  FRAME_END,
  FRAME_HEARTBEAT,
  type Method,
  type MethodArgs,
  type MethodInput,
  type MethodName,
  PROTOCOL_HEADER,
} from "../../src/protocol/generated/spec.js";
import type { FieldTable } from "../../src/protocol/table.js";

export interface Frame {
  type: number;
  channel: number;
  payload: Buffer;
  /** The decoded method, for method frames that decode. */
  method?: Method;
}

export interface HandshakeOptions {
  mechanisms?: string;
  channelMax?: number;
  frameMax?: number;
  heartbeat?: number;
  versionMajor?: number;
  versionMinor?: number;
  /** Merged into connection.start's server properties, e.g. { version: "4.3.0" } to play a 4.3 broker. */
  serverProperties?: FieldTable;
}

export interface HandshakeResult {
  startOk: MethodArgs["connection.start-ok"];
  tuneOk: MethodArgs["connection.tune-ok"];
  open: MethodArgs["connection.open"];
}

export type Script = (peer: FakePeer) => void | Promise<void>;

type Answer = (m: Method, channel: number, peer: FakePeer) => MethodInput | MethodInput[] | undefined;

interface Waiter {
  match: (f: Frame) => boolean;
  resolve: (f: Frame) => void;
}

/** Canned replies for the common synchronous methods. */
export const DEFAULT_ANSWERS: Partial<Record<MethodName, Answer>> = {
  "channel.open": () => ({ name: "channel.open-ok", args: {} }),
  "channel.close": () => ({ name: "channel.close-ok", args: {} }),
  "queue.declare": (m) => ({
    name: "queue.declare-ok",
    args: {
      queue: (m.args as MethodArgs["queue.declare"]).queue || "amq.gen-fake",
      messageCount: 0,
      consumerCount: 0,
    },
  }),
  "queue.bind": () => ({ name: "queue.bind-ok", args: {} }),
  "exchange.declare": () => ({ name: "exchange.declare-ok", args: {} }),
  "basic.qos": () => ({ name: "basic.qos-ok", args: {} }),
  "basic.consume": (m) => ({
    name: "basic.consume-ok",
    args: { consumerTag: (m.args as MethodArgs["basic.consume"]).consumerTag || "amq.ctag-fake" },
  }),
  "basic.cancel": (m) => ({
    name: "basic.cancel-ok",
    args: { consumerTag: (m.args as MethodArgs["basic.cancel"]).consumerTag },
  }),
  "confirm.select": () => ({ name: "confirm.select-ok", args: {} }),
  "connection.close": () => ({ name: "connection.close-ok", args: {} }),
};

/** The server side of one client connection. */
export class FakePeer {
  /** Every frame the client sent, in order. */
  readonly frames: Frame[] = [];
  /** The 8 bytes the client opened with (once received). */
  header: Buffer | undefined;
  /** Resolves when the socket is closed (by either side). */
  readonly closed: Promise<void>;
  /** True once the socket closed. */
  isClosed = false;

  private readonly parser = new FrameParser((t, c, p) => this.onFrame(t, c, p), 0);
  private pre = Buffer.alloc(0);
  private waiters: Waiter[] = [];
  private taken = new Set<Frame>();
  private answers = new Map<string, Answer>();
  private watchers: ((f: Frame) => void)[] = [];
  private headerWaiters: (() => void)[] = [];
  /** A parse failure of the client's bytes (the client sent something that is not AMQP). */
  parseError: unknown;

  constructor(readonly socket: net.Socket) {
    this.closed = new Promise((resolve) =>
      socket.on("close", () => {
        this.isClosed = true;
        resolve();
      }),
    );
    socket.on("error", () => {}); // resets are part of the game
    socket.on("data", (chunk: Buffer) => this.onData(chunk));
  }

  // ─── receiving ──────────────────────────────────────────────────────────

  private onData(chunk: Buffer): void {
    if (this.parseError !== undefined) return;
    if (this.header === undefined) {
      this.pre = Buffer.concat([this.pre, chunk]);
      if (this.pre.length < PROTOCOL_HEADER.length) return;
      this.header = this.pre.subarray(0, PROTOCOL_HEADER.length);
      chunk = this.pre.subarray(PROTOCOL_HEADER.length);
      for (const w of this.headerWaiters.splice(0)) w();
    }
    try {
      this.parser.push(chunk);
    } catch (e) {
      this.parseError = e;
    }
  }

  private onFrame(type: number, channel: number, payload: Buffer): void {
    const f: Frame = { type, channel, payload: Buffer.from(payload) };
    if (type === 1) {
      try {
        f.method = decodeMethod(f.payload);
      } catch {
        // recorded undecoded
      }
    }
    this.frames.push(f);
    for (const w of this.watchers) w(f);
    for (const w of [...this.waiters]) {
      if (!this.taken.has(f) && w.match(f)) {
        this.taken.add(f);
        this.waiters.splice(this.waiters.indexOf(w), 1);
        w.resolve(f);
      }
    }
    const answer = f.method && this.answers.get(f.method.name);
    if (answer && f.method && !this.socket.destroyed) {
      const r = answer(f.method, channel, this);
      const replies = r === undefined ? [] : Array.isArray(r) ? r : [r];
      for (const m of replies) this.send(channel, m);
      // Hang up after answering a connection.close; an answer that sends nothing swallows it.
      if (f.method.name === "connection.close" && replies.length > 0) this.socket.end();
    }
  }

  /** Resolves once the client's protocol header arrived. */
  protocolHeader(): Promise<Buffer> {
    if (this.header) return Promise.resolve(this.header);
    return new Promise((resolve) => this.headerWaiters.push(() => resolve(this.header!)));
  }

  /** The first received frame matching `match` not yet returned by an earlier `next`/`method` call. */
  next(match: (f: Frame) => boolean = () => true): Promise<Frame> {
    const f = this.frames.find((x) => !this.taken.has(x) && match(x));
    if (f) {
      this.taken.add(f);
      return Promise.resolve(f);
    }
    return new Promise((resolve) => this.waiters.push({ match, resolve }));
  }

  /** The next method `name` the client sent (its arguments). */
  async method<K extends MethodName>(name: K): Promise<MethodArgs[K]> {
    const f = await this.next((x) => x.method?.name === name);
    return f.method!.args as MethodArgs[K];
  }

  /** Names of all methods received, e.g. ["connection.start-ok", …]. */
  get methodNames(): string[] {
    return this.frames.flatMap((f) => (f.method ? [f.method.name] : []));
  }

  /** Received frames of one type (8 = heartbeat). */
  framesOfType(type: number): Frame[] {
    return this.frames.filter((f) => f.type === type);
  }

  // ─── answering ──────────────────────────────────────────────────────────

  /** Calls fn with every frame the client sends from now on (before answers are sent). */
  watch(fn: (f: Frame) => void): this {
    this.watchers.push(fn);
    return this;
  }

  /** Answers every future `name` from the client with what `fn` returns. */
  answer<K extends MethodName>(name: K, fn: Answer): this {
    this.answers.set(name, fn);
    return this;
  }

  /** Installs DEFAULT_ANSWERS (channel.open, queue.declare, basic.consume, connection.close, …). */
  answerDefaults(): this {
    for (const [name, fn] of Object.entries(DEFAULT_ANSWERS)) this.answers.set(name, fn);
    return this;
  }

  // ─── sending ────────────────────────────────────────────────────────────

  /** Sends raw bytes (a protocol header, garbage, half a frame…). */
  sendRaw(bytes: Buffer | Uint8Array | string): void {
    if (!this.socket.destroyed)
      this.socket.write(typeof bytes === "string" ? Buffer.from(bytes, "latin1") : bytes);
  }

  /** Encodes one method frame. */
  static methodFrame(channel: number, method: MethodInput): Buffer {
    const buf = Buffer.alloc(1 << 16);
    return buf.subarray(0, writeMethodFrame(buf, 0, channel, method, 0));
  }

  /** Builds a frame by hand: any type, any size field, any end octet. */
  static rawFrame(
    type: number,
    channel: number,
    payload: Buffer,
    opts: { size?: number; end?: number } = {},
  ) {
    const b = Buffer.alloc(payload.length + 8);
    b[0] = type;
    b.writeUInt16BE(channel, 1);
    b.writeUInt32BE(opts.size ?? payload.length, 3);
    payload.copy(b, 7);
    b[b.length - 1] = opts.end ?? FRAME_END;
    return b;
  }

  send(channel: number, method: MethodInput): void {
    this.sendRaw(FakePeer.methodFrame(channel, method));
  }

  sendHeader(channel: number, bodySize: number, props?: BasicProperties): void {
    const buf = Buffer.alloc(1 << 16);
    this.sendRaw(buf.subarray(0, writeHeaderFrame(buf, 0, channel, CLASS_IDS.basic, bodySize, props, 0)));
  }

  sendBody(channel: number, body: Buffer): void {
    const buf = Buffer.alloc(body.length + 8);
    this.sendRaw(buf.subarray(0, writeBodyFrame(buf, 0, channel, body, 0, body.length)));
  }

  sendHeartbeat(): void {
    this.sendRaw(FakePeer.rawFrame(FRAME_HEARTBEAT, 0, Buffer.alloc(0)));
  }

  /**
   * The first step of a handshake: waits for the client's protocol header and sends
   * connection.start (PLAIN AMQPLAIN). For scripts that go their own way after it.
   */
  async greet(
    o: Pick<HandshakeOptions, "mechanisms" | "versionMajor" | "versionMinor" | "serverProperties"> = {},
  ): Promise<void> {
    await this.protocolHeader();
    this.send(0, {
      name: "connection.start",
      args: {
        versionMajor: o.versionMajor ?? 0,
        versionMinor: o.versionMinor ?? 9,
        serverProperties: {
          product: "fake",
          capabilities: { publisher_confirms: true },
          ...o.serverProperties,
        },
        mechanisms: o.mechanisms ?? "PLAIN AMQPLAIN",
        locales: "en_US",
      },
    });
  }

  /** A normal handshake: start (PLAIN AMQPLAIN), tune, open-ok. Resolves with what the client said. */
  async handshake(o: HandshakeOptions = {}): Promise<HandshakeResult> {
    await this.greet(o);
    const startOk = await this.method("connection.start-ok");
    this.send(0, {
      name: "connection.tune",
      args: { channelMax: o.channelMax ?? 2047, frameMax: o.frameMax ?? 131072, heartbeat: o.heartbeat ?? 0 },
    });
    const tuneOk = await this.method("connection.tune-ok");
    const open = await this.method("connection.open");
    this.send(0, { name: "connection.open-ok", args: {} });
    return { startOk, tuneOk, open };
  }

  // ─── the socket ─────────────────────────────────────────────────────────

  /** Stops reading (the client's writes back up). */
  pause(): void {
    this.socket.pause();
  }

  resume(): void {
    this.socket.resume();
  }

  /** Half-close (FIN). */
  end(): void {
    this.socket.end();
  }

  /** Closes at once; `reset` sends a TCP RST instead of a FIN. */
  destroy(reset = false): void {
    if (reset && !this.socket.destroyed) this.socket.resetAndDestroy();
    else this.socket.destroy();
  }
}

export class FakeServer {
  /** Peers in the order their connections were accepted. */
  readonly peers: FakePeer[] = [];
  /** Errors thrown by the script (a test should expect this to be empty). */
  readonly errors: unknown[] = [];
  private peerWaiters: ((p: FakePeer) => void)[] = [];

  private constructor(
    private readonly server: net.Server,
    private readonly script: Script,
  ) {
    server.on("connection", (socket) => this.accept(socket));
  }

  static async start(script: Script = () => {}): Promise<FakeServer> {
    const server = net.createServer();
    const fake = new FakeServer(server, script);
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(0, "127.0.0.1", () => resolve());
    });
    return fake;
  }

  get port(): number {
    return (this.server.address() as net.AddressInfo).port;
  }

  /** The i-th accepted connection (waits for it). */
  peer(i = 0): Promise<FakePeer> {
    const p = this.peers[i];
    if (p) return Promise.resolve(p);
    return new Promise((resolve) => {
      const check = (): void => {
        const q = this.peers[i];
        if (q) resolve(q);
        else this.peerWaiters.push(check);
      };
      check();
    });
  }

  private accept(socket: net.Socket): void {
    const peer = new FakePeer(socket);
    this.peers.push(peer);
    for (const w of this.peerWaiters.splice(0)) w(peer);
    Promise.resolve()
      .then(() => this.script(peer))
      .catch((e: unknown) => {
        if (!peer.isClosed) this.errors.push(e);
      });
  }

  /** Destroys every connection and stops listening. */
  async close(): Promise<void> {
    for (const p of this.peers) p.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
