/**
 * Reads into one reused buffer (SocketReader, plain TCP): the parser and the assembler must keep
 * nothing that points into it, because the next read overwrites it. Every test feeds the bytes
 * through one buffer that is scribbled over after each push, as the socket would.
 */
import fc from "fast-check";
import { afterEach, describe, expect, it, vi } from "vitest";
import { BODY_PREALLOCATE, ContentAssembler } from "../../src/amqp/content-assembler.js";
import { FrameParser } from "../../src/protocol/frame.js";
import {
  type BasicProperties,
  FRAME_BODY,
  FRAME_HEADER,
  FRAME_METHOD,
  type Method,
} from "../../src/protocol/generated/spec.js";
import { SocketReader } from "../../src/transport/socket.js";
import { frame, pattern } from "../support/frames.js";

/** basic.deliver (60, 60): consumer-tag "c", delivery-tag, redelivered, exchange "", routing key "q". */
function deliver(tag: number): Buffer {
  const b = Buffer.alloc(4 + 2 + 8 + 1 + 1 + 2);
  let p = 0;
  p = b.writeUInt16BE(60, p);
  p = b.writeUInt16BE(60, p);
  b[p++] = 1;
  b[p++] = 0x63; // "c"
  b.writeBigUInt64BE(BigInt(tag), p);
  p += 8;
  b[p++] = 0; // redelivered
  b[p++] = 0; // exchange ""
  b[p++] = 1;
  b[p++] = 0x71; // "q"
  return b.subarray(0, p);
}

/** A content header of class 60 for a body of `size` bytes, no properties. */
function header(size: number): Buffer {
  const b = Buffer.alloc(14);
  b.writeUInt16BE(60, 0);
  b.writeUInt16BE(0, 2);
  b.writeUInt32BE(Math.floor(size / 0x1_0000_0000), 4);
  b.writeUInt32BE(size >>> 0, 8);
  b.writeUInt16BE(0, 12);
  return b;
}

/** The frames of one delivery on `channel`, its body cut into frames of at most `max` bytes. */
function message(channel: number, tag: number, body: Buffer, max: number): Buffer[] {
  const out = [frame(FRAME_METHOD, channel, deliver(tag)), frame(FRAME_HEADER, channel, header(body.length))];
  for (let off = 0; off < body.length; off += max)
    out.push(frame(FRAME_BODY, channel, body.subarray(off, off + max)));
  return out;
}

interface Delivered {
  tag: number;
  body: Buffer;
}

/** A parser and an assembler in transient mode, fed through one reused read buffer. */
function receiver(readSize: number) {
  const got: Delivered[] = [];
  const assembler = new ContentAssembler(
    1,
    () => 1 << 30,
    {
      method: () => {},
      content: (m: Method, _p: BasicProperties, body: Buffer) =>
        got.push({ tag: (m.args as { deliveryTag: number }).deliveryTag, body }),
    },
    true,
  );
  const parser = new FrameParser((type, _channel, payload) => assembler.push(type, payload), 1 << 20, {
    streamBodies: true,
    transient: true,
  });
  const buf = Buffer.alloc(readSize);
  return {
    got,
    /** Feeds `bytes` in reads of the given sizes, each through `buf`, scribbled over afterwards. */
    feed(bytes: Buffer, cuts: number[]): void {
      let off = 0;
      let i = 0;
      while (off < bytes.length) {
        const n = Math.min(
          readSize,
          bytes.length - off,
          Math.max(1, cuts[i++ % Math.max(cuts.length, 1)] ?? readSize),
        );
        bytes.copy(buf, 0, off, off + n);
        parser.push(buf.subarray(0, n));
        buf.fill(0xee); // the next read lands here
        off += n;
      }
    },
  };
}

