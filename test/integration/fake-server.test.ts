/**
 * What a real broker will not do on demand, played by a scripted fake server:
 * silence, foreign protocol headers, malformed frames, content out of order,
 * heartbeat loss, forced close, refused credentials, odd tuning, a full socket
 * and random garbage. Each case must end with a typed error and a cleanly closed
 * connection: no crash, no unhandled rejection, no hang.
 */
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from "vitest";
import {
  AuthenticationError,
  type Channel,
  ChannelClosedByBroker,
  ChannelClosedError,
  ChannelLimitError,
  ConfigError,
  Connection,
  ConnectionClosedByBroker,
  ConnectionClosedError,
  type ConnectionError,
  type ConnectionOptions,
  ConnectTimeoutError,
  FrameError,
  HandshakeError,
  HeartbeatTimeoutError,
  MethodTimeoutError,
  SocketError,
  VhostNotAllowedError,
  type WarrenError,
} from "../../src/index.js";
import { METHOD_IDS, type MethodName } from "../../src/protocol/generated/spec.js";
import { FakePeer, FakeServer, type HandshakeOptions } from "../fake/server.js";
import { errorOf, rejection, sleep, within } from "../support/async.js";
import { useFakeServers } from "../support/fakes.js";
import { waitFor } from "../support/wait.js";

// ─── harness ────────────────────────────────────────────────────────────────

const unhandled: unknown[] = [];
const onUnhandled = (e: unknown) => unhandled.push(e);
beforeAll(() => {
  process.on("unhandledRejection", onUnhandled);
  process.on("uncaughtException", onUnhandled);
});
afterAll(() => {
  process.off("unhandledRejection", onUnhandled);
  process.off("uncaughtException", onUnhandled);
  expect(unhandled).toEqual([]);
});

const { fakes, conns } = useFakeServers();

async function fakeServer(script?: (peer: FakePeer) => void | Promise<void>): Promise<FakeServer> {
  const f = await FakeServer.start(script);
  fakes.push(f);
  return f;
}

async function open(fake: FakeServer, o: ConnectionOptions = {}): Promise<Connection> {
  const c = await Connection.open({ host: "127.0.0.1", port: fake.port, connectionTimeout: 2000, ...o });
  conns.push(c);
  return c;
}

/** Resolves with the error the connection closes with (attach before the fault). */
function closeEvent(conn: Connection): Promise<ConnectionError | undefined> {
  return new Promise((resolve) => conn.once("close", resolve));
}

/**
 * The safety net of within() around what must happen promptly: long enough for a loaded machine,
 * never a time limit the test asserts.
 */
const HANG = 5_000;

/** One turn of the event loop: the connection's writer flushes on setImmediate. */
const flushed = () => new Promise<void>((resolve) => setImmediate(resolve));

/** Every message, String() and stack along the cause chain. */
function allText(err: unknown): string {
  const parts: string[] = [];
  let e: unknown = err;
  for (let i = 0; e !== undefined && e !== null && i < 10; i++) {
    parts.push(String(e));
    if (e instanceof Error) {
      parts.push(e.message, e.stack ?? "");
      e = e.cause;
    } else break;
  }
  return parts.join("\n");
}

interface Session {
  fake: FakeServer;
  peer: FakePeer;
  conn: Connection;
  ch: Channel;
  closed: Promise<ConnectionError | undefined>;
  /** Settles with the rejection of a queue.purge the fake never answers (resolving fails the test). */
  pending: Promise<unknown>;
}

/**
 * Handshake, default answers, one channel open, `before` run on it, then one RPC left pending
 * (replies come in order, so it must be the last one sent).
 */
async function session(
  hs: HandshakeOptions = {},
  o: ConnectionOptions = {},
  before?: (ch: Channel) => Promise<unknown>,
): Promise<Session> {
  const fake = await fakeServer(async (peer) => {
    await peer.handshake(hs);
    peer.answerDefaults();
  });
  const conn = await open(fake, o);
  const closed = closeEvent(conn);
  const peer = await fake.peer();
  const ch = await conn.openChannel();
  await before?.(ch);
  const pending = rejection(ch.queuePurge({ queue: "q" }));
  await peer.method("queue.purge");
  return { fake, peer, conn, ch, closed, pending };
}

/** The client closed because of `err`: close event, closeReason, socket gone, pending RPC failed with it as cause. */
async function expectFailed<E extends Error>(s: Session, type: new (...a: never[]) => E): Promise<E> {
  const err = await within(s.closed, HANG, "close event");
  expect(err).toBeInstanceOf(type);
  expect(s.conn.closeReason).toBe(err);
  expect(s.conn.isOpen).toBe(false);
  const p = await within(s.pending, HANG, "pending RPC");
  expect(p).toBeInstanceOf(ConnectionClosedError);
  expect((p as Error).cause).toBe(err);
  await within(s.peer.closed, HANG, "socket closed");
  return err as unknown as E;
}

/** The connection.close the client sent the fake (its arguments). */
function clientClose(peer: FakePeer) {
  return within(peer.method("connection.close"), HANG, "client connection.close");
}

// ─── connecting ─────────────────────────────────────────────────────────────

