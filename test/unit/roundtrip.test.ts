import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { FieldTableError, WarrenError } from "../../src/errors.js";
import {
  type BasicProperties,
  decodeBasicProperties,
  decodeMethod,
  encodeBasicProperties,
  encodeMethod,
  METHOD_IDS,
  METHOD_NAMES,
  type MethodInput,
  type MethodName,
} from "../../src/protocol/generated/spec.js";
import {
  Decimal,
  decodeTable,
  encodeTable,
  Field,
  type FieldTable,
  type FieldValue,
  type TypedValue,
} from "../../src/protocol/table.js";
import {
  argType,
  camel,
  dateArb,
  expectedTable,
  expectedValue,
  fieldValueArb,
  type SpecArg,
  shortStrArb,
  smallTableArb,
  spec,
  specMethods,
  tableArb,
} from "./arbitraries.js";

const BUF = Buffer.alloc(4 * 1024 * 1024);

/** Encodes a table into a fresh buffer of exactly its size. */
function tableBytes(t: FieldTable): Buffer {
  const end = encodeTable(BUF, 0, t);
  return Buffer.from(BUF.subarray(0, end));
}

// ─── arguments of every method ──────────────────────────────────────────────

/** An input value for an argument, and what decoding should give back. */
type ArgCase = { input: unknown; expected: unknown };

function defaultFor(a: SpecArg): unknown {
  const t = argType(a);
  if (t === "table") return {};
  if (t === "bit") return a["default-value"] === true;
  const d = a["default-value"];
  if (t === "longstr") return Buffer.from(String(d));
  return d;
}

function valueArb(a: SpecArg): fc.Arbitrary<ArgCase> {
  const same = <T>(arb: fc.Arbitrary<T>) => arb.map((v) => ({ input: v, expected: v }));
  switch (argType(a)) {
    case "octet":
      return same(fc.integer({ min: 0, max: 0xff }));
    case "short":
      return same(fc.integer({ min: 0, max: 0xffff }));
    case "long":
      return same(fc.integer({ min: 0, max: 0xffff_ffff }));
    case "longlong":
      return same(
        fc.oneof(
          fc.integer({ min: 0, max: 0xffff_ffff }),
          fc.maxSafeNat(),
          fc.constant(Number.MAX_SAFE_INTEGER),
        ),
      );
    case "bit":
      return same(fc.boolean());
    case "shortstr":
      return same(shortStrArb);
    case "longstr":
      return fc.oneof(
        fc.uint8Array({ maxLength: 300 }).map((u) => ({ input: u, expected: Buffer.from(u) })),
        fc.string({ unit: "binary", maxLength: 100 }).map((s) => ({ input: s, expected: Buffer.from(s) })),
      );
    case "table":
      return fc
        .oneof({ weight: 3, arbitrary: smallTableArb }, { weight: 1, arbitrary: tableArb })
        .map((t) => ({ input: t, expected: expectedTable(t) }));
    default:
      throw new Error(`no arbitrary for ${argType(a)}`);
  }
}

/** Arguments may be left out when they have a default (tables and bits always may). */
function argCaseArb(a: SpecArg): fc.Arbitrary<ArgCase | undefined> {
  const t = argType(a);
  const optional = a["default-value"] !== undefined || t === "table" || t === "bit";
  if (!optional) return valueArb(a);
  return fc.oneof({ weight: 4, arbitrary: valueArb(a) }, { weight: 1, arbitrary: fc.constant(undefined) });
}

function methodArb(
  args: SpecArg[],
): fc.Arbitrary<{ input: Record<string, unknown>; expected: Record<string, unknown> }> {
  return fc.tuple(...args.map(argCaseArb)).map((cases) => {
    const input: Record<string, unknown> = {};
    const expected: Record<string, unknown> = {};
    args.forEach((a, i) => {
      const c = cases[i];
      const k = camel(a.name);
      if (c === undefined) {
        expected[k] = defaultFor(a);
      } else {
        input[k] = c.input;
        expected[k] = c.expected;
      }
    });
    return { input, expected };
  });
}

describe("the generated spec covers the spec JSON", () => {
  it("every method has an id and a name, both ways", () => {
    expect(specMethods.length).toBe(66);
    for (const m of specMethods) {
      const id = m.classId * 65536 + m.methodId;
      expect(METHOD_NAMES[id]).toBe(m.full);
      expect(METHOD_IDS[m.full as MethodName]).toBe(id);
    }
    expect(Object.keys(METHOD_NAMES).length).toBe(specMethods.length);
  });
});

