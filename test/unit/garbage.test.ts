/**
 * Hostile input: whatever bytes arrive, the parser and decoders either succeed or
 * throw a WarrenError (FrameError / FieldTableError). Never a RangeError or
 * TypeError, never a stack overflow, never a hang, never a huge allocation.
 */
import fc from "fast-check";
import { afterEach, describe, expect, it, vi } from "vitest";
import { FieldTableError, FrameError, WarrenError } from "../../src/errors.js";
import { FrameParser, writeHeaderFrame } from "../../src/protocol/frame.js";
import {
  type BasicProperties,
  decodeBasicProperties,
  decodeMethod,
  encodeMethod,
  METHOD_IDS,
  type MethodInput,
} from "../../src/protocol/generated/spec.js";
import { decodeTable, encodeTable, type FieldTable, type FieldValue } from "../../src/protocol/table.js";
import { frame } from "../support/frames.js";
import { argType, camel, shortStrArb, smallTableArb, specMethods, tableArb } from "./arbitraries.js";

const FRAME_MAX = 131072;
const BUF = Buffer.alloc(1024 * 1024);

afterEach(() => {
  vi.restoreAllMocks();
});

/**
 * Runs fn and returns what it threw (undefined if nothing). Fails on any throw that is
 * not a WarrenError, and on slowness. (Plain checks, no expect(): this runs in hot loops.)
 */
function onlyWarrenErrors(fn: () => void): unknown {
  const t0 = performance.now();
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  const ms = performance.now() - t0;
  if (ms > 1000) throw new Error(`took ${ms.toFixed(0)} ms`);
  if (caught !== undefined && !(caught instanceof WarrenError)) {
    throw new Error(`expected a WarrenError, got ${String(caught)}`, { cause: caught });
  }
  return caught;
}

/** Fails unless fn throws an instance of cls (plain check, for hot loops). */
function throwsA(cls: new (...args: never[]) => Error, fn: () => void, what: string): Error {
  const e = onlyWarrenErrors(fn);
  if (!(e instanceof cls)) throw new Error(`${what}: expected ${cls.name}, got ${String(e)}`);
  return e;
}

/** A parser wired to the decoders, as the connection wires it. */
function decodingParser(): FrameParser {
  return new FrameParser((type, _channel, payload) => {
    if (type === 1) decodeMethod(payload);
    else if (type === 2) decodeBasicProperties(payload, 12);
  }, FRAME_MAX);
}

const methodIds = Object.values(METHOD_IDS);

/** Payloads that start like a real method (a known id) and continue with noise. */
const methodishPayload = fc
  .tuple(fc.constantFrom(...methodIds), fc.uint8Array({ maxLength: 200 }))
  .map(([id, rest]) => {
    const b = Buffer.alloc(4 + rest.length);
    b.writeUInt32BE(id, 0);
    b.set(rest, 4);
    return b;
  });

/** Content-header payloads: class, weight, size, then a flags word and noise. */
const headerishPayload = fc
  .tuple(
    fc.uint8Array({ minLength: 12, maxLength: 12 }),
    fc.integer({ min: 0, max: 0xffff }),
    fc.uint8Array({ maxLength: 200 }),
  )
  .map(([head, flags, rest]) => {
    const b = Buffer.alloc(14 + rest.length);
    b.set(head, 0);
    b.writeUInt16BE(flags & 0xfffe, 12);
    b.set(rest, 14);
    return b;
  });

/** A valid method frame, encoded from random arguments. */
const validMethodPayload: fc.Arbitrary<Buffer> = fc.constantFrom(...specMethods).chain((m) =>
  fc
    .tuple(
      ...m.args.map((a) => {
        switch (argType(a)) {
          case "octet":
            return fc.integer({ min: 0, max: 255 });
          case "short":
            return fc.integer({ min: 0, max: 0xffff });
          case "long":
            return fc.integer({ min: 0, max: 0xffff_ffff });
          case "longlong":
            return fc.maxSafeNat();
          case "bit":
            return fc.boolean();
          case "shortstr":
            return shortStrArb;
          case "longstr":
            return fc.uint8Array({ maxLength: 50 });
          case "table":
            return smallTableArb;
          default:
            throw new Error(argType(a));
        }
      }),
    )
    .map((vals) => {
      const args: Record<string, unknown> = {};
      m.args.forEach((a, i) => {
        args[camel(a.name)] = vals[i];
      });
      const end = encodeMethod(BUF, 0, { name: m.full, args } as MethodInput);
      return Buffer.from(BUF.subarray(0, end));
    }),
);