describe("connecting", () => {
  it("server accepts TCP and says nothing → ConnectTimeoutError within connectionTimeout, socket destroyed", async () => {
    const fake = await fakeServer(); // no script: silence
    const t0 = performance.now();
    const err = await rejection(open(fake, { connectionTimeout: 500 }));
    const elapsed = performance.now() - t0;
    expect(err).toBeInstanceOf(ConnectTimeoutError);
    expect((err as ConnectTimeoutError).recoverable).toBe(true);
    // Not before the configured 500 ms; the upper bound (5×) only tells a timeout from a hang.
    expect(elapsed).toBeGreaterThanOrEqual(490);
    expect(elapsed).toBeLessThan(2_500);
    const peer = await fake.peer();
    expect(peer.header).toEqual(Buffer.from("AMQP\0\0\x09\x01", "latin1"));
    await within(peer.closed, HANG, "socket destroyed");
  });

  it("server stalls after connection.start → ConnectTimeoutError, not a hang", async () => {
    const fake = await fakeServer(async (peer) => {
      await peer.greet();
    });
    const err = await rejection(open(fake, { connectionTimeout: 400 }));
    expect(err).toBeInstanceOf(ConnectTimeoutError);
    const peer = await fake.peer();
    expect(peer.methodNames).toEqual(["connection.start-ok"]);
    await within(peer.closed, HANG, "socket destroyed");
  });

  it("server answers with another protocol header → error naming the protocol", async () => {
    const fake = await fakeServer(async (peer) => {
      await peer.protocolHeader();
      peer.sendRaw("AMQP\0\x01\x00\x00");
      peer.end(); // as RabbitMQ does
    });
    const err = await rejection(open(fake));
    expect(err).toBeInstanceOf(HandshakeError);
    expect((err as Error).cause).toBeInstanceOf(FrameError);
    expect((err as Error).message).toMatch(/protocol/);
    expect((err as Error).message).toMatch(/AMQP 0 1 0/);
    // Talking to a server that speaks another protocol again will not help.
    expect((err as WarrenError).recoverable).toBe(false);
    await within((await fake.peer()).closed, HANG, "socket closed");
  });

  it("connection.start with another version → HandshakeError", async () => {
    const fake = await fakeServer((peer) =>
      peer.handshake({ versionMajor: 8, versionMinor: 0 }).then(() => {}),
    );
    const err = await rejection(open(fake));
    expect(err).toBeInstanceOf(HandshakeError);
    expect((err as Error).message).toMatch(/8-0/);
  });

  it("server offers only EXTERNAL when the client wants PLAIN → HandshakeError", async () => {
    const fake = await fakeServer((peer) => peer.handshake({ mechanisms: "EXTERNAL" }).then(() => {}));
    const err = await rejection(open(fake, { authMechanism: "PLAIN" }));
    expect(err).toBeInstanceOf(HandshakeError);
    expect((err as HandshakeError).recoverable).toBe(false);
    expect((err as Error).message).toMatch(/EXTERNAL/);
    expect((err as Error).message).toMatch(/PLAIN/);
    const peer = await fake.peer();
    expect(peer.methodNames).not.toContain("connection.start-ok");
    await within(peer.closed, HANG, "socket closed");
  });

  it("connection.secure (a SASL challenge) → HandshakeError", async () => {
    const fake = await fakeServer(async (peer) => {
      await peer.greet();
      await peer.method("connection.start-ok");
      peer.send(0, { name: "connection.secure", args: { challenge: "more please" } });
    });
    const err = await rejection(open(fake));
    expect(err).toBeInstanceOf(HandshakeError);
    await within((await fake.peer()).closed, HANG, "socket closed");
  });

  it("connection.close 530 in answer to connection.open → VhostNotAllowedError, close-ok sent", async () => {
    const fake = await fakeServer(async (peer) => {
      await peer.greet();
      await peer.method("connection.start-ok");
      peer.send(0, { name: "connection.tune", args: { channelMax: 0, frameMax: 131072, heartbeat: 0 } });
      await peer.method("connection.open");
      peer.send(0, {
        name: "connection.close",
        args: { replyCode: 530, replyText: "NOT_ALLOWED - vhost nope not found", classId: 10, methodId: 40 },
      });
    });
    const err = await rejection(open(fake, { vhost: "nope" }));
    expect(err).toBeInstanceOf(VhostNotAllowedError);
    expect((err as VhostNotAllowedError).recoverable).toBe(false);
    expect((err as VhostNotAllowedError).methodName).toBe("connection.open");
    const peer = await fake.peer();
    await within(peer.closed, HANG, "socket closed");
    expect(peer.methodNames).toContain("connection.close-ok");
  });

  it("server hangs up right after start-ok (no connection.close, as brokers without authentication_failure_close do on bad credentials) → AuthenticationError at once, not a timeout", async () => {
    const fake = await fakeServer(async (peer) => {
      await peer.greet();
      await peer.method("connection.start-ok");
      peer.end();
    });
    const t0 = performance.now();
    const err = await rejection(open(fake, { connectionTimeout: 30_000 }));
    expect(err).toBeInstanceOf(AuthenticationError);
    expect((err as AuthenticationError).recoverable).toBe(false);
    expect((err as Error).message).toMatch(/closed the connection after the login/);
    // At the hang-up, not at the 30 s connectionTimeout (a ConnectTimeoutError would say so too).
    expect(performance.now() - t0).toBeLessThan(10_000);
  });

  it("server accepts and hangs up at once → SocketError", async () => {
    const fake = await fakeServer((peer) => peer.destroy());
    const err = await rejection(open(fake));
    expect(err).toBeInstanceOf(SocketError);
  });

  describe("authentication refused (connection.close 403 after start-ok)", () => {
    const password = "Zq9-very-Distinctive-pa55word!";
    for (const mech of ["PLAIN", "AMQPLAIN", "url"] as const) {
      it(`${mech} → AuthenticationError, not recoverable, password nowhere`, async () => {
        const fake = await fakeServer(async (peer) => {
          await peer.greet();
          await peer.method("connection.start-ok");
          peer.send(0, {
            name: "connection.close",
            args: {
              replyCode: 403,
              replyText: `ACCESS_REFUSED - Login was refused using authentication mechanism ${mech}. For details see the broker logfile.`,
              classId: 0,
              methodId: 0,
            },
          });
          await peer.method("connection.close-ok");
          peer.end();
        });
        const err = await rejection(
          mech === "url"
            ? open(fake, { url: `amqp://alice:${encodeURIComponent(password)}@127.0.0.1:${fake.port}/` })
            : open(fake, { username: "alice", password, authMechanism: mech }),
        );
        expect(err).toBeInstanceOf(AuthenticationError);
        expect(err).not.toBeInstanceOf(SocketError);
        expect((err as AuthenticationError).recoverable).toBe(false);
        expect((err as Error).message).toMatch(/alice/);
        expect(allText(err)).not.toContain(password);
        expect(JSON.stringify(err)).not.toContain(password);
        const peer = await fake.peer();
        const startOk = peer.frames.find((f) => f.method?.name === "connection.start-ok")!;
        expect(startOk.method!.args).toMatchObject({ mechanism: mech === "url" ? "PLAIN" : mech });
        expect(startOk.payload.includes(password)).toBe(true); // it was really sent, and only there
        await within(peer.closed, HANG, "socket closed");
        expect(peer.methodNames).toEqual(["connection.start-ok", "connection.close-ok"]);
      });
    }
  });

  describe("tune", () => {
    it("server proposes frame_max 4096 and channel_max 0 → tune-ok keeps 4096 and our channel_max", async () => {
      let tuneOk: { channelMax: number; frameMax: number; heartbeat: number } | undefined;
      const fake = await fakeServer(async (peer) => {
        tuneOk = (await peer.handshake({ frameMax: 4096, channelMax: 0, heartbeat: 0 })).tuneOk;
        peer.answerDefaults();
      });
      const conn = await open(fake);
      expect(tuneOk).toEqual({ channelMax: 2047, frameMax: 4096, heartbeat: 0 });
      expect(conn.frameMax).toBe(4096);
      expect(conn.channelMax).toBe(2047);
      // Publishing now splits bodies into frames of at most 4096 bytes.
      const ch = await conn.openChannel();
      ch.basicPublish("", "q", Buffer.alloc(10_000, 7));
      const peer = await fake.peer();
      let got = 0;
      while (got < 10_000) {
        const f = await within(
          peer.next((x) => x.type === 3),
          HANG,
          "body frame",
        );
        expect(f.payload.length + 8).toBeLessThanOrEqual(4096);
        got += f.payload.length;
      }
      expect(got).toBe(10_000);
      // And a frame from the server above 4096 is refused.
      const closed = closeEvent(conn);
      peer.sendRaw(FakePeer.rawFrame(3, ch.id, Buffer.alloc(4089)));
      const err = await within(closed, HANG, "close");
      expect(err).toBeInstanceOf(FrameError);
      expect((await clientClose(peer)).replyCode).toBe(501);
    });

    it("server proposes frame_max 0 (no limit) → the client keeps its own", async () => {
      let tuneOk: { channelMax: number; frameMax: number; heartbeat: number } | undefined;
      const fake = await fakeServer(async (peer) => {
        tuneOk = (await peer.handshake({ frameMax: 0, channelMax: 100, heartbeat: 60 })).tuneOk;
      });
      const conn = await open(fake, { heartbeat: 0, channelMax: 500 });
      expect(tuneOk).toEqual({ channelMax: 100, frameMax: 131072, heartbeat: 0 });
      expect(conn.channelMax).toBe(100);
    });

    it("server channel_max 2 → a third channel is a ChannelLimitError, nothing sent for it", async () => {
      const fake = await fakeServer(async (peer) => {
        await peer.handshake({ channelMax: 2 });
        peer.answerDefaults();
      });
      const conn = await open(fake);
      expect(conn.channelMax).toBe(2);
      const first = await conn.openChannel();
      await conn.openChannel();
      const refused = await rejection(conn.openChannel());
      expect(refused).toBeInstanceOf(ChannelLimitError);
      expect((refused as Error).message).toMatch(/all 2 channels/);
      const peer = await fake.peer();
      // A round trip after the refusal: whatever the client sent before it has reached the fake.
      await first.queueDeclare({ queue: "after-the-refusal" });
      expect(peer.methodNames.filter((n) => n === "channel.open")).toHaveLength(2);
      expect(conn.isOpen).toBe(true);
    });

    it("frameMax below 8192 in ConnectionOptions → ConfigError, nothing dialled", async () => {
      const fake = await fakeServer((peer) => peer.handshake().then(() => {}));
      const err = await rejection(open(fake, { frameMax: 4096 }));
      expect(err).toBeInstanceOf(ConfigError);
      expect((err as Error).message).toMatch(/frameMax/);
      // A connection opened after the refusal is the first the fake accepts.
      await open(fake);
      expect(fake.peers).toHaveLength(1);
    });
  });
});

