/**
 * The encoders' error contract, which the session layer relies on:
 *   - a buffer too small → RangeError (the caller grows its buffer and retries), never a
 *     silently truncated frame;
 *   - a value that cannot be encoded → FieldTableError (retrying cannot help).
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { FieldTableError, FrameTooLargeError } from "../../src/errors.js";
import { writeBodyFrame, writeHeaderFrame, writeMethodFrame } from "../../src/protocol/frame.js";
import {
  type BasicProperties,
  encodeBasicProperties,
  encodeMethod,
  type MethodInput,
} from "../../src/protocol/generated/spec.js";
import { encodeTable, Field, type FieldTable } from "../../src/protocol/table.js";
import { thrown } from "../support/throws.js";
import {
  argType,
  camel,
  type SpecArg,
  shortStrArb,
  smallTableArb,
  specMethods,
  tableArb,
} from "./arbitraries.js";

const BIG = Buffer.alloc(1024 * 1024);

function argArb(a: SpecArg): fc.Arbitrary<unknown> {
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
      return fc.uint8Array({ maxLength: 100 });
    case "table":
      return smallTableArb;
    default:
      throw new Error(argType(a));
  }
}

const methodInputArb: fc.Arbitrary<MethodInput> = fc.constantFrom(...specMethods).chain((m) =>
  fc.tuple(...m.args.map(argArb)).map((vals) => {
    const args: Record<string, unknown> = {};
    m.args.forEach((a, i) => {
      args[camel(a.name)] = vals[i];
    });
    return { name: m.full, args } as MethodInput;
  }),
);

/** A fresh buffer of n bytes inside a larger one, so writes past its end would be visible. */
function tight(n: number): { buf: Buffer; guard: Buffer } {
  const backing = Buffer.alloc(n + 64, 0xa5);
  return { buf: backing.subarray(0, n), guard: backing.subarray(n) };
}

describe("a buffer too small → RangeError, never a truncated encoding", () => {
  it("every method, every shortfall", () => {
    fc.assert(
      fc.property(methodInputArb, fc.nat(), (method, k) => {
        const need = encodeMethod(BIG, 0, method);
        const n = k % need;
        const { buf, guard } = tight(n);
        const e = thrown(() => encodeMethod(buf, 0, method));
        expect(e).toBeInstanceOf(RangeError);
        expect(guard.every((b) => b === 0xa5)).toBe(true);
        // With exactly enough room it fits.
        expect(encodeMethod(Buffer.alloc(need), 0, method)).toBe(need);
      }),
      { numRuns: 1000 },
    );
  });

  it("method frames: one byte short (no room for the frame-end octet) → RangeError", () => {
    fc.assert(
      fc.property(methodInputArb, fc.integer({ min: 1, max: 8 }), (method, short) => {
        const size = writeMethodFrame(BIG, 0, 1, method, 0);
        const { buf, guard } = tight(Math.max(0, size - short));
        expect(thrown(() => writeMethodFrame(buf, 0, 1, method, 0))).toBeInstanceOf(RangeError);
        expect(guard.every((b) => b === 0xa5)).toBe(true);
        expect(writeMethodFrame(Buffer.alloc(size), 0, 1, method, 0)).toBe(size);
      }),
      { numRuns: 500 },
    );
  });

  it("a method whose last argument is a bit, with the buffer ending just before it", () => {
    const method: MethodInput = {
      name: "basic.publish",
      args: { exchange: "x", routingKey: "k", mandatory: true },
    };
    const need = encodeMethod(BIG, 0, method);
    expect(thrown(() => encodeMethod(Buffer.alloc(need - 1), 0, method))).toBeInstanceOf(RangeError);
  });

  it("content header frames and basic properties", () => {
    const props: BasicProperties = { contentType: "a", headers: { k: true }, priority: 1, clusterId: "" };
    const need = encodeBasicProperties(BIG, 0, props);
    for (let n = 0; n < need; n++) {
      expect(
        thrown(() => encodeBasicProperties(Buffer.alloc(n), 0, props)),
        `n=${n}`,
      ).toBeInstanceOf(RangeError);
    }
    const frame = writeHeaderFrame(BIG, 0, 1, 60, 10, props, 0);
    for (let n = 0; n < frame; n++) {
      expect(
        thrown(() => writeHeaderFrame(Buffer.alloc(n), 0, 1, 60, 10, props, 0)),
        `n=${n}`,
      ).toBeInstanceOf(RangeError);
    }
  });

  it("body frames", () => {
    const body = Buffer.from("hello");
    for (let n = 0; n < 13; n++) {
      expect(
        thrown(() => writeBodyFrame(Buffer.alloc(n), 0, 1, body, 0, 5)),
        `n=${n}`,
      ).toBeInstanceOf(RangeError);
    }
    expect(writeBodyFrame(Buffer.alloc(13), 0, 1, body, 0, 5)).toBe(13);
  });

  it("field tables, including typed values and single-octet values at the very end", () => {
    fc.assert(
      fc.property(tableArb, fc.nat(), (t, k) => {
        const need = encodeTable(BIG, 0, t);
        const n = k % need;
        const { buf, guard } = tight(n);
        expect(thrown(() => encodeTable(buf, 0, t))).toBeInstanceOf(RangeError);
        expect(guard.every((b) => b === 0xa5)).toBe(true);
      }),
      { numRuns: 500 },
    );
    const edge: FieldTable[] = [
      { a: true },
      { a: null },
      { a: Field.int8(1) },
      { a: Field.bool(false) },
      { a: [null] },
    ];
    for (const t of edge) {
      const need = encodeTable(BIG, 0, t);
      for (let n = 0; n < need; n++) {
        expect(
          thrown(() => encodeTable(Buffer.alloc(n), 0, t)),
          `${JSON.stringify(t)} n=${n}`,
        ).toBeInstanceOf(RangeError);
      }
    }
  });

  it("frame_max exceeded → FrameTooLargeError once the buffer is big enough", () => {
    const method: MethodInput = { name: "queue.declare", args: { arguments: { big: "x".repeat(5000) } } };
    expect(thrown(() => writeMethodFrame(BIG, 0, 1, method, 4096))).toBeInstanceOf(FrameTooLargeError);
  });
});

