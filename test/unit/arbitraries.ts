/**
 * Shared fast-check arbitraries and helpers for the protocol unit tests: the spec
 * JSON, field-table values and what the decoder is expected to give back for them.
 */
import { readFileSync } from "node:fs";
import fc from "fast-check";
import { Decimal, type FieldTable, type FieldValue, TypedValue } from "../../src/protocol/table.js";

// ─── the spec ───────────────────────────────────────────────────────────────

export interface SpecArg {
  name: string;
  type?: string;
  domain?: string;
  "default-value"?: unknown;
}
export interface SpecMethod {
  name: string;
  id: number;
  arguments: SpecArg[];
}
export interface SpecClass {
  name: string;
  id: number;
  methods: SpecMethod[];
  properties?: { name: string; type: string }[];
}
export interface Spec {
  domains: [string, string][];
  classes: SpecClass[];
}

export const spec = JSON.parse(
  readFileSync(new URL("../../spec/amqp-rabbitmq-0.9.1.json", import.meta.url), "utf8"),
) as Spec;

const domains = new Map(spec.domains);

/** The primitive type of an argument (resolving its domain). */
export function argType(a: SpecArg): string {
  const t = a.type ?? domains.get(a.domain ?? "");
  if (t === undefined) throw new Error(`no type for ${a.name}`);
  return t;
}

/** "routing-key" → "routingKey", as the generated interfaces spell it. */
export function camel(s: string): string {
  return s.replace(/-([a-z0-9])/g, (_, c: string) => c.toUpperCase());
}

export interface SpecMethodInfo {
  full: string;
  classId: number;
  methodId: number;
  args: SpecArg[];
}

export const specMethods: SpecMethodInfo[] = spec.classes.flatMap((c) =>
  c.methods.map((m) => ({ full: `${c.name}.${m.name}`, classId: c.id, methodId: m.id, args: m.arguments })),
);

// ─── strings ────────────────────────────────────────────────────────────────

const utf8Len = (s: string) => Buffer.byteLength(s, "utf8");

/** Strings whose UTF-8 encoding is at most 255 bytes (no lone surrogates, so they round-trip). */
export const shortStrArb: fc.Arbitrary<string> = fc.oneof(
  { weight: 6, arbitrary: fc.string({ unit: "binary", maxLength: 63 }) },
  {
    weight: 2,
    arbitrary: fc.string({ unit: "binary-ascii", maxLength: 255 }).filter((s) => utf8Len(s) <= 255),
  },
  {
    weight: 1,
    arbitrary: fc.constantFrom("a".repeat(255), `${"é".repeat(127)}a`, `${"😀".repeat(63)}abc`, ""),
  },
);

export const keyArb: fc.Arbitrary<string> = fc.oneof(
  { weight: 5, arbitrary: fc.string({ unit: "grapheme-ascii", maxLength: 12 }) },
  { weight: 2, arbitrary: fc.string({ unit: "binary", maxLength: 12 }) },
  { weight: 1, arbitrary: fc.constantFrom("__proto__", "constructor", "toString", "a".repeat(255)) },
);

// ─── field values ───────────────────────────────────────────────────────────

const MIN_I32 = -(2 ** 31);
const MAX_I32 = 2 ** 31 - 1;
const MAX_TS_SECONDS = 253_402_300_799; // 9999-12-31T23:59:59Z

export const dateArb: fc.Arbitrary<Date> = fc
  .oneof(fc.integer({ min: 0, max: 2 ** 31 }), fc.integer({ min: 0, max: MAX_TS_SECONDS }))
  .map((s) => new Date(s * 1000));

const unsafeBigIntArb = fc
  .oneof(
    fc.bigInt({ min: -(2n ** 63n), max: BigInt(Number.MIN_SAFE_INTEGER) - 1n }),
    fc.bigInt({ min: BigInt(Number.MAX_SAFE_INTEGER) + 1n, max: 2n ** 63n - 1n }),
  )
  .filter((b) => b < BigInt(Number.MIN_SAFE_INTEGER) || b > BigInt(Number.MAX_SAFE_INTEGER));