// ─── malformed frames after open ────────────────────────────────────────────

describe("malformed frames after open → FrameError, connection.close sent, pending RPCs fail", () => {
  it("bad frame-end octet → 501", async () => {
    const s = await session();
    const frame = FakePeer.methodFrame(s.ch.id, { name: "queue.purge-ok", args: { messageCount: 3 } });
    frame[frame.length - 1] = 0x00;
    s.peer.sendRaw(frame);
    const err = await expectFailed(s, FrameError);
    expect(err.message).toMatch(/0xCE/);
    expect((await clientClose(s.peer)).replyCode).toBe(501);
  });

  it("unknown frame type → 501", async () => {
    const s = await session();
    s.peer.sendRaw(FakePeer.rawFrame(9, 0, Buffer.alloc(4)));
    const err = await expectFailed(s, FrameError);
    expect(err.message).toMatch(/frame type 9/);
    expect((await clientClose(s.peer)).replyCode).toBe(501);
  });

  it("a frame declaring a size above frame_max → 501, before any of it is buffered", async () => {
    const s = await session({ frameMax: 131072 });
    // Only the 7-byte header: the client must not wait for (or allocate) 1 GiB.
    const head = FakePeer.rawFrame(1, s.ch.id, Buffer.alloc(0), { size: 1 << 30 }).subarray(0, 7);
    s.peer.sendRaw(head);
    const err = await expectFailed(s, FrameError);
    expect(err.message).toMatch(/frame_max/);
    expect((await clientClose(s.peer)).replyCode).toBe(501);
  });

  it("a method frame with truncated arguments → 502", async () => {
    const s = await session();
    const full = FakePeer.methodFrame(s.ch.id, {
      name: "queue.declare-ok",
      args: { queue: "some-queue", messageCount: 1, consumerCount: 2 },
    });
    const payload = full.subarray(7, full.length - 1);
    s.peer.sendRaw(FakePeer.rawFrame(1, s.ch.id, payload.subarray(0, payload.length - 5)));
    const err = await expectFailed(s, FrameError);
    expect(err.replyCode).toBe(502);
    expect(err.message).toMatch(/queue\.declare-ok/);
    expect((await clientClose(s.peer)).replyCode).toBe(502);
  });

  it("a method frame shorter than its class and method ids → 502", async () => {
    const s = await session();
    s.peer.sendRaw(FakePeer.rawFrame(1, 0, Buffer.from([0, 10])));
    await expectFailed(s, FrameError);
    expect((await clientClose(s.peer)).replyCode).toBe(502);
  });

  it("an unknown class/method id → 540", async () => {
    const s = await session();
    s.peer.sendRaw(FakePeer.rawFrame(1, s.ch.id, Buffer.from([0, 0xff, 0, 0x0a, 1, 2, 3])));
    const err = await expectFailed(s, FrameError);
    expect(err.message).toMatch(/unknown method 255\.10/);
    expect((await clientClose(s.peer)).replyCode).toBe(540);
  });

  it("a frame for a channel that is not open → 504", async () => {
    const s = await session();
    s.peer.send(42, { name: "channel.open-ok", args: {} });
    await expectFailed(s, FrameError);
    expect((await clientClose(s.peer)).replyCode).toBe(504);
  });

  it("a reply nobody asked for → 505", async () => {
    const s = await session();
    s.peer.send(s.ch.id, { name: "exchange.delete-ok", args: {} });
    await expectFailed(s, FrameError);
    expect((await clientClose(s.peer)).replyCode).toBe(505);
  });

  it("a server-only method sent to the client on channel 0 → 505", async () => {
    const s = await session();
    s.peer.send(0, { name: "connection.open", args: { virtualHost: "/" } });
    await expectFailed(s, FrameError);
    expect((await clientClose(s.peer)).replyCode).toBe(505);
  });
});

