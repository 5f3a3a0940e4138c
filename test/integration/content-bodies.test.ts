/**
 * Message bodies through a real broker, byte for byte: empty, tiny, around the frame
 * payload limit (frame_max - 8, where a body splits into a second frame), around the
 * writer's zero-copy threshold, 10 MiB; as Buffer, as a Uint8Array view into a larger
 * ArrayBuffer, and as a string. Bodies are a pseudo-random pattern, so a chunk that is
 * dropped, repeated or moved cannot go unnoticed.
 */

import type { Socket } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type Channel,
  Connection,
  ConnectionClosedError,
  FrameError,
  type Message,
} from "../../src/index.js";
import { FRAME_OVERHEAD, FrameParser } from "../../src/protocol/frame.js";
import { FRAME_BODY } from "../../src/protocol/generated/spec.js";
import type { SocketReader } from "../../src/transport/socket.js";
import { ZERO_COPY_THRESHOLD } from "../../src/transport/writer.js";
import { rejection } from "../support/async.js";
import { AMQP_URL } from "../support/broker.js";
import { Deliveries, deliveryOf } from "../support/deliveries.js";

const MiB = 1024 * 1024;

/** n bytes of xorshift32 output from `seed`. */
function pattern(n: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  let x = seed >>> 0 || 1;
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b.writeUInt32LE(x >>> 0, i);
  }
  for (; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b[i] = x & 0xff;
  }
  return b;
}

/** Byte-exact comparison with a readable failure (deep equality on megabytes is slow and unreadable). */
function expectSameBytes(actual: Uint8Array, expected: Uint8Array): void {
  expect(actual.length).toBe(expected.length);
  const a = Buffer.from(actual.buffer, actual.byteOffset, actual.byteLength);
  if (a.equals(expected)) return;
  let i = 0;
  while (i < a.length && a[i] === expected[i]) i++;
  expect.fail(`bodies differ first at byte ${i} of ${a.length}`);
}

interface Rig {
  conn: Connection;
  pub: Channel;
  queue: string;
}

async function rig(options: { frameMax?: number } = {}): Promise<Rig> {
  const conn = await Connection.open({ url: AMQP_URL, ...options });
  const pub = await conn.openChannel();
  await pub.confirmSelect();
  const { queue } = await pub.queueDeclare({ exclusive: true });
  return { conn, pub, queue };
}

/**
 * Watches the bytes the broker sends and lists the sizes of the body frames it used for a
 * channel since the last call. It reads the wire with a parser of its own (whole frames),
 * because warren's parser hands split body frames on in pieces.
 */
function frameSpy(conn: Connection, ch: Channel) {
  const sizes: number[] = [];
  const parser = new FrameParser((type, channel, payload) => {
    if (type === FRAME_BODY && channel === ch.id) sizes.push(payload.length);
  }, conn.frameMax);
  // Plain TCP reads land in the connection's one read buffer (no 'data' events): tap its sink.
  const reader: SocketReader | undefined = conn.reader;
  if (reader === undefined) {
    (conn as unknown as { socket: Socket }).socket.on("data", (chunk: Buffer) => parser.push(chunk));
  } else {
    const next = reader.onChunk!;
    reader.onChunk = (chunk) => {
      parser.push(chunk);
      next(chunk);
    };
  }
  return {
    bodyFrames(): number[] {
      return sizes.splice(0);
    },
  };
}

/** Frame sizes the broker should use for a body of n bytes. */
function expectedFrames(n: number, frameMax: number): number[] {
  const max = frameMax - FRAME_OVERHEAD;
  const out: number[] = [];
  for (let left = n; left > 0; left -= max) out.push(Math.min(max, left));
  return out;
}

/** Publishes (confirmed), consumes it back and returns the delivery. */
function viaConsume(r: Rig, ch: Channel, body: Uint8Array | string): Promise<Message> {
  return deliveryOf(ch, r.queue, () => r.pub.publish("", r.queue, body));
}

async function viaGet(r: Rig, ch: Channel, body: Uint8Array | string): Promise<Message> {
  await r.pub.publish("", r.queue, body);
  const m = await ch.basicGet({ queue: r.queue, noAck: true });
  expect(m).not.toBeNull();
  return m!;
}

