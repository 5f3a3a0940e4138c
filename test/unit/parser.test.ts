import fc from "fast-check";
import { afterEach, describe, expect, it, vi } from "vitest";
import { FrameError } from "../../src/errors.js";
import { FRAME_HEADER_SIZE, FRAME_OVERHEAD, FrameParser, HEARTBEAT_FRAME } from "../../src/protocol/frame.js";
import { PROTOCOL_HEADER } from "../../src/protocol/generated/spec.js";
import { thrown } from "../support/throws.js";

interface Frame {
  type: number;
  channel: number;
  payload: Buffer;
}

const FRAME_MAX = 131072;

/** A cheap comparable form (deep equality over large Buffers is slow). */
function norm(frames: Frame[]): string[] {
  return frames.map((f) => `${f.type}/${f.channel}/${f.payload.toString("hex")}`);
}

/** Builds the wire bytes of a frame by hand (independent of the encoders). */
function wire(f: Frame): Buffer {
  const b = Buffer.alloc(f.payload.length + FRAME_OVERHEAD);
  b[0] = f.type;
  b.writeUInt16BE(f.channel, 1);
  b.writeUInt32BE(f.payload.length, 3);
  f.payload.copy(b, FRAME_HEADER_SIZE);
  b[b.length - 1] = 0xce;
  return b;
}

/** A parser that records copies of what it yields (and the raw payload views). */
function recorder(frameMax = FRAME_MAX) {
  const frames: Frame[] = [];
  const views: Buffer[] = [];
  const parser = new FrameParser((type, channel, payload) => {
    views.push(payload);
    frames.push({ type, channel, payload: Buffer.from(payload) });
  }, frameMax);
  return { parser, frames, views };
}

/** Splits bytes at the given (sorted, distinct) cut points into fresh, unpooled buffers. */
function cut(bytes: Buffer, points: number[]): Buffer[] {
  const out: Buffer[] = [];
  let prev = 0;
  for (const p of [...points, bytes.length]) {
    const c = Buffer.alloc(p - prev); // Buffer.alloc never hands out a slice of the shared pool
    bytes.copy(c, 0, prev, p);
    out.push(c);
    prev = p;
  }
  return out;
}

/** True when two views share memory. (Small Buffers may share one pooled ArrayBuffer without overlapping.) */
function overlaps(a: Uint8Array, b: Uint8Array): boolean {
  if (a.buffer !== b.buffer) return false;
  return a.byteOffset < b.byteOffset + b.byteLength && b.byteOffset < a.byteOffset + a.byteLength;
}

/** True when `view` lies inside `chunk`. */
function within(view: Uint8Array, chunk: Uint8Array): boolean {
  return (
    view.buffer === chunk.buffer &&
    view.byteOffset >= chunk.byteOffset &&
    view.byteOffset + view.byteLength <= chunk.byteOffset + chunk.byteLength
  );
}

const frameArb: fc.Arbitrary<Frame> = fc.record({
  type: fc.constantFrom(1, 2, 3, 8),
  channel: fc.integer({ min: 0, max: 0xffff }),
  payload: fc
    .oneof(
      { weight: 4, arbitrary: fc.uint8Array({ maxLength: 64 }) },
      { weight: 1, arbitrary: fc.uint8Array({ minLength: 1000, maxLength: 5000 }) },
    )
    .map((u) => Buffer.from(u)),
});

/** A stream of frames and cut points inside it. */
const streamArb = fc.array(frameArb, { minLength: 1, maxLength: 30 }).chain((frames) => {
  const bytes = Buffer.concat(frames.map(wire));
  return fc.record({
    frames: fc.constant(frames),
    bytes: fc.constant(bytes),
    points: fc
      .uniqueArray(fc.integer({ min: 1, max: Math.max(1, bytes.length - 1) }), { maxLength: 40 })
      .map((a) => a.filter((x) => x < bytes.length).sort((x, y) => x - y)),
  });
});

afterEach(() => {
  vi.restoreAllMocks();
});