// ─── content ────────────────────────────────────────────────────────────────

describe("content frames", () => {
  async function consuming(o: ConnectionOptions = {}): Promise<Session & { messages: Buffer[] }> {
    const messages: Buffer[] = [];
    const s = await session({}, o, (ch) =>
      ch.basicConsume({ queue: "q" }, (m) => {
        messages.push(m.body);
      }),
    );
    return { ...s, messages };
  }
  const deliver = (s: Session, tag = 1) =>
    s.peer.send(s.ch.id, {
      name: "basic.deliver",
      args: { consumerTag: "amq.ctag-fake", deliveryTag: tag, exchange: "", routingKey: "q" },
    });

  it("a well-formed delivery in pieces arrives (the fake itself is sound)", async () => {
    const s = await consuming();
    deliver(s);
    s.peer.sendHeader(s.ch.id, 10, { contentType: "text/plain" });
    s.peer.sendBody(s.ch.id, Buffer.from("01234"));
    s.peer.sendBody(s.ch.id, Buffer.from("56789"));
    await waitFor(() => s.messages.length > 0, "the delivery", HANG);
    expect(s.messages[0]!.toString()).toBe("0123456789");
    expect(s.conn.isOpen).toBe(true);
  });

  it("a large delivery at frame_max 4096 is reassembled from many body frames", async () => {
    const messages: Buffer[] = [];
    const s = await session({ frameMax: 4096 }, {}, (ch) =>
      ch.basicConsume({ queue: "q" }, (m) => {
        messages.push(m.body);
      }),
    );
    const body = Buffer.alloc(50_000);
    for (let i = 0; i < body.length; i++) body[i] = i % 251;
    deliver(s);
    s.peer.sendHeader(s.ch.id, body.length);
    for (let off = 0; off < body.length; off += 4088)
      s.peer.sendBody(s.ch.id, body.subarray(off, off + 4088));
    await waitFor(() => messages.length > 0, "the delivery", HANG);
    expect(messages[0]!.equals(body)).toBe(true);
  });

  it("body larger than declared (header 10, one body frame of 20) → FrameError 501", async () => {
    const s = await consuming();
    deliver(s);
    s.peer.sendHeader(s.ch.id, 10);
    s.peer.sendBody(s.ch.id, Buffer.alloc(20, 1));
    const err = await expectFailed(s, FrameError);
    expect(err.message).toMatch(/larger than the 10 bytes/);
    expect((await clientClose(s.peer)).replyCode).toBe(501);
    expect(s.messages).toEqual([]);
  });

  it("body larger than declared (header 10, body frames 6 + 14) → FrameError 501", async () => {
    const s = await consuming();
    deliver(s);
    s.peer.sendHeader(s.ch.id, 10);
    s.peer.sendBody(s.ch.id, Buffer.alloc(6, 1));
    s.peer.sendBody(s.ch.id, Buffer.alloc(14, 2));
    await expectFailed(s, FrameError);
    expect((await clientClose(s.peer)).replyCode).toBe(501);
    expect(s.messages).toEqual([]);
  });

  it("body frame without a header → FrameError 505", async () => {
    const s = await consuming();
    s.peer.sendBody(s.ch.id, Buffer.alloc(5));
    const err = await expectFailed(s, FrameError);
    expect(err.replyCode).toBe(505);
    expect((await clientClose(s.peer)).replyCode).toBe(505);
  });

  it("header frame without a content method → FrameError 505", async () => {
    const s = await consuming();
    s.peer.sendHeader(s.ch.id, 5);
    const err = await expectFailed(s, FrameError);
    expect(err.replyCode).toBe(505);
    expect((await clientClose(s.peer)).replyCode).toBe(505);
  });

  it("a method where the body should be → FrameError 505", async () => {
    const s = await consuming();
    deliver(s);
    s.peer.sendHeader(s.ch.id, 10);
    deliver(s, 2);
    const err = await expectFailed(s, FrameError);
    expect(err.replyCode).toBe(505);
  });

  it("content header on channel 0 → FrameError 503", async () => {
    const s = await consuming();
    s.peer.sendHeader(0, 5);
    const err = await expectFailed(s, FrameError);
    expect(err.replyCode).toBe(503);
  });

  it("a content header whose properties run past the frame → FrameError 502", async () => {
    const s = await consuming();
    deliver(s);
    // class 60, weight 0, size 4, flags: content-type present, then a short string claiming 200 bytes.
    const payload = Buffer.from([0, 60, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0x80, 0, 200, 65, 66]);
    s.peer.sendRaw(FakePeer.rawFrame(2, s.ch.id, payload));
    const err = await expectFailed(s, FrameError);
    expect(err.replyCode).toBe(502);
  });

  it("a content header whose headers table is malformed → FrameError 502 (not a field-table error)", async () => {
    const s = await consuming();
    deliver(s);
    // flags: headers present; table of 5 bytes holding a key "a" of unknown type 'Z'.
    const payload = Buffer.from([0, 60, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0x20, 0, 0, 0, 0, 3, 1, 97, 90]);
    s.peer.sendRaw(FakePeer.rawFrame(2, s.ch.id, payload));
    const err = await expectFailed(s, FrameError);
    expect(err.replyCode).toBe(502);
  });

  it("a message above maxMessageSize is refused at its header, before any body is buffered", async () => {
    const s = await consuming({ maxMessageSize: 1000 });
    deliver(s);
    s.peer.sendHeader(s.ch.id, 1001);
    const err = await expectFailed(s, FrameError);
    expect(err.message).toMatch(/maxMessageSize/);
  });
});