describe("values that cannot be encoded → FieldTableError, not RangeError", () => {
  /** Valid values for every argument, so that only the one under test is wrong. */
  const zero: Record<string, unknown> = {
    octet: 0,
    short: 0,
    long: 0,
    longlong: 0,
    bit: false,
    shortstr: "",
    longstr: "",
    table: {},
  };
  const integerArgs = specMethods.flatMap((m) =>
    m.args
      .filter((a) => ["octet", "short", "long"].includes(argType(a)))
      .map((a) => ({
        method: m.full,
        arg: camel(a.name),
        type: argType(a),
        valid: Object.fromEntries(m.args.map((b) => [camel(b.name), zero[argType(b)]])),
      })),
  );
  const max: Record<string, number> = { octet: 0xff, short: 0xffff, long: 0xffff_ffff };

  it.each(integerArgs.map((x) => [`${x.method} ${x.arg}`, x] as const))("%s", (_name, x) => {
    const m = max[x.type]!;
    for (const bad of [-1, m + 1, 1.5, Number.NaN, Number.POSITIVE_INFINITY, "1" as unknown as number]) {
      const method = { name: x.method, args: { ...x.valid, [x.arg]: bad } } as MethodInput;
      const e = thrown(() => encodeMethod(BIG, 0, method));
      expect(e, `${x.arg} = ${String(bad)}`).toBeInstanceOf(FieldTableError);
    }
    for (const ok of [0, m]) {
      const method = { name: x.method, args: { ...x.valid, [x.arg]: ok } } as MethodInput;
      expect(encodeMethod(BIG, 0, method)).toBeGreaterThan(0);
    }
  });

  it("a required integer argument left out", () => {
    const method = { name: "channel.close", args: { replyText: "x" } } as unknown as MethodInput;
    expect(thrown(() => encodeMethod(BIG, 0, method))).toBeInstanceOf(FieldTableError);
  });

  it("a longlong that is not a safe unsigned integer", () => {
    for (const bad of [-1, 2 ** 53, 0.5]) {
      const method: MethodInput = { name: "basic.ack", args: { deliveryTag: bad } };
      expect(thrown(() => encodeMethod(BIG, 0, method))).toBeInstanceOf(FieldTableError);
    }
  });

  it("octet properties out of range", () => {
    for (const props of [{ deliveryMode: 256 }, { priority: -1 }, { priority: 0.5 }] as BasicProperties[]) {
      expect(thrown(() => encodeBasicProperties(BIG, 0, props))).toBeInstanceOf(FieldTableError);
    }
  });

  it("a bad value deep in a table is a FieldTableError even when the buffer is small", () => {
    // Range checks come before writes: the error does not depend on the buffer.
    const t = { a: Field.int8(1000) };
    expect(thrown(() => encodeTable(Buffer.alloc(7), 0, t))).toBeInstanceOf(FieldTableError);
    expect(thrown(() => encodeTable(BIG, 0, t))).toBeInstanceOf(FieldTableError);
  });
});