describe("FrameParser: reassembly", () => {
  it("yields the same frames fed whole, byte by byte, and in random splits", () => {
    fc.assert(
      fc.property(streamArb, ({ frames, bytes, points }) => {
        const whole = recorder();
        whole.parser.push(bytes);
        expect(norm(whole.frames)).toEqual(norm(frames));
        expect(whole.parser.buffered).toBe(0);

        const split = recorder();
        for (const chunk of cut(bytes, points)) split.parser.push(chunk);
        expect(norm(split.frames)).toEqual(norm(frames));
        expect(split.parser.buffered).toBe(0);
      }),
      { numRuns: 200 },
    );
  });

  it("byte by byte", () => {
    fc.assert(
      fc.property(fc.array(frameArb, { minLength: 1, maxLength: 8 }), (frames) => {
        const bytes = Buffer.concat(frames.map(wire));
        const r = recorder();
        for (let i = 0; i < bytes.length; i++) r.parser.push(bytes.subarray(i, i + 1));
        expect(norm(r.frames)).toEqual(norm(frames));
        expect(r.parser.buffered).toBe(0);
      }),
      { numRuns: 100 },
    );
  });

  it("empty chunks change nothing", () => {
    const f = { type: 1, channel: 7, payload: Buffer.from("abcdef") };
    const bytes = wire(f);
    const r = recorder();
    const empty = Buffer.alloc(0);
    r.parser.push(empty);
    r.parser.push(bytes.subarray(0, 3));
    r.parser.push(empty);
    r.parser.push(bytes.subarray(3, 9));
    r.parser.push(empty);
    r.parser.push(bytes.subarray(9));
    r.parser.push(empty);
    expect(r.frames).toEqual([f]);
  });

  it("a header split exactly at its end (7 bytes, then the rest)", () => {
    const f = { type: 3, channel: 2, payload: Buffer.from("xyz") };
    const bytes = wire(f);
    const r = recorder();
    r.parser.push(bytes.subarray(0, 7));
    expect(r.parser.buffered).toBe(7);
    r.parser.push(bytes.subarray(7));
    expect(r.frames).toEqual([f]);
  });

  it("a zero-length payload frame whose end octet arrives alone", () => {
    const r = recorder();
    r.parser.push(HEARTBEAT_FRAME.subarray(0, 7));
    expect(r.frames).toEqual([]);
    r.parser.push(HEARTBEAT_FRAME.subarray(7));
    expect(r.frames).toEqual([{ type: 8, channel: 0, payload: Buffer.alloc(0) }]);
  });
});