// ─── the broker closing, the socket going ───────────────────────────────────

describe("closing", () => {
  it("server sends connection.close 320 CONNECTION_FORCED → ConnectionClosedByBroker, recoverable, close-ok sent", async () => {
    const s = await session();
    s.peer.send(0, {
      name: "connection.close",
      args: {
        replyCode: 320,
        replyText: "CONNECTION_FORCED - broker forced connection closure with reason 'shutdown'",
        classId: 0,
        methodId: 0,
      },
    });
    const err = await expectFailed(s, ConnectionClosedByBroker);
    expect(err.replyCode).toBe(320);
    expect(err.recoverable).toBe(true);
    expect(err.message).toMatch(/CONNECTION_FORCED/);
    expect(s.peer.methodNames).toContain("connection.close-ok");
    expect(s.peer.methodNames).not.toContain("connection.close");
  });

  it("server closes the socket mid-frame (FIN) → SocketError, pending RPC rejects", async () => {
    const s = await session();
    const frame = FakePeer.methodFrame(s.ch.id, { name: "queue.purge-ok", args: { messageCount: 3 } });
    const read = s.conn.bytesReceived;
    s.peer.sendRaw(frame.subarray(0, 5));
    await waitFor(() => s.conn.bytesReceived >= read + 5, "the half frame read", HANG);
    s.peer.end();
    const err = await expectFailed(s, SocketError);
    expect(err.recoverable).toBe(true);
  });

  it("server resets the socket mid-stream (RST) → SocketError, pending RPC rejects", async () => {
    const s = await session();
    const frame = FakePeer.methodFrame(s.ch.id, { name: "queue.purge-ok", args: { messageCount: 3 } });
    const read = s.conn.bytesReceived;
    s.peer.sendRaw(frame.subarray(0, 9));
    await waitFor(() => s.conn.bytesReceived >= read + 9, "the half frame read", HANG);
    s.peer.destroy(true);
    const err = await expectFailed(s, SocketError);
    expect(err.recoverable).toBe(true);
    // Operations after the fact fail at once and typed.
    await expect(s.ch.queueDeclare({ queue: "x" })).rejects.toBeInstanceOf(ChannelClosedError);
    await expect(s.conn.openChannel()).rejects.toBeInstanceOf(ConnectionClosedError);
  });

  it("a server that never answers our connection.close → close() still resolves, bounded by its timeout", async () => {
    const s = await session();
    s.peer.answer("connection.close", () => undefined); // swallow it
    const t0 = performance.now();
    await within(s.conn.close({ timeout: 200 }), HANG, "close");
    const took = performance.now() - t0;
    // It waited for the close-ok up to its 200 ms timeout, and not much longer (5×).
    expect(took).toBeGreaterThanOrEqual(190);
    expect(took).toBeLessThan(1_000);
    expect(s.conn.isOpen).toBe(false);
    await within(s.peer.closed, HANG, "socket closed");
  });

  it("close crossing: the server answers our connection.close with its own → close() resolves", async () => {
    const s = await session();
    s.peer.answer("connection.close", () => ({
      name: "connection.close",
      args: { replyCode: 320, replyText: "CONNECTION_FORCED - shutdown", classId: 0, methodId: 0 },
    }));
    await within(s.conn.close({ timeout: 2000 }), HANG, "close");
    expect(s.conn.isOpen).toBe(false);
    expect(await within(s.pending, HANG, "pending")).toBeInstanceOf(ConnectionClosedError);
  });

  it("channel.close from the server → ChannelClosedByBroker on the pending RPC, close-ok sent, connection stays", async () => {
    const s = await session();
    const chClosed = new Promise((resolve) => s.ch.once("close", resolve));
    s.peer.send(s.ch.id, {
      name: "channel.close",
      args: { replyCode: 404, replyText: "NOT_FOUND - no queue 'q'", classId: 50, methodId: 30 },
    });
    const p = await within(s.pending, HANG, "pending");
    expect(p).toBeInstanceOf(ChannelClosedByBroker);
    expect((p as ChannelClosedByBroker).methodName).toBe("queue.purge");
    expect(await chClosed).toBe(p);
    expect(await within(s.peer.method("channel.close-ok"), HANG, "close-ok")).toEqual({});
    expect(s.conn.isOpen).toBe(true);
    await expect(s.ch.queueDeclare({ queue: "x" })).rejects.toBeInstanceOf(ChannelClosedError);
    // The id is free again and a new channel works.
    const ch2 = await within(s.conn.openChannel(), HANG, "reopen");
    expect(ch2.isOpen).toBe(true);
  });

  it("connection.blocked / unblocked → events", async () => {
    const s = await session();
    const reasons: string[] = [];
    s.conn.on("blocked", (r) => reasons.push(r));
    const unblocked = new Promise<void>((resolve) => s.conn.on("unblocked", resolve));
    s.peer.send(0, { name: "connection.blocked", args: { reason: "low on memory" } });
    s.peer.send(0, { name: "connection.unblocked", args: {} });
    await within(unblocked, HANG, "unblocked");
    expect(reasons).toEqual(["low on memory"]);
    expect(s.conn.isBlocked).toBe(false);
  });

  it("orderly close by the client: connection.close 200, close-ok awaited, no error", async () => {
    const s = await session();
    await within(s.conn.close(), HANG, "close");
    expect(await s.closed).toBeUndefined();
    expect(s.conn.closeReason).toBeUndefined();
    expect((await clientClose(s.peer)).replyCode).toBe(200);
    expect(await within(s.pending, HANG, "pending")).toBeInstanceOf(ConnectionClosedError);
    await within(s.peer.closed, HANG, "socket closed");
  });
});