const smallStr = fc.string({ unit: "binary", maxLength: 12 });
const propsArb = fc.record(
  {
    contentType: smallStr,
    contentEncoding: smallStr,
    headers: smallTableArb,
    deliveryMode: fc.integer({ min: 0, max: 255 }),
    priority: fc.integer({ min: 0, max: 255 }),
    correlationId: smallStr,
    replyTo: smallStr,
    expiration: smallStr,
    messageId: smallStr,
    timestamp: fc.integer({ min: 0, max: 2 ** 33 }).map((s) => new Date(s * 1000)),
    type: smallStr,
    userId: smallStr,
    appId: smallStr,
    clusterId: smallStr,
  },
  { requiredKeys: [] },
) as fc.Arbitrary<BasicProperties>;

const validHeaderPayload: fc.Arbitrary<Buffer> = fc.tuple(propsArb, fc.maxSafeNat()).map(([props, size]) => {
  const end = writeHeaderFrame(BUF, 0, 1, 60, size, props, 0);
  return Buffer.from(BUF.subarray(7, end - 1));
});

/** Mutates a buffer: flips, overwrites, truncates or extends. */
function mutated(base: fc.Arbitrary<Buffer>): fc.Arbitrary<Buffer> {
  return fc
    .tuple(
      base,
      fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 }),
      fc.option(fc.nat(), { nil: undefined }),
    )
    .map(([b, edits, cut]) => {
      const out = Buffer.from(b);
      for (const [pos, byte] of edits) if (out.length > 0) out[pos % out.length] = byte;
      return cut === undefined || out.length === 0 ? out : out.subarray(0, cut % (out.length + 1));
    });
}

describe("arbitrary bytes into the parser and decoders", () => {
  it("pure noise: succeed or throw a WarrenError", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 400 }), (bytes) => {
        onlyWarrenErrors(() => decodingParser().push(Buffer.from(bytes)));
      }),
      { numRuns: 1000 },
    );
  });

  it("well-framed noise (method and header frames with random payloads)", () => {
    const frames = fc.array(
      fc.oneof(
        fc.tuple(fc.constantFrom(1, 2, 3, 8), fc.uint8Array({ maxLength: 100 })),
        fc.tuple(fc.constant(1), methodishPayload),
        fc.tuple(fc.constant(2), headerishPayload),
      ),
      { minLength: 1, maxLength: 5 },
    );
    fc.assert(
      fc.property(frames, fc.integer({ min: 1, max: 50 }), (fs, step) => {
        const bytes = Buffer.concat(fs.map(([t, p]) => frame(t, 1, p)));
        onlyWarrenErrors(() => {
          const parser = decodingParser();
          for (let i = 0; i < bytes.length; i += step) parser.push(bytes.subarray(i, i + step));
        });
      }),
      { numRuns: 1000 },
    );
  });

  it("decodeMethod on a known method id followed by noise", () => {
    fc.assert(
      fc.property(methodishPayload, (p) => {
        const e = onlyWarrenErrors(() => decodeMethod(p));
        if (e !== undefined) expect(e).toBeInstanceOf(FrameError);
      }),
      { numRuns: 1000 },
    );
  });

  it("decodeMethod on mutated valid method payloads", () => {
    fc.assert(
      fc.property(mutated(validMethodPayload), (p) => {
        const e = onlyWarrenErrors(() => decodeMethod(p));
        if (e !== undefined) expect(e).toBeInstanceOf(FrameError);
      }),
      { numRuns: 1000 },
    );
  });

  it("decodeBasicProperties on noise after a flags word", () => {
    fc.assert(
      fc.property(headerishPayload, (p) => {
        const e = onlyWarrenErrors(() => decodeBasicProperties(p, 12));
        if (e !== undefined) expect(e).toBeInstanceOf(FrameError);
      }),
      { numRuns: 1000 },
    );
  });

  it("decodeBasicProperties on mutated valid content headers", () => {
    fc.assert(
      fc.property(mutated(validHeaderPayload), (p) => {
        onlyWarrenErrors(() => decodeBasicProperties(p, 12));
      }),
      { numRuns: 1000 },
    );
  });

  it("decodeBasicProperties on a payload too short for the flags word", () => {
    for (const p of [Buffer.alloc(12), Buffer.alloc(13)]) {
      expect(onlyWarrenErrors(() => decodeBasicProperties(p, 12))).toBeInstanceOf(FrameError);
    }
  });

  it("decodeTable on noise and on mutated valid tables", () => {
    const valid = tableArb.map((t) => Buffer.from(BUF.subarray(0, encodeTable(BUF, 0, t))));
    fc.assert(
      fc.property(
        fc.oneof(
          fc.uint8Array({ maxLength: 200 }).map((u) => Buffer.from(u)),
          mutated(valid),
        ),
        (b) => {
          const e = onlyWarrenErrors(() => decodeTable(b, 0));
          if (e !== undefined) expect(e).toBeInstanceOf(FieldTableError);
        },
      ),
      { numRuns: 1000 },
    );
  });
});