describe("FrameParser: zero copy and copies", () => {
  it("a frame lying wholly in one chunk is delivered as a view of that chunk", () => {
    const frames = [
      { type: 1, channel: 1, payload: Buffer.from("first") },
      { type: 3, channel: 1, payload: Buffer.alloc(300, 7) },
      { type: 8, channel: 0, payload: Buffer.alloc(0) },
    ];
    const chunk = Buffer.alloc(frames.reduce((n, f) => n + f.payload.length + FRAME_OVERHEAD, 0));
    Buffer.concat(frames.map(wire)).copy(chunk);
    const r = recorder();
    r.parser.push(chunk);
    expect(r.frames).toEqual(frames);
    let off = 0;
    for (const [i, v] of r.views.entries()) {
      expect(v.buffer).toBe(chunk.buffer);
      expect(within(v, chunk)).toBe(true);
      expect(v.byteOffset).toBe(chunk.byteOffset + off + FRAME_HEADER_SIZE);
      off += frames[i]!.payload.length + FRAME_OVERHEAD;
    }
  });

  it("holds views only for frames wholly in a chunk, copies for the others (property)", () => {
    fc.assert(
      fc.property(streamArb, ({ frames, bytes, points }) => {
        const chunks = cut(bytes, points);
        const r = recorder();
        const origin: number[] = []; // index of the chunk each frame ended in
        for (const [i, c] of chunks.entries()) {
          const before = r.views.length;
          r.parser.push(c);
          for (let k = before; k < r.views.length; k++) origin.push(i);
        }
        expect(norm(r.frames)).toEqual(norm(frames));
        // Recompute which frames lie wholly in one chunk.
        const bounds: number[] = [];
        let acc = 0;
        for (const c of chunks) bounds.push((acc += c.length));
        let start = 0;
        for (const [k, f] of frames.entries()) {
          const end = start + f.payload.length + FRAME_OVERHEAD;
          const chunkOf = (pos: number) => bounds.findIndex((b) => pos < b);
          const whole = chunkOf(start) === chunkOf(end - 1);
          const view = r.views[k]!;
          const chunk = chunks[origin[k]!]!;
          if (whole) expect(within(view, chunk)).toBe(true);
          else for (const c of chunks) expect(overlaps(view, c)).toBe(false);
          start = end;
        }
      }),
      { numRuns: 200 },
    );
  });

  it("frames split across chunks are copies and survive the reader reusing its buffer (1 MiB payloads)", () => {
    const MiB = 1024 * 1024;
    const frames = [0x11, 0x22, 0x33, 0x44].map((fill, i) => ({
      type: 3,
      channel: i + 1,
      payload: Buffer.alloc(MiB, fill),
    }));
    // A distinctive pattern so a misplaced copy shows up.
    for (const f of frames) for (let i = 0; i < f.payload.length; i += 4099) f.payload[i] = i & 0xff;
    const bytes = Buffer.concat(frames.map(wire));

    const views: Buffer[] = [];
    const parser = new FrameParser((_t, _c, payload) => views.push(payload), 2 * MiB);
    // One read buffer, overwritten for every read (as a socket reading into a fixed buffer would).
    const readBuf = Buffer.alloc(64 * 1024);
    for (let off = 0; off < bytes.length; off += readBuf.length) {
      const n = bytes.copy(readBuf, 0, off, off + readBuf.length);
      parser.push(readBuf.subarray(0, n));
      readBuf.fill(0xee); // the "next read" clobbers the buffer
    }
    expect(views.length).toBe(4);
    for (const [i, v] of views.entries()) {
      expect(v.buffer).not.toBe(readBuf.buffer);
      expect(v.equals(frames[i]!.payload)).toBe(true);
    }

    // Feeding more data later does not disturb what was handed out.
    const more = Buffer.concat(frames.map((f) => wire({ ...f, payload: Buffer.alloc(MiB, 0x99) })));
    for (let off = 0; off < more.length; off += 100_000) parser.push(more.subarray(off, off + 100_000));
    expect(views.length).toBe(8);
    for (let i = 0; i < 4; i++) expect(views[i]!.equals(frames[i]!.payload)).toBe(true);
    for (let i = 4; i < 8; i++) expect(views[i]!.every((x) => x === 0x99)).toBe(true);
  });

  it("a split frame's copy is exactly its size and is never reused for the next frame", () => {
    // Above 4 KiB Buffer.allocUnsafe does not use the shared pool, so the copy's ArrayBuffer is its own.
    const a = wire({ type: 3, channel: 1, payload: Buffer.alloc(5000, 1) });
    const b = wire({ type: 3, channel: 1, payload: Buffer.alloc(5000, 2) });
    const r = recorder();
    const [a1, a2b1, b2] = cut(Buffer.concat([a, b]), [2500, a.length + 10]) as [Buffer, Buffer, Buffer];
    r.parser.push(a1);
    r.parser.push(a2b1);
    r.parser.push(b2);
    expect(r.views.length).toBe(2);
    expect(overlaps(r.views[0]!, r.views[1]!)).toBe(false);
    for (const c of [a1, a2b1, b2]) expect(overlaps(r.views[0]!, c)).toBe(false);
    expect(r.views[0]!.every((x) => x === 1)).toBe(true);
    expect(r.views[1]!.every((x) => x === 2)).toBe(true);
    expect(r.views[0]!.buffer.byteLength).toBe(5000 + FRAME_OVERHEAD);
  });

  it("small split frames (copied into pooled memory) do not overlap each other or the chunks", () => {
    const frames = Array.from({ length: 50 }, (_, i) => ({
      type: 3,
      channel: 1,
      payload: Buffer.alloc(100, i),
    }));
    const bytes = Buffer.concat(frames.map(wire));
    const points = Array.from({ length: 50 }, (_, i) => i * 108 + 50); // every frame straddles a cut
    const chunks = cut(bytes, points);
    const r = recorder();
    for (const c of chunks) r.parser.push(c);
    expect(r.frames).toEqual(frames);
    for (const [i, v] of r.views.entries()) {
      for (const c of chunks) expect(overlaps(v, c)).toBe(false);
      for (const w of r.views.slice(i + 1)) expect(overlaps(v, w)).toBe(false);
    }
    for (const c of chunks) c.fill(0xff);
    for (const [i, v] of r.views.entries()) expect(v.every((x) => x === i)).toBe(true);
  });
});