// ─── heartbeats ─────────────────────────────────────────────────────────────

describe("heartbeats", () => {
  it("heartbeat=1 and then silence → HeartbeatTimeoutError after about two intervals; the client sent heartbeats", async () => {
    const fake = await fakeServer((peer) => peer.handshake({ heartbeat: 1 }).then(() => {}));
    // Meanwhile a second server sends nothing but heartbeats, every 400 ms.
    const alive = await session({ heartbeat: 1 });
    const beat = setInterval(() => alive.peer.sendHeartbeat(), 400);
    onTestFinished(() => clearInterval(beat));
    const conn = await open(fake);
    const t0 = performance.now();
    expect(conn.heartbeat).toBe(1);
    const closed = closeEvent(conn);
    const err = await within(closed, 15_000, "heartbeat timeout");
    const elapsed = performance.now() - t0;
    expect(err).toBeInstanceOf(HeartbeatTimeoutError);
    expect(err!.recoverable).toBe(true);
    expect(err!.message).toMatch(/two heartbeat intervals/);
    // Four silent ticks of 500 ms (the first may have come just before we started counting);
    // the upper bound (4× the nominal 2 s) tells a timeout from a hang on a loaded machine.
    expect(elapsed).toBeGreaterThanOrEqual(1_500);
    expect(elapsed).toBeLessThanOrEqual(8_000);
    const peer = await fake.peer();
    const beats = peer.framesOfType(8);
    expect(alive.conn.isOpen).toBe(true); // heartbeats alone keep a connection alive
    expect(beats.length).toBeGreaterThanOrEqual(2);
    for (const b of beats) expect(b.channel).toBe(0);
    await within(peer.closed, HANG, "socket closed");
  });
});

// ─── backpressure ───────────────────────────────────────────────────────────

describe("backpressure", () => {
  it("a server that stops reading: pending stays bounded, waitForDrain resolves once it reads again", async () => {
    const hwm = 1024 * 1024;
    const s = await session({}, { writeHighWaterMark: hwm });
    const w = s.conn.writer;
    s.peer.pause();
    const body = Buffer.alloc(64 * 1024, 0x61);
    let published = 0;
    let maxPending = 0;
    // Publish as an obedient producer would, until the kernel buffers are full too and
    // needsDrain stays true after the writer has flushed.
    for (;;) {
      const ok = s.ch.basicPublish("", "q", body);
      published++;
      maxPending = Math.max(maxPending, w.pending);
      if (!ok) {
        await flushed();
        if (w.needsDrain) break;
      }
      expect(published).toBeLessThan(2000);
    }
    expect(maxPending).toBeLessThan(3 * hwm);
    let drained = false;
    const drain = s.ch.waitForDrain().then(() => (drained = true));
    await sleep(100); // time is the point: a window in which nothing may drain
    expect(drained).toBe(false);
    expect(s.conn.isOpen).toBe(true);
    s.peer.resume();
    await within(drain, HANG, "waitForDrain");
    expect(w.needsDrain).toBe(false);
    await waitFor(() => s.peer.framesOfType(3).length >= published, "all bodies received", HANG);
    expect(s.peer.methodNames.filter((n) => n === "basic.publish")).toHaveLength(published);
  });
});

describe("backpressure, then the socket dies", () => {
  it("waitForDrain settles (no hang) and publishing fails typed when the connection dies while full", async () => {
    const s = await session({}, { writeHighWaterMark: 256 * 1024 });
    s.peer.pause();
    const body = Buffer.alloc(64 * 1024);
    for (let i = 0; i < 2000; i++) {
      if (!s.ch.basicPublish("", "q", body)) {
        await flushed();
        if (s.conn.writer.needsDrain) break;
      }
    }
    expect(s.conn.writer.needsDrain).toBe(true);
    const drain = s.ch.waitForDrain().then(
      () => undefined,
      (e: unknown) => e,
    );
    s.peer.destroy(true);
    // It settles, and by rejecting: the channel is gone, so "drained" would be a lie.
    expect(await within(drain, HANG, "waitForDrain")).toBeInstanceOf(ChannelClosedError);
    await expectFailed(s, SocketError);
    // The bytes queued for the dead socket are let go (the in-flight write is released just after
    // the close event, so wait for it rather than read it at once).
    await waitFor(() => s.conn.writer.pending === 0, "the writer's backlog to be released", HANG);
    expect(() => s.ch.basicPublish("", "q", body)).toThrow(ChannelClosedError);
  });
});