describe("truncated payloads", () => {
  it("every proper prefix of a valid method payload → FrameError from decodeMethod", () => {
    fc.assert(
      fc.property(validMethodPayload, (p) => {
        expect(() => decodeMethod(p)).not.toThrow();
        for (let n = 0; n < p.length; n++) {
          const e = throwsA(FrameError, () => decodeMethod(p.subarray(0, n)), `prefix ${n} of ${p.length}`);
          if ((e as FrameError).replyCode !== 502)
            throw new Error(`reply code ${(e as FrameError).replyCode}`);
        }
      }),
      { numRuns: 200 },
    );
  });

  it("the same prefixes framed and fed to the parser → FrameError", () => {
    fc.assert(
      fc.property(validMethodPayload, fc.nat(), (p, k) => {
        const n = k % p.length;
        const e = onlyWarrenErrors(() => decodingParser().push(frame(1, 1, p.subarray(0, n))));
        expect(e).toBeInstanceOf(FrameError);
      }),
      { numRuns: 300 },
    );
  });

  it("every proper prefix of valid content-header properties → FrameError", () => {
    fc.assert(
      fc.property(validHeaderPayload, (p) => {
        expect(() => decodeBasicProperties(p, 12)).not.toThrow();
        for (let n = 12; n < p.length; n++) {
          throwsA(
            FrameError,
            () => decodeBasicProperties(p.subarray(0, n), 12),
            `prefix ${n} of ${p.length}`,
          );
        }
      }),
      { numRuns: 100 },
    );
  });

  it("every proper prefix of a valid table → FieldTableError", () => {
    fc.assert(
      fc.property(smallTableArb, (t) => {
        const b = Buffer.from(BUF.subarray(0, encodeTable(BUF, 0, t)));
        for (let n = 0; n < b.length; n++) {
          throwsA(FieldTableError, () => decodeTable(b.subarray(0, n), 0), `prefix ${n} of ${b.length}`);
        }
      }),
      { numRuns: 100 },
    );
  });
});