/** Leaf values written without a type wrapper. */
export const naturalLeafArb: fc.Arbitrary<FieldValue> = fc.oneof(
  fc.boolean(),
  fc.integer({ min: MIN_I32, max: MAX_I32 }),
  fc.maxSafeInteger(),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
  fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }),
  unsafeBigIntArb,
  fc.string({ unit: "binary", maxLength: 40 }),
  fc.uint8Array({ maxLength: 40 }).map((u) => Buffer.from(u)),
  fc.uint8Array({ maxLength: 10 }),
  dateArb,
  fc.constant(null),
  fc
    .record({ scale: fc.integer({ min: 0, max: 255 }), value: fc.integer({ min: MIN_I32, max: MAX_I32 }) })
    .map(({ scale, value }) => new Decimal(scale, value)),
);

const { table: naturalTableArb, value: naturalValueArb } = fc.letrec<{
  value: FieldValue;
  array: FieldValue[];
  table: FieldTable;
}>((tie) => ({
  value: fc.oneof({ depthSize: "small", withCrossShrink: true }, naturalLeafArb, tie("array"), tie("table")),
  array: fc.array(tie("value"), { maxLength: 5 }),
  table: fc.dictionary(keyArb, tie("value"), { maxKeys: 6 }) as fc.Arbitrary<FieldTable>,
}));

/** Field tables of plain JS values, nested through arrays and tables. */
export const tableArb: fc.Arbitrary<FieldTable> = naturalTableArb;
export const fieldValueArb: fc.Arbitrary<FieldValue> = naturalValueArb;

const smallLeafArb: fc.Arbitrary<FieldValue> = fc.oneof(
  fc.boolean(),
  fc.integer(),
  fc.maxSafeInteger(),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
  unsafeBigIntArb,
  fc.string({ unit: "binary", maxLength: 8 }),
  fc.uint8Array({ maxLength: 8 }).map((u) => Buffer.from(u)),
  dateArb,
  fc.constant(null),
  fc.constant(new Decimal(2, 12345)),
);
const smallKeyArb = fc.string({ unit: "binary", maxLength: 6 });

/** Small tables (a few hundred bytes at most) for tests that are quadratic in the encoded size. */
export const smallTableArb: fc.Arbitrary<FieldTable> = fc.dictionary(
  smallKeyArb,
  fc.oneof(
    { weight: 4, arbitrary: smallLeafArb },
    { weight: 1, arbitrary: fc.array(smallLeafArb, { maxLength: 3 }) },
    {
      weight: 1,
      arbitrary: fc.dictionary(smallKeyArb, smallLeafArb, { maxKeys: 3 }) as fc.Arbitrary<FieldTable>,
    },
  ),
  { maxKeys: 4 },
) as fc.Arbitrary<FieldTable>;

// ─── what decoding gives back ───────────────────────────────────────────────

function setOwn(o: FieldTable, k: string, v: FieldValue): void {
  Object.defineProperty(o, k, { value: v, enumerable: true, writable: true, configurable: true });
}

/** The value the decoder yields for a value given to the encoder. */
export function expectedValue(v: FieldValue): FieldValue {
  if (v === null || v === undefined) return null;
  switch (typeof v) {
    case "number":
      return Object.is(v, -0) ? 0 : v; // -0 is an integer, so it goes out as I 0
    case "bigint":
      return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
    case "string":
    case "boolean":
      return v;
  }
  if (v instanceof TypedValue) return expectedTyped(v);
  if (v instanceof Uint8Array) return Buffer.from(v);
  if (v instanceof Date || v instanceof Decimal) return v;
  if (Array.isArray(v)) return v.map(expectedValue);
  return expectedTable(v as FieldTable);
}

export function expectedTable(t: FieldTable | undefined): FieldTable {
  const out: FieldTable = {};
  if (t === undefined) return out;
  for (const k of Object.keys(t)) {
    const v = t[k];
    if (v === undefined) continue;
    setOwn(out, k, expectedValue(v));
  }
  return out;
}

function expectedTyped(tv: TypedValue): FieldValue {
  const v = tv.value;
  switch (tv.type) {
    case "f":
      return Math.fround(v as number);
    case "l":
      return expectedValue(typeof v === "number" ? BigInt(v) : v);
    case "d":
      return v; // a double keeps -0
    case "V":
      return null;
    case "t":
      return Boolean(v);
    default:
      return expectedValue(v);
  }
}