// ─── garbage ────────────────────────────────────────────────────────────────

/**
 * Garbage after the handshake, as properties. Every input is one the client must refuse, and the
 * reply codes it may refuse it with come from how the input was made (the AMQP framing and content
 * rules), never from the client. The client must close with that FrameError and say so to the fake
 * in its connection.close. Then a follow-up round trip: the client asks for a channel, which the
 * fake answers after the garbage (TCP keeps the order), so a client that ignored the garbage gets
 * its channel, and the property fails.
 */
describe("garbage after the handshake (property)", () => {
  const RUNS = Number(process.env["FUZZ_RUNS"] ?? 30);
  const FRAME_MAX = 131072;
  /** The largest payload frame_max allows (7 header octets and the end octet aside). */
  const MAX_PAYLOAD = FRAME_MAX - 8;
  const FRAME_TYPES = [1, 2, 3, 8];

  interface Garbage {
    bytes: Buffer;
    /** The reply codes the rules name for it. */
    codes: readonly number[];
    why: string;
  }

  async function feed(fake: FakeServer, g: Garbage): Promise<void> {
    const conn = await open(fake);
    expect(conn.frameMax).toBe(FRAME_MAX);
    const closed = closeEvent(conn);
    const ch = await conn.openChannel();
    const peer = fake.peers.at(-1)!;
    const pending = errorOf(ch.queuePurge({ queue: "q" })); // the fake never answers it
    await within(peer.method("queue.purge"), HANG, "queue.purge");
    const closeSent = peer.method("connection.close");
    peer.sendRaw(g.bytes);
    const followUp = await within(errorOf(conn.openChannel()), HANG, "the follow-up channel.open");
    if (followUp === undefined) {
      throw new Error(`the client ignored ${g.why} (${g.bytes.toString("hex")}): a channel opened after it`);
    }
    const err = await within(closed, HANG, "close event");
    expect(err, g.why).toBeInstanceOf(FrameError);
    const code = (err as FrameError).replyCode;
    expect(g.codes, `${g.why}: closed with ${code} ${err?.message}`).toContain(code);
    expect((await within(closeSent, HANG, "the client's connection.close")).replyCode).toBe(code);
    expect(followUp).toBeInstanceOf(ConnectionClosedError);
    const p = await within(pending, HANG, "pending RPC");
    expect(p).toBeInstanceOf(ConnectionClosedError);
    expect((p as Error).cause).toBe(err);
    await within(peer.closed, HANG, "socket closed");
  }

  const garbageServer = () =>
    fakeServer(async (peer) => {
      await peer.handshake({ frameMax: FRAME_MAX });
      peer.answerDefaults();
    });

  const payload = (minLength = 0) => fc.uint8Array({ minLength, maxLength: 60 }).map((a) => Buffer.from(a));

  /** Random bytes, seven at least: their frame header is refused (501) unless it happens to be valid. */
  const randomBytes: fc.Arbitrary<Garbage> = fc
    .uint8Array({ minLength: 7, maxLength: 300 })
    .map((a) => Buffer.from(a))
    .filter((b) => !FRAME_TYPES.includes(b[0]!) || b.readUInt32BE(3) > MAX_PAYLOAD) // 1 in ~10⁶ is skipped
    .map((bytes) => ({
      bytes,
      codes: [501],
      why: FRAME_TYPES.includes(bytes[0]!) ? "a frame larger than frame_max" : `frame type ${bytes[0]}`,
    }));

  /** A frame header announcing more than frame_max, alone: refused before anything is buffered. */
  const oversize: fc.Arbitrary<Garbage> = fc
    .record({
      type: fc.constantFrom(...FRAME_TYPES),
      channel: fc.constantFrom(0, 1, 7),
      size: fc.integer({ min: MAX_PAYLOAD + 1, max: 0xffff_ffff }),
    })
    .map(({ type, channel, size }) => ({
      bytes: FakePeer.rawFrame(type, channel, Buffer.alloc(0), { size }).subarray(0, 7),
      codes: [501],
      why: `a ${size}-byte frame`,
    }));

  /**
   * A frame whose end octet is not 0xCE: 501. A body frame is streamed to its channel before its
   * end octet when TCP splits it, so the channel's own refusal may come first (503 on channel 0,
   * 505 on channel 1, which expects no content).
   */
  const badEnd: fc.Arbitrary<Garbage> = fc
    .record({
      type: fc.constantFrom(...FRAME_TYPES),
      channel: fc.constantFrom(0, 1),
      body: payload(1),
      end: fc.integer({ min: 0, max: 255 }).filter((e) => e !== 0xce),
    })
    .map(({ type, channel, body, end }) => ({
      bytes: FakePeer.rawFrame(type, channel, body, { end }),
      codes: type === 3 ? [501, channel === 0 ? 503 : 505] : [501],
      why: `a type ${type} frame ending in 0x${end.toString(16)}`,
    }));

  it("bytes that break the framing (random bytes, frames above frame_max, a bad end octet) → FrameError 501, never ignored", async () => {
    const fake = await garbageServer();
    await fc.assert(
      fc.asyncProperty(fc.oneof(randomBytes, oversize, badEnd), (g) => feed(fake, g)),
      { numRuns: RUNS },
    );
  });

  // Methods only a client sends (AMQP 0-9-1), basic.publish aside: a content method the client would
  // take as the start of a delivery. Whatever their arguments, a client refuses them: 502 when the
  // arguments do not decode, 505 when they do.
  const CLIENT_ONLY: MethodName[] = [
    "connection.start-ok",
    "connection.secure-ok",
    "connection.tune-ok",
    "connection.open",
    "connection.update-secret",
    "channel.open",
    "exchange.declare",
    "exchange.delete",
    "exchange.bind",
    "exchange.unbind",
    "queue.declare",
    "queue.bind",
    "queue.purge",
    "queue.delete",
    "queue.unbind",
    "basic.qos",
    "basic.consume",
    "basic.get",
    "basic.reject",
    "basic.recover-async",
    "basic.recover",
    "tx.select",
    "tx.commit",
    "tx.rollback",
    "confirm.select",
  ];

  const methodFrame = (channel: number, id: number, args: Buffer) => {
    const head = Buffer.alloc(4);
    head.writeUInt32BE(id, 0);
    return FakePeer.rawFrame(1, channel, Buffer.concat([head, args]));
  };

  /** Well-framed frames the rules refuse where they arrive. */
  const misplaced: fc.Arbitrary<Garbage> = fc.oneof(
    // Any frame for a channel that was never opened: 504 (channels from 100 on: the follow-up takes 2).
    fc
      .record({
        type: fc.constantFrom(...FRAME_TYPES),
        channel: fc.integer({ min: 100, max: 0xffff }),
        body: payload(1),
      })
      .map(({ type, channel, body }) => ({
        bytes: FakePeer.rawFrame(type, channel, body),
        codes: [504],
        why: `a type ${type} frame for channel ${channel}, which is not open`,
      })),
    // Content on channel 0, a heartbeat on a channel: 503.
    fc.record({ type: fc.constantFrom(2, 3), body: payload(1) }).map(({ type, body }) => ({
      bytes: FakePeer.rawFrame(type, 0, body),
      codes: [503],
      why: `a type ${type} frame on channel 0`,
    })),
    fc.constant({
      bytes: FakePeer.rawFrame(8, 1, Buffer.alloc(0)),
      codes: [503],
      why: "a heartbeat on channel 1",
    }),
    // A content header or body on a channel that expects no content: 505.
    fc.record({ type: fc.constantFrom(2, 3), body: payload(1) }).map(({ type, body }) => ({
      bytes: FakePeer.rawFrame(type, 1, body),
      codes: [505],
      why: `a type ${type} frame without a content method`,
    })),
    // A method only a client sends, with random arguments, on channel 0 or on the open channel.
    fc
      .record({ name: fc.constantFrom(...CLIENT_ONLY), channel: fc.constantFrom(0, 1), args: payload() })
      .map(({ name, channel, args }) => ({
        bytes: methodFrame(channel, METHOD_IDS[name], args),
        codes: [502, 505],
        why: `${name} on channel ${channel}`,
      })),
    // After a basic.deliver the content header must come: a method or a body is 505, a header
    // shorter than its fixed 14 octets is 501.
    fc
      .record({
        next: fc.constantFrom("method", "body", "short header"),
        id: fc.constantFrom(...Object.values(METHOD_IDS)),
        body: payload(1),
        short: fc.integer({ min: 0, max: 13 }),
      })
      .map(({ next, id, body, short }) => ({
        bytes: Buffer.concat([
          FakePeer.methodFrame(1, {
            name: "basic.deliver",
            args: { consumerTag: "c", deliveryTag: 1, exchange: "", routingKey: "q" },
          }),
          next === "method"
            ? methodFrame(1, id, body)
            : next === "body"
              ? FakePeer.rawFrame(3, 1, body)
              : FakePeer.rawFrame(2, 1, Buffer.alloc(short)),
        ]),
        codes: next === "short header" ? [501] : [505],
        why: `a ${next} where a delivery's content header belongs`,
      })),
  );

  it("well-framed frames in the wrong place (a channel not open, content where none is due, a client's method) → the FrameError their rule names, never ignored", async () => {
    const fake = await garbageServer();
    await fc.assert(
      fc.asyncProperty(misplaced, (g) => feed(fake, g)),
      { numRuns: RUNS },
    );
  });
});