describe("every method round-trips through encodeMethod / decodeMethod", () => {
  it.each(specMethods.map((m) => [m.full, m] as const))("%s", (full, m) => {
    const id = m.classId * 65536 + m.methodId;
    fc.assert(
      fc.property(methodArb(m.args), fc.integer({ min: 0, max: 16 }), ({ input, expected }, at) => {
        const method = { name: full, args: input } as MethodInput;
        const end = encodeMethod(BUF, at, method);
        expect(BUF.readUInt32BE(at)).toBe(id);
        const payload = Buffer.from(BUF.subarray(at, end));
        const decoded = decodeMethod(payload);
        expect(decoded.id).toBe(id);
        expect(decoded.name).toBe(full);
        expect(decoded.args).toEqual(expected);
        expect(Object.keys(decoded.args).sort()).toEqual(Object.keys(expected).sort());
        for (const [k, v] of Object.entries(decoded.args)) {
          if (Buffer.isBuffer(expected[k])) expect(Buffer.isBuffer(v)).toBe(true);
        }
      }),
      { numRuns: m.args.length === 0 ? 10 : 100 },
    );
  });

  it("a shortstr argument over 255 bytes → FieldTableError (every shortstr of every method)", () => {
    const tooLong = ["a".repeat(256), "é".repeat(128), "€".repeat(86), "😀".repeat(64)];
    let checked = 0;
    for (const m of specMethods) {
      for (const a of m.args) {
        if (argType(a) !== "shortstr") continue;
        for (const s of tooLong) {
          expect(Buffer.byteLength(s)).toBeGreaterThan(255);
          const method = { name: m.full, args: { [camel(a.name)]: s } } as MethodInput;
          expect(() => encodeMethod(BUF, 0, method), `${m.full} ${a.name}`).toThrow(FieldTableError);
          checked++;
        }
      }
    }
    expect(checked).toBeGreaterThan(100);
  });

  it("a shortstr of exactly 255 bytes is fine", () => {
    for (const s of ["a".repeat(255), `${"é".repeat(127)}a`, `${"€".repeat(85)}`]) {
      expect(Buffer.byteLength(s)).toBe(255);
      const end = encodeMethod(BUF, 0, { name: "basic.publish", args: { routingKey: s } });
      const m = decodeMethod(Buffer.from(BUF.subarray(0, end)));
      expect(m.name === "basic.publish" && m.args.routingKey).toBe(s);
    }
  });
});

// ─── basic properties ───────────────────────────────────────────────────────

const basicClass = spec.classes.find((c) => c.name === "basic")!;

function propArb(type: string): fc.Arbitrary<unknown> {
  switch (type) {
    case "shortstr":
      return shortStrArb;
    case "octet":
      return fc.integer({ min: 0, max: 255 });
    case "table":
      return tableArb;
    case "timestamp":
      return dateArb;
    default:
      throw new Error(type);
  }
}

const propsArb = fc.record(
  Object.fromEntries(basicClass.properties!.map((p) => [camel(p.name), propArb(p.type)])),
  { requiredKeys: [] },
) as fc.Arbitrary<BasicProperties>;

describe("basic properties", () => {
  it("there are 14 of them", () => {
    expect(basicClass.properties!.length).toBe(14);
  });

  it("any subset round-trips; absent ones stay absent", () => {
    fc.assert(
      fc.property(propsArb, fc.integer({ min: 0, max: 20 }), (props, at) => {
        const end = encodeBasicProperties(BUF, at, props);
        const bytes = Buffer.from(BUF.subarray(0, end));
        const decoded = decodeBasicProperties(bytes, at);
        const expected: Record<string, unknown> = { ...props };
        if (props.headers !== undefined) expected["headers"] = expectedTable(props.headers);
        expect(decoded).toEqual(expected);
        expect(Object.keys(decoded).sort()).toEqual(Object.keys(props).sort());
        // The flags word has one bit per present property, bits 15..2.
        let flags = 0;
        basicClass.properties!.forEach((p, i) => {
          if (camel(p.name) in props) flags |= 1 << (15 - i);
        });
        expect(bytes.readUInt16BE(at)).toBe(flags);
      }),
      { numRuns: 500 },
    );
  });

  it("all 14 set at once", () => {
    const all: BasicProperties = {
      contentType: "application/json",
      contentEncoding: "utf-8",
      headers: { a: 1, b: [true, "x"], c: { d: null } },
      deliveryMode: 2,
      priority: 255,
      correlationId: "corr",
      replyTo: "amq.rabbitmq.reply-to",
      expiration: "1000",
      messageId: "m-1",
      timestamp: new Date(1_700_000_000_000),
      type: "t",
      userId: "guest",
      appId: "app",
      clusterId: "cl",
    };
    expect(Object.keys(all).length).toBe(14);
    const end = encodeBasicProperties(BUF, 0, all);
    expect(BUF.readUInt16BE(0)).toBe(0xfffc);
    expect(decodeBasicProperties(Buffer.from(BUF.subarray(0, end)), 0)).toEqual(all);
  });

  it("properties set to undefined are absent", () => {
    const end = encodeBasicProperties(BUF, 0, { contentType: undefined, priority: 1 });
    expect(BUF.readUInt16BE(0)).toBe(0x0800);
    expect(decodeBasicProperties(Buffer.from(BUF.subarray(0, end)), 0)).toEqual({ priority: 1 });
  });
});

