/** FrameParser with streamBodies: split body frames arrive as in-order pieces, never copied. */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { FrameError } from "../../src/errors.js";
import { FrameParser } from "../../src/protocol/frame.js";
import { frame, pattern } from "../support/frames.js";

const METHOD = 1;
const BODY = 3;

interface Got {
  type: number;
  channel: number;
  payload: Buffer;
}

function parse(chunks: Buffer[], frameMax = 1 << 20): Got[] {
  const got: Got[] = [];
  const p = new FrameParser(
    (type, channel, payload) => got.push({ type, channel, payload: Buffer.from(payload) }),
    frameMax,
    {
      streamBodies: true,
    },
  );
  for (const c of chunks) p.push(c);
  return got;
}

/** Body bytes per channel, in order; other frames as they are. */
function summarise(got: Got[]) {
  const bodies = new Map<number, Buffer[]>();
  const others: string[] = [];
  for (const g of got) {
    if (g.type === BODY) {
      const parts = bodies.get(g.channel) ?? [];
      parts.push(g.payload); // not a spread: a body fed one byte at a time has 19 000 parts
      bodies.set(g.channel, parts);
    } else others.push(`${g.type}:${g.channel}:${g.payload.toString("hex")}`);
  }
  return { others, bodies: [...bodies].map(([c, parts]) => [c, Buffer.concat(parts).toString("hex")]) };
}

function splitAt(buf: Buffer, cuts: number[]): Buffer[] {
  const points = [...new Set(cuts.map((c) => c % (buf.length + 1)))].sort((a, b) => a - b);
  const out: Buffer[] = [];
  let last = 0;
  for (const p of points) {
    out.push(buf.subarray(last, p));
    last = p;
  }
  out.push(buf.subarray(last));
  return out.map((b) => Buffer.from(b)); // each read its own buffer, as sockets give
}

describe("FrameParser with streamBodies", () => {
  const stream = Buffer.concat([
    frame(METHOD, 1, Buffer.from([0, 60, 0, 60, 1, 2, 3])),
    frame(BODY, 1, pattern(70_000, 1)),
    frame(BODY, 2, pattern(5, 2)),
    frame(BODY, 1, pattern(0, 3)),
    frame(8, 0, Buffer.alloc(0)),
    frame(BODY, 2, pattern(200_000, 4)),
  ]);
  const whole = summarise(parse([stream]));

  it("gives the same bytes per channel whatever the splits", () => {
    expect(whole.bodies).toEqual([
      [1, pattern(70_000, 1).toString("hex")],
      [2, Buffer.concat([pattern(5, 2), pattern(200_000, 4)]).toString("hex")],
    ]);
    fc.assert(
      fc.property(fc.array(fc.nat({ max: stream.length }), { maxLength: 40 }), (cuts) => {
        expect(summarise(parse(splitAt(stream, cuts)))).toEqual(whole);
      }),
      { numRuns: 200 },
    );
  });

  it("one byte at a time", () => {
    const head = Buffer.concat([
      frame(METHOD, 1, Buffer.from([0, 60, 0, 60, 1, 2, 3])),
      frame(BODY, 1, pattern(19_000, 9)),
    ]);
    const pieces = Array.from(head, (b) => Buffer.from([b]));
    expect(summarise(parse(pieces))).toEqual(summarise(parse([head])));
  });

  it("pieces of a split body frame are views of the chunks (no copy)", () => {
    const f = frame(BODY, 1, pattern(100_000, 5));
    const chunks = [f.subarray(0, 30_000), f.subarray(30_000, 70_000), f.subarray(70_000)].map((b) =>
      Buffer.from(b),
    );
    const views: Buffer[] = [];
    const p = new FrameParser((_t, _c, payload) => views.push(payload), 1 << 20, { streamBodies: true });
    for (const c of chunks) p.push(c);
    expect(views.length).toBe(3);
    for (const [i, v] of views.entries()) expect(v.buffer).toBe(chunks[i]!.buffer);
    expect(Buffer.concat(views).equals(pattern(100_000, 5))).toBe(true);
  });

  it("holds the last piece until the frame-end octet is checked", () => {
    const bad = frame(BODY, 1, pattern(1000, 6), 0x00);
    const delivered: number[] = [];
    const p = new FrameParser((_t, _c, payload) => delivered.push(payload.length), 1 << 20, {
      streamBodies: true,
    });
    p.push(Buffer.from(bad.subarray(0, 500)));
    p.push(Buffer.from(bad.subarray(500, bad.length - 1)));
    expect(delivered).toEqual([493]);
    expect(p.buffered).toBe(507); // the last piece, held
    expect(() => p.push(Buffer.from(bad.subarray(bad.length - 1)))).toThrow(FrameError);
    expect(delivered).toEqual([493]);
  });

  it("still refuses a body frame above frame_max before reading it", () => {
    const p = new FrameParser(() => {}, 8192, { streamBodies: true });
    const head = frame(BODY, 1, Buffer.alloc(0)).subarray(0, 7);
    head.writeUInt32BE(8185, 3);
    expect(() => p.push(Buffer.from(head))).toThrow(FrameError);
  });

  it("method and header frames split across chunks still arrive whole", () => {
    const m = frame(METHOD, 3, pattern(5000, 7));
    const got = parse([m.subarray(0, 10), m.subarray(10, 4000), m.subarray(4000)].map((b) => Buffer.from(b)));
    expect(got).toHaveLength(1);
    expect(got[0]!.payload.equals(pattern(5000, 7))).toBe(true);
  });
});