describe("deep nesting", () => {
  /** `depth` tables each holding the next under key "a" (type F), built by hand: 7 bytes a level. */
  function nestedTables(depth: number): Buffer {
    const b = Buffer.alloc(7 * depth + 4); // the innermost table is empty: just its size, 0
    for (let i = 0; i < depth; i++) {
      const at = 7 * i;
      b.writeUInt32BE(b.length - at - 4, at);
      b.set([1, 0x61, 0x46], at + 4);
    }
    return b;
  }

  /** A table whose key "a" holds `depth` nested arrays (type A): 5 bytes a level. */
  function nestedArrays(depth: number): Buffer {
    const b = Buffer.alloc(4 + 2 + 5 * (depth + 1));
    b.writeUInt32BE(b.length - 4, 0);
    b.set([1, 0x61], 4);
    for (let i = 0; i <= depth; i++) {
      const at = 6 + 5 * i;
      b[at] = 0x41;
      b.writeUInt32BE(b.length - at - 5, at + 1);
    }
    return b;
  }

  it.each([1000, 100_000])(
    "decoding tables nested %i deep → FieldTableError, not a stack overflow",
    (depth) => {
      const e = onlyWarrenErrors(() => decodeTable(nestedTables(depth), 0));
      expect(e).toBeInstanceOf(FieldTableError);
      expect((e as Error).message).toMatch(/nested too deeply/);
    },
  );

  it("decoding arrays nested 1000 deep → FieldTableError", () => {
    const e = onlyWarrenErrors(() => decodeTable(nestedArrays(1000), 0));
    expect(e).toBeInstanceOf(FieldTableError);
  });

  it("moderate nesting is fine", () => {
    let expected: FieldTable = {};
    for (let i = 0; i < 20; i++) expected = { a: expected };
    expect(decodeTable(nestedTables(20), 0)).toEqual(expected);
    let arr: FieldValue = [];
    for (let i = 0; i < 20; i++) arr = [arr];
    expect(decodeTable(nestedArrays(20), 0)).toEqual({ a: arr });
  });

  it("a deeply nested table inside queue.declare → FrameError whose cause is a FieldTableError", () => {
    const t = nestedTables(1000);
    const head = Buffer.from([0x00, 0x32, 0x00, 0x0a, 0, 0, 1, 0x71, 0]);
    const e = onlyWarrenErrors(() => decodeMethod(Buffer.concat([head, t])));
    expect(e).toBeInstanceOf(FrameError);
    expect((e as Error).cause).toBeInstanceOf(FieldTableError);
  });

  it("a deeply nested headers table in a content header → FrameError", () => {
    const props = Buffer.concat([Buffer.alloc(12), Buffer.from([0x20, 0x00]), nestedTables(1000)]);
    const e = onlyWarrenErrors(() => decodeBasicProperties(props, 12));
    expect(e).toBeInstanceOf(FrameError);
  });

  it("encoding tables or arrays nested 1000 deep → FieldTableError, not a stack overflow", () => {
    let t: FieldTable = {};
    for (let i = 0; i < 1000; i++) t = { a: t };
    expect(onlyWarrenErrors(() => encodeTable(BUF, 0, t))).toBeInstanceOf(FieldTableError);
    let a: FieldValue = [];
    for (let i = 0; i < 1000; i++) a = [a];
    expect(onlyWarrenErrors(() => encodeTable(BUF, 0, { a }))).toBeInstanceOf(FieldTableError);
  });

  it("encoding a table that contains itself → FieldTableError", () => {
    const t: FieldTable = {};
    t["self"] = t;
    expect(onlyWarrenErrors(() => encodeTable(BUF, 0, t))).toBeInstanceOf(FieldTableError);
  });
});

describe("memory bound", () => {
  it.each([0xffff_ffff, 0x8000_0000, FRAME_MAX - 7])(
    "a header declaring %i payload bytes with frame_max 131072 throws without allocating",
    (size) => {
      const h = Buffer.alloc(7);
      h[0] = 3;
      h.writeUInt32BE(size, 3);
      const parser = decodingParser();
      const spies = [
        vi.spyOn(Buffer, "allocUnsafe"),
        vi.spyOn(Buffer, "alloc"),
        vi.spyOn(Buffer, "allocUnsafeSlow"),
      ];
      const before = process.memoryUsage().arrayBuffers;
      const e = onlyWarrenErrors(() => parser.push(h));
      for (const s of spies) expect(s).not.toHaveBeenCalled();
      expect(e).toBeInstanceOf(FrameError);
      expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(1024 * 1024);
      expect(parser.buffered).toBe(0);
    },
  );

  it("a frame just under the limit, arriving split, allocates exactly its size", () => {
    const payload = Buffer.alloc(FRAME_MAX - 8, 1);
    const f = frame(3, 1, payload);
    const parser = new FrameParser(() => {}, FRAME_MAX);
    const spy = vi.spyOn(Buffer, "allocUnsafe");
    parser.push(f.subarray(0, 100));
    expect(spy).toHaveBeenCalledTimes(1);
    expect(spy).toHaveBeenCalledWith(FRAME_MAX);
    parser.push(f.subarray(100));
  });

  it("random headers never allocate more than frame_max", () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 7, maxLength: 7 }), fc.integer({ min: 1, max: 7 }), (h, k) => {
        const parser = new FrameParser(() => {}, FRAME_MAX);
        const spy = vi.spyOn(Buffer, "allocUnsafe");
        try {
          onlyWarrenErrors(() => {
            parser.push(Buffer.from(h.subarray(0, k)));
            parser.push(Buffer.from(h.subarray(k)));
          });
          for (const call of spy.mock.calls) expect(call[0]).toBeLessThanOrEqual(FRAME_MAX);
        } finally {
          spy.mockRestore();
        }
      }),
      { numRuns: 500 },
    );
  });
});