// ─── field tables ───────────────────────────────────────────────────────────

describe("field tables of natural JS values", () => {
  it("round-trip (property)", () => {
    fc.assert(
      fc.property(tableArb, (t) => {
        const bytes = tableBytes(t);
        expect(bytes.readUInt32BE(0)).toBe(bytes.length - 4);
        expect(decodeTable(bytes, 0)).toEqual(expectedTable(t));
      }),
      { numRuns: 1000 },
    );
  });

  it("single values land on the expected type letter", () => {
    fc.assert(
      fc.property(fieldValueArb, (v) => {
        const bytes = tableBytes({ k: v });
        const letter = String.fromCharCode(bytes[6]!);
        expect(letter).toBe(naturalLetter(v));
        expect(decodeTable(bytes, 0)["k"]).toEqual(expectedValue(v));
      }),
      { numRuns: 1000 },
    );
  });

  it.each([
    [0, "I"],
    [-1, "I"],
    [2 ** 31 - 1, "I"],
    [-(2 ** 31), "I"],
    [2 ** 31, "l"],
    [-(2 ** 31) - 1, "l"],
    [Number.MAX_SAFE_INTEGER, "l"],
    [Number.MIN_SAFE_INTEGER, "l"],
    [2 ** 53, "d"],
    [0.5, "d"],
    [2n ** 63n - 1n, "l"],
    [-(2n ** 63n), "l"],
    [5n, "l"],
    ["", "S"],
    [true, "t"],
    [null, "V"],
    [Buffer.alloc(0), "x"],
    [new Uint8Array(3), "x"],
    [new Date(0), "T"],
    [[], "A"],
    [{}, "F"],
    [new Decimal(0, 0), "D"],
  ] as [FieldValue, string][])("%o → %s", (v, letter) => {
    const bytes = tableBytes({ k: v });
    expect(String.fromCharCode(bytes[6]!)).toBe(letter);
    expect(decodeTable(bytes, 0)["k"]).toEqual(expectedValue(v));
  });

  it("a bigint outside the safe range comes back as a bigint, inside it as a number", () => {
    const t = decodeTable(tableBytes({ big: 2n ** 60n, neg: -(2n ** 60n), small: 7n }), 0);
    expect(t["big"]).toBe(2n ** 60n);
    expect(t["neg"]).toBe(-(2n ** 60n));
    expect(t["small"]).toBe(7);
  });

  it("undefined values are dropped from tables and become V in arrays", () => {
    const t = decodeTable(tableBytes({ a: undefined, b: [undefined, 1] }), 0);
    expect(t).toEqual({ b: [null, 1] });
    expect("a" in t).toBe(false);
  });

  it("a key named __proto__ is an own key and does not touch the prototype", () => {
    const input: FieldTable = {};
    Object.defineProperty(input, "__proto__", { value: { polluted: true }, enumerable: true });
    const t = decodeTable(tableBytes(input), 0);
    expect(Object.getPrototypeOf(t)).toBe(Object.prototype);
    expect(Object.keys(t)).toEqual(["__proto__"]);
    expect(({} as Record<string, unknown>)["polluted"]).toBeUndefined();
  });

  it("keys of 255 bytes are fine; longer keys → FieldTableError", () => {
    for (const k of ["k".repeat(255), `${"é".repeat(127)}k`]) {
      expect(Object.keys(decodeTable(tableBytes({ [k]: 1 }), 0))).toEqual([k]);
    }
    for (const k of ["k".repeat(256), "é".repeat(128), "€".repeat(86), "😀".repeat(64), "k".repeat(10_000)]) {
      expect(() => encodeTable(BUF, 0, { [k]: 1 })).toThrow(FieldTableError);
      expect(() => encodeTable(BUF, 0, { outer: { [k]: 1 } })).toThrow(FieldTableError);
    }
  });

  it("a timestamp before 1970 or an invalid Date → FieldTableError", () => {
    expect(() => encodeTable(BUF, 0, { d: new Date(-1000) })).toThrow(FieldTableError);
    expect(() => encodeTable(BUF, 0, { d: new Date(Number.NaN) })).toThrow(FieldTableError);
    // RabbitMQ cannot decode non-finite numbers (it closes the connection with 541): refused here.
    for (const v of [
      Number.NaN,
      Number.POSITIVE_INFINITY,
      Number.NEGATIVE_INFINITY,
      Field.float(Number.NaN),
      Field.double(Number.POSITIVE_INFINITY),
    ]) {
      expect(() => encodeTable(BUF, 0, { v })).toThrow(FieldTableError);
    }
  });

  it("values that cannot go in a table → FieldTableError", () => {
    expect(() => encodeTable(BUF, 0, { f: (() => 1) as unknown as FieldValue })).toThrow(FieldTableError);
    expect(() => encodeTable(BUF, 0, { s: Symbol("x") as unknown as FieldValue })).toThrow(FieldTableError);
    expect(() => encodeTable(BUF, 0, [] as unknown as FieldTable)).toThrow(FieldTableError);
  });

  it("natural values outside their wire type's range → FieldTableError, not RangeError", () => {
    for (const v of [2n ** 63n, -(2n ** 63n) - 1n, 2n ** 64n, new Decimal(2, 2 ** 31), new Decimal(2, 1.5)]) {
      expect(() => encodeTable(BUF, 0, { v }), String(v)).toThrow(FieldTableError);
    }
    expect(() => encodeTable(BUF, 0, { v: new Decimal(256, 1) })).toThrow(FieldTableError);
    expect(() => encodeTable(BUF, 0, { v: new Decimal(-1, 1) })).toThrow(FieldTableError);
  });
});