describe("FrameParser: limits and errors", () => {
  function header(type: number, channel: number, size: number): Buffer {
    const h = Buffer.alloc(7);
    h[0] = type;
    h.writeUInt16BE(channel, 1);
    h.writeUInt32BE(size, 3);
    return h;
  }

  it("a header declaring 2^32-1 bytes throws FrameError at once, before allocating anything", () => {
    const r = recorder(FRAME_MAX);
    const h = header(3, 1, 0xffff_ffff);
    const allocUnsafe = vi.spyOn(Buffer, "allocUnsafe");
    const alloc = vi.spyOn(Buffer, "alloc");
    const allocSlow = vi.spyOn(Buffer, "allocUnsafeSlow");
    const err = thrown(() => r.parser.push(h));
    expect(allocUnsafe).not.toHaveBeenCalled();
    expect(alloc).not.toHaveBeenCalled();
    expect(allocSlow).not.toHaveBeenCalled();
    expect(err).toBeInstanceOf(FrameError);
    expect((err as Error).message).toMatch(/larger than frame_max/);
    expect(r.frames).toEqual([]);
  });

  it("the same when the oversized header arrives in pieces", () => {
    const h = header(1, 0, 0xffff_ffff);
    const r = recorder(FRAME_MAX);
    r.parser.push(h.subarray(0, 3));
    expect(r.parser.buffered).toBe(3);
    const rest = h.subarray(3);
    const allocUnsafe = vi.spyOn(Buffer, "allocUnsafe");
    const err = thrown(() => r.parser.push(rest));
    expect(allocUnsafe).not.toHaveBeenCalled();
    expect(err).toBeInstanceOf(FrameError);
  });

  it("frame_max counts the whole frame: payload frame_max-8 passes, frame_max-7 fails", () => {
    const ok = wire({ type: 3, channel: 1, payload: Buffer.alloc(4096 - 8) });
    const r = recorder(4096);
    r.parser.push(ok);
    expect(r.frames.length).toBe(1);
    expect(() => recorder(4096).parser.push(header(3, 1, 4096 - 7))).toThrow(FrameError);
  });

  it("setFrameMax changes the limit; 0 means no limit", () => {
    const r = recorder(4096);
    r.parser.setFrameMax(8192);
    r.parser.push(wire({ type: 3, channel: 1, payload: Buffer.alloc(8000) }));
    expect(r.frames.length).toBe(1);
    expect(() => r.parser.push(header(3, 1, 8192 - 7))).toThrow(FrameError);
    const u = recorder(4096);
    u.parser.setFrameMax(0);
    u.parser.push(wire({ type: 3, channel: 1, payload: Buffer.alloc(100_000) }));
    expect(u.frames.length).toBe(1);
  });

  it("frame_max 0 in the constructor also means no limit", () => {
    const r = recorder(0);
    r.parser.push(
      Buffer.concat([HEARTBEAT_FRAME, wire({ type: 3, channel: 1, payload: Buffer.alloc(9000) })]),
    );
    expect(r.frames.length).toBe(2);
  });

  it("a bad frame-end octet → FrameError (frame in one chunk)", () => {
    const b = wire({ type: 1, channel: 1, payload: Buffer.from("abc") });
    b[b.length - 1] = 0xcd;
    const err = thrown(() => recorder().parser.push(b));
    expect(err).toBeInstanceOf(FrameError);
    expect((err as FrameError).replyCode).toBe(501);
    expect(String((err as Error).message)).toMatch(/0xcd/);
  });

  it("a bad frame-end octet → FrameError (frame split across chunks)", () => {
    const b = wire({ type: 3, channel: 1, payload: Buffer.alloc(100) });
    b[b.length - 1] = 0;
    const r = recorder();
    r.parser.push(b.subarray(0, 50));
    expect(() => r.parser.push(b.subarray(50))).toThrow(FrameError);
    expect(r.frames).toEqual([]);
  });

  it("frames before a bad one are still delivered", () => {
    const good = wire({ type: 1, channel: 1, payload: Buffer.from("ok") });
    const bad = wire({ type: 1, channel: 1, payload: Buffer.from("no") });
    bad[bad.length - 1] = 0x00;
    const r = recorder();
    expect(() => r.parser.push(Buffer.concat([good, bad]))).toThrow(FrameError);
    expect(r.frames.map((f) => f.payload.toString())).toEqual(["ok"]);
  });

  it.each([0, 4, 5, 6, 7, 9, 0xce, 0xff])("unknown frame type %i → FrameError", (type) => {
    const err = thrown(() => recorder().parser.push(header(type, 0, 0)));
    expect(err).toBeInstanceOf(FrameError);
    expect((err as Error).message).toMatch(/unknown frame type/);
  });

  it("the AMQP protocol header arriving as a frame → FrameError naming the protocol header", () => {
    const amqp = Buffer.from("AMQP\x00\x00\x09\x01", "latin1");
    expect(amqp).toEqual(PROTOCOL_HEADER);
    const err = thrown(() => recorder().parser.push(amqp));
    expect(err).toBeInstanceOf(FrameError);
    expect((err as Error).message).toMatch(/protocol header/);
    expect((err as Error).message).toMatch(/AMQP 0 0 9/);
  });

  it("the protocol header arriving in pieces", () => {
    const amqp = Buffer.from("AMQP\x00\x00\x09\x01", "latin1");
    const r = recorder();
    r.parser.push(amqp.subarray(0, 2));
    expect(() => r.parser.push(amqp.subarray(2))).toThrow(/protocol header/);
  });

  it("another protocol's header (AMQP 1.0) is named too", () => {
    const err = thrown(() => recorder().parser.push(Buffer.from("AMQP\x00\x01\x00\x00", "latin1")));
    expect((err as Error).message).toMatch(/protocol header/);
  });

  it("`buffered` reflects the bytes held for an incomplete frame", () => {
    const f = wire({ type: 3, channel: 4, payload: Buffer.alloc(100, 5) });
    const r = recorder();
    expect(r.parser.buffered).toBe(0);
    r.parser.push(f.subarray(0, 4));
    expect(r.parser.buffered).toBe(4);
    r.parser.push(f.subarray(4, 6));
    expect(r.parser.buffered).toBe(6);
    r.parser.push(f.subarray(6, 50));
    expect(r.parser.buffered).toBe(50);
    r.parser.push(f.subarray(50, 107));
    expect(r.parser.buffered).toBe(107);
    r.parser.push(f.subarray(107));
    expect(r.parser.buffered).toBe(0);
    expect(r.frames.length).toBe(1);
    // A complete frame plus part of the next.
    r.parser.push(Buffer.concat([f, f.subarray(0, 20)]));
    expect(r.parser.buffered).toBe(20);
    expect(r.frames.length).toBe(2);
  });

  it("`buffered` equals the bytes after the last complete frame (property)", () => {
    fc.assert(
      fc.property(streamArb, ({ bytes, points }) => {
        const r = recorder();
        let fed = 0;
        const ends: number[] = [];
        let pos = 0;
        while (pos < bytes.length) {
          pos += bytes.readUInt32BE(pos + 3) + FRAME_OVERHEAD;
          ends.push(pos);
        }
        for (const chunk of cut(bytes, points)) {
          r.parser.push(chunk);
          fed += chunk.length;
          const lastEnd = [0, ...ends].filter((e) => e <= fed).pop()!;
          expect(r.parser.buffered).toBe(fed - lastEnd);
        }
      }),
      { numRuns: 200 },
    );
  });
});