// ─── bounded waiting and bounded memory ─────────────────────────────────────

describe("a broker that stops answering one channel", () => {
  it("an unanswered RPC rejects with MethodTimeoutError after methodTimeout; only that channel closes", async () => {
    const t0 = performance.now();
    const s = await session({}, { methodTimeout: 300 });
    const err = await within(s.pending, HANG, "pending RPC");
    expect(err).toBeInstanceOf(MethodTimeoutError);
    expect((err as MethodTimeoutError).message).toMatch(/queue\.purge/);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(290);
    expect(s.ch.state).toBe("closed");
    expect(s.ch.closeReason).toBe(err);
    // The channel told the broker it is gone, and the connection carries on.
    const close = await within(s.peer.method("channel.close"), HANG, "channel.close");
    expect(close.replyText).toBe("client timeout");
    expect(s.peer.frames.some((f) => f.method?.name === "channel.close" && f.channel === s.ch.id)).toBe(true);
    expect(s.conn.isOpen).toBe(true);
    const again = await s.conn.openChannel();
    expect(again.isOpen).toBe(true);
  });
});

describe("a content header that declares a huge body", () => {
  it("costs memory only as body bytes arrive, not what the header claims", async () => {
    const messages: Buffer[] = [];
    const s = await session({}, { maxMessageSize: 1024 * 1024 * 1024 }, (ch) =>
      ch.basicConsume({ queue: "q" }, (m) => {
        messages.push(m.body);
      }),
    );
    const before = process.memoryUsage().arrayBuffers;
    s.peer.send(s.ch.id, {
      name: "basic.deliver",
      args: { consumerTag: "amq.ctag-fake", deliveryTag: 1, exchange: "", routingKey: "q" },
    });
    s.peer.sendHeader(s.ch.id, 900 * 1024 * 1024);
    for (let i = 0; i < 4; i++) s.peer.sendBody(s.ch.id, Buffer.alloc(1000, i));
    // A round trip on another channel proves the frames above were processed.
    const other = await s.conn.openChannel();
    expect(other.isOpen).toBe(true);
    const grown = process.memoryUsage().arrayBuffers - before;
    expect(grown).toBeLessThan(64 * 1024 * 1024);
    expect(messages).toEqual([]);
  });
});