// ─── typed values ───────────────────────────────────────────────────────────

interface TypedCase {
  letter: string;
  arb: fc.Arbitrary<TypedValue>;
}

const int = (min: number, max: number) => fc.integer({ min, max });
const typedCases: TypedCase[] = [
  { letter: "t", arb: fc.boolean().map(Field.bool) },
  { letter: "b", arb: int(-128, 127).map(Field.int8) },
  { letter: "B", arb: int(0, 255).map(Field.uint8) },
  { letter: "s", arb: int(-32768, 32767).map(Field.int16) },
  { letter: "u", arb: int(0, 65535).map(Field.uint16) },
  { letter: "I", arb: int(-(2 ** 31), 2 ** 31 - 1).map(Field.int32) },
  { letter: "i", arb: int(0, 2 ** 32 - 1).map(Field.uint32) },
  {
    letter: "l",
    arb: fc
      .oneof(
        fc.maxSafeInteger() as fc.Arbitrary<number | bigint>,
        fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }),
      )
      .map(Field.int64),
  },
  {
    letter: "f",
    arb: fc
      .oneof(
        fc.float({ noNaN: true, noDefaultInfinity: true }),
        fc.double({ noNaN: true, noDefaultInfinity: true }),
      )
      .map(Field.float),
  },
  { letter: "d", arb: fc.double({ noNaN: true, noDefaultInfinity: true }).map(Field.double) },
  {
    letter: "D",
    arb: fc.tuple(int(0, 255), int(-(2 ** 31), 2 ** 31 - 1)).map(([s, v]) => Field.decimal(s, v)),
  },
  { letter: "S", arb: fc.string({ unit: "binary", maxLength: 50 }).map(Field.string) },
  { letter: "x", arb: fc.uint8Array({ maxLength: 50 }).map(Field.bytes) },
  { letter: "T", arb: dateArb.map(Field.timestamp) },
  { letter: "V", arb: fc.constant(Field.void()) },
];