describe("bodies at the default frame_max", () => {
  let r: Rig;
  let ch: Channel;
  let frames: ReturnType<typeof frameSpy>;

  beforeAll(async () => {
    r = await rig();
    ch = await r.conn.openChannel();
    frames = frameSpy(r.conn, ch);
  });

  afterAll(async () => {
    await r?.conn.close();
  });

  const fm = 131072; // what RabbitMQ and warren both default to
  const sizes: [string, number][] = [
    ["0 bytes", 0],
    ["1 byte", 1],
    ["frame_max - 9", fm - 9],
    ["frame_max - 8 (one full frame)", fm - 8],
    ["frame_max - 7 (two frames)", fm - 7],
    ["two full frames", 2 * (fm - 8)],
    ["two full frames + 1", 2 * (fm - 8) + 1],
    ["zero-copy threshold - 1", ZERO_COPY_THRESHOLD - 1],
    ["zero-copy threshold", ZERO_COPY_THRESHOLD],
    ["10 MiB", 10 * MiB],
  ];

  it("negotiated the default frame_max", () => {
    expect(r.conn.frameMax).toBe(fm);
  });

  it.each(sizes)("%s: publish + consume, byte-exact, in the expected frames", async (_name, size) => {
    const body = pattern(size, size + 1);
    frames.bodyFrames();
    const m = await viaConsume(r, ch, body);
    expectSameBytes(m.body, body);
    expect(frames.bodyFrames()).toEqual(expectedFrames(size, fm));
    expect(r.conn.isOpen).toBe(true);
  });

  it.each(sizes)("%s: publish + basic.get, byte-exact", async (_name, size) => {
    const body = pattern(size, size + 7);
    frames.bodyFrames();
    const m = await viaGet(r, ch, body);
    expectSameBytes(m.body, body);
    expect(m.messageCount).toBe(0);
    expect(frames.bodyFrames()).toEqual(expectedFrames(size, fm));
  });

  it("several multi-frame messages in a row stay separate and in order", async () => {
    const bodies = [3 * fm + 5, 17, 0, fm - 8, 2 * fm].map((n, i) => pattern(n, 1000 + i));
    const d = new Deliveries();
    const tag = await ch.basicConsume({ queue: r.queue, noAck: true }, d.onMessage);
    await Promise.all(bodies.map((b) => r.pub.publish("", r.queue, b)));
    const got = await d.until(bodies.length);
    await ch.basicCancel(tag);
    expect(got).toHaveLength(bodies.length);
    for (const [i, m] of got.entries()) expectSameBytes(m.body, bodies[i]!);
  });

  it("a Uint8Array body, including views at an offset into a larger ArrayBuffer", async () => {
    for (const size of [1, 100, ZERO_COPY_THRESHOLD, fm - 8 + 1000, 300_000]) {
      const backing = pattern(size + 64, size);
      const ab = backing.buffer.slice(backing.byteOffset, backing.byteOffset + backing.byteLength);
      const view = new Uint8Array(ab, 13, size); // not a Buffer, and not at offset 0
      expect(Buffer.isBuffer(view)).toBe(false);
      const expected = Buffer.from(backing.subarray(13, 13 + size));
      const m = await viaConsume(r, ch, view);
      expectSameBytes(m.body, expected);
      const g = await viaGet(r, ch, view);
      expectSameBytes(g.body, expected);
    }
  });

  it("a string body is sent as its UTF-8 bytes, also when a character straddles a frame boundary", async () => {
    const small = "héllo wörld ✓ 🐇";
    const m = await viaGet(r, ch, small);
    expect(m.body.length).toBe(Buffer.byteLength(small));
    expect(m.body.length).toBeGreaterThan(small.length);
    expect(m.body.toString("utf8")).toBe(small);

    // 3-byte characters after a 1-byte one: frame boundaries (every fm - 8 bytes) fall inside characters.
    const big = `x${"€".repeat(100_000)}`;
    const bytes = Buffer.from(big, "utf8");
    expect(bytes.length % (fm - 8)).not.toBe(0);
    const c = await viaConsume(r, ch, big);
    expectSameBytes(c.body, bytes);
    expect(c.body.toString("utf8")).toBe(big);

    const empty = await viaGet(r, ch, "");
    expect(empty.body.length).toBe(0);
  });
});

describe("bodies at the smallest frame_max", () => {
  let r: Rig;
  let ch: Channel;
  let frames: ReturnType<typeof frameSpy>;

  beforeAll(async () => {
    r = await rig({ frameMax: 8192 });
    ch = await r.conn.openChannel();
    frames = frameSpy(r.conn, ch);
  });

  afterAll(async () => {
    await r?.conn.close();
  });

  it("negotiated 8192", () => {
    expect(r.conn.frameMax).toBe(8192);
  });

  it.each([8183, 8184, 8185, MiB + 3])("%d bytes round-trip byte-exact in 8184-byte frames", async (size) => {
    const body = pattern(size, size);
    frames.bodyFrames();
    const m = await viaConsume(r, ch, body);
    expectSameBytes(m.body, body);
    expect(frames.bodyFrames()).toEqual(expectedFrames(size, 8192));
    // The broker accepted every frame we sent: it closes the connection on one over frame_max.
    expect(r.conn.isOpen).toBe(true);
  });
});

describe("incoming size limit", () => {
  it("a delivery larger than maxMessageSize fails the connection with a FrameError", async () => {
    const small = await Connection.open({ url: AMQP_URL, maxMessageSize: 1000 });
    try {
      const closed = new Promise<unknown>((resolve) => small.once("close", resolve));
      const ch = await small.openChannel();
      await ch.confirmSelect();
      const { queue } = await ch.queueDeclare({ exclusive: true });
      // The limit is for what comes in: publishing more is fine.
      await ch.publish("", queue, pattern(1000, 1));
      await ch.publish("", queue, pattern(1001, 2));
      const ok = await ch.basicGet({ queue, noAck: true });
      expectSameBytes(ok!.body, pattern(1000, 1));
      const err = await rejection(ch.basicGet({ queue }));
      const reason = await closed;
      expect(reason).toBeInstanceOf(FrameError);
      expect((reason as FrameError).message).toContain(
        "incoming message of 1001 bytes exceeds maxMessageSize (1000)",
      );
      // The pending get fails with the connection, for the reason the connection gives.
      expect(err).toBeInstanceOf(ConnectionClosedError);
      expect((err as ConnectionClosedError).cause).toBe(reason);
      expect(small.isOpen).toBe(false);
    } finally {
      await small.close();
    }
  });
});