describe("transient reads (one reused read buffer)", () => {
  afterEach(() => {
    vi.restoreAllMocks();
  });

  it("every body survives later reads, whatever the read sizes: small one-frame bodies, split frames, multi-frame bodies", () => {
    const bodies = [0, 1, 200, 5000, 70_000, 150_000, 300_001].map((n, i) => pattern(n, i + 1));
    const wire = Buffer.concat(bodies.flatMap((b, i) => message(1, i + 1, b, 65_536)));
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 1, max: 100_000 }), { maxLength: 30 }),
        fc.integer({ min: 1, max: 200_000 }),
        (cuts, readSize) => {
          const r = receiver(readSize);
          r.feed(wire, cuts);
          expect(r.got.map((d) => d.tag)).toEqual(bodies.map((_, i) => i + 1));
          for (const [i, d] of r.got.entries()) expect(d.body.equals(bodies[i]!)).toBe(true);
        },
      ),
      { numRuns: 60 },
    );
  });

  it("the last piece of a body frame, held across a read for its frame-end octet, is a copy", () => {
    const body = pattern(1000, 9);
    const wire = Buffer.concat(message(1, 7, body, 1000));
    const r = receiver(wire.length);
    // Every read ends just before a body frame's end octet: the piece waits for the next read.
    r.feed(wire, [wire.length - 1, 1]);
    expect(r.got).toHaveLength(1);
    expect(r.got[0]!.body.equals(body)).toBe(true);
  });

  it("a body in one frame is copied out of a transient payload, and handed over as is otherwise", () => {
    for (const transient of [true, false]) {
      const got: Buffer[] = [];
      const a = new ContentAssembler(
        1,
        () => 1 << 20,
        { method: () => {}, content: (_m, _p, b) => got.push(b) },
        transient,
      );
      const payload = pattern(300, 3);
      a.push(FRAME_METHOD, deliver(1));
      a.push(FRAME_HEADER, header(300));
      a.push(FRAME_BODY, payload);
      payload.fill(0xee); // the next read
      expect(got[0]!.equals(pattern(300, 3))).toBe(transient);
      expect(got[0] === payload).toBe(!transient);
    }
  });

  it("a body split over frames gets one buffer, at its declared size, at its first frame", () => {
    const size = 3 * 1024 * 1024 + 5;
    expect(size).toBeLessThan(BODY_PREALLOCATE);
    const r = receiver(1 << 20);
    const body = pattern(size, 4);
    const wire = Buffer.concat(message(1, 1, body, 131_064));
    const spy = vi.spyOn(Buffer, "allocUnsafe");
    r.feed(wire, []);
    expect(r.got[0]!.body.equals(body)).toBe(true);
    expect(spy.mock.calls.filter(([n]) => n >= 1024 * 1024).map(([n]) => n)).toEqual([size]);
  });
});

describe("SocketReader", () => {
  it("hands reads to its sink as views of its one buffer, and holds copies of reads that come before a sink", () => {
    const r = new SocketReader(16);
    r.buffer.write("early", 0);
    r.read(5, r.buffer);
    r.buffer.write("XXXXX", 0); // the next read would overwrite it
    const got: string[] = [];
    const views: Buffer[] = [];
    r.onChunk = (c) => {
      got.push(c.toString());
      views.push(c);
    };
    expect(got).toEqual(["early"]);
    r.buffer.write("later", 0);
    expect(r.read(5, r.buffer)).toBe(true);
    expect(got).toEqual(["early", "later"]);
    expect(views[1]!.buffer).toBe(r.buffer.buffer);
  });
});

describe("large bodies and the allocator", () => {
  it("the first body of 64 KiB or more frees one untouched 30 MiB block (glibc then keeps freed bodies for reuse), once per process", async () => {
    vi.resetModules();
    const { ContentAssembler: Fresh } = await import("../../src/amqp/content-assembler.js");
    const spy = vi.spyOn(Buffer, "allocUnsafeSlow");
    const got: Buffer[] = [];
    const a = new Fresh(1, () => 1 << 30, { method: () => {}, content: (_m, _p, b) => got.push(b) });
    const feed = (size: number) => {
      a.push(FRAME_METHOD, deliver(1));
      a.push(FRAME_HEADER, header(size));
      for (let off = 0; off < size; off += 131_064)
        a.push(FRAME_BODY, Buffer.alloc(Math.min(131_064, size - off), 7));
    };
    feed(60_000);
    expect(spy).not.toHaveBeenCalled();
    feed(64 * 1024);
    feed(1024 * 1024);
    expect(spy.mock.calls).toEqual([[30 * 1024 * 1024]]);
    expect(got.map((b) => b.length)).toEqual([60_000, 64 * 1024, 1024 * 1024]);
    vi.restoreAllMocks();
  });
});