describe("typed values (Field.*)", () => {
  it.each(typedCases.map((c) => [c.letter, c] as const))(
    "Field → '%s' on the wire, plain value back",
    (letter, c) => {
      fc.assert(
        fc.property(c.arb, (tv) => {
          const bytes = tableBytes({ k: tv });
          expect(String.fromCharCode(bytes[6]!)).toBe(letter);
          expect(decodeTable(bytes, 0)["k"]).toEqual(expectedValue(tv));
        }),
        { numRuns: 200 },
      );
    },
  );

  it("typed values inside arrays and nested tables", () => {
    const bytes = tableBytes({ a: [Field.int8(-1), Field.uint16(65535)], t: { x: Field.float(0.25) } });
    expect(decodeTable(bytes, 0)).toEqual({ a: [-1, 65535], t: { x: 0.25 } });
    expect(bytes.includes(Buffer.from([0x62, 0xff, 0x75, 0xff, 0xff]))).toBe(true);
  });

  const outOfRange: [string, TypedValue][] = [
    ["int8(300)", Field.int8(300)],
    ["int8(-129)", Field.int8(-129)],
    ["uint8(256)", Field.uint8(256)],
    ["uint8(-1)", Field.uint8(-1)],
    ["int16(32768)", Field.int16(32768)],
    ["uint16(65536)", Field.uint16(65536)],
    ["uint16(-1)", Field.uint16(-1)],
    ["int32(2^31)", Field.int32(2 ** 31)],
    ["uint32(2^32)", Field.uint32(2 ** 32)],
    ["uint32(-1)", Field.uint32(-1)],
    ["int64(2^63)", Field.int64(2n ** 63n)],
    ["int64(-2^63-1)", Field.int64(-(2n ** 63n) - 1n)],
    ["int64(2^53)", Field.int64(2 ** 53)],
    ["int64(0.5)", Field.int64(0.5)],
    ["int8(1.5)", Field.int8(1.5)],
    ["int32(NaN)", Field.int32(Number.NaN)],
    ["uint16(Infinity)", Field.uint16(Number.POSITIVE_INFINITY)],
    ["decimal(256, 1)", Field.decimal(256, 1)],
    ["decimal(2, 2^31)", Field.decimal(2, 2 ** 31)],
    ["decimal(2, 0.5)", Field.decimal(2, 0.5)],
    ["int8('1')", Field.int8("1" as unknown as number)],
    ["string(5)", Field.string(5 as unknown as string)],
    ["bytes('x')", Field.bytes("x" as unknown as Uint8Array)],
    ["timestamp(0)", Field.timestamp(0 as unknown as Date)],
    ["timestamp(before 1970)", Field.timestamp(new Date(-1))],
  ];
  it.each(outOfRange)("%s → FieldTableError, not RangeError", (_name, tv) => {
    let caught: unknown;
    try {
      encodeTable(BUF, 0, { k: tv });
    } catch (e) {
      caught = e;
    }
    expect(caught).toBeInstanceOf(FieldTableError);
  });

  it("out-of-range integers of every width → FieldTableError (property)", () => {
    const widths: [(v: number) => TypedValue, number, number][] = [
      [Field.int8, -128, 127],
      [Field.uint8, 0, 255],
      [Field.int16, -32768, 32767],
      [Field.uint16, 0, 65535],
      [Field.int32, -(2 ** 31), 2 ** 31 - 1],
      [Field.uint32, 0, 2 ** 32 - 1],
    ];
    fc.assert(
      fc.property(
        fc.constantFrom(...widths),
        fc.oneof(fc.double({ noNaN: true }), fc.maxSafeInteger()),
        ([make, min, max], v) => {
          const inRange = Number.isInteger(v) && v >= min && v <= max;
          let caught: unknown;
          try {
            encodeTable(BUF, 0, { k: make(v) });
          } catch (e) {
            caught = e;
          }
          if (inRange) expect(caught).toBeUndefined();
          else expect(caught).toBeInstanceOf(FieldTableError);
        },
      ),
      { numRuns: 1000 },
    );
  });

  it("errors from encoding are WarrenErrors with the FIELD_TABLE_ERROR code", () => {
    try {
      encodeTable(BUF, 0, { k: Field.int8(300) });
      expect.unreachable();
    } catch (e) {
      expect(e).toBeInstanceOf(WarrenError);
      expect((e as FieldTableError).code).toBe("FIELD_TABLE_ERROR");
    }
  });
});

function naturalLetter(v: FieldValue): string {
  if (v === null || v === undefined) return "V";
  switch (typeof v) {
    case "boolean":
      return "t";
    case "string":
      return "S";
    case "bigint":
      return "l";
    case "number":
      if (Number.isInteger(v) && v >= -(2 ** 31) && v <= 2 ** 31 - 1) return "I";
      if (Number.isSafeInteger(v)) return "l";
      return "d";
  }
  if (v instanceof Uint8Array) return "x";
  if (v instanceof Date) return "T";
  if (v instanceof Decimal) return "D";
  if (Array.isArray(v)) return "A";
  return "F";
}
