/**
 * AMQP field tables and arrays with RabbitMQ's type letters (its 0-9-1 errata):
 *   t bool · b int8 · B uint8 · s int16 · u uint16 · I int32 · i uint32 · l int64
 *   f float32 · d float64 · D decimal · S long string · x byte array · A array
 *   T timestamp · F table · V void
 *
 * Decoding yields plain JS values. Encoding infers a type from the JS value
 * (boolean → t, integer → I or l, other number → d, bigint → l, string → S,
 * Buffer/Uint8Array → x, Date → T, array → A, object → F, null/undefined → V);
 * wrap a value with `Field.int16(5)` & co. to choose the wire type yourself.
 */
import { FieldTableError } from "../errors.js";
import { readU64, writeShortBytes, writeTimestamp } from "./codec.js";

/** A field's wire type: RabbitMQ's type letter (see the module comment). */
export type FieldType =
  | "t"
  | "b"
  | "B"
  | "s"
  | "u"
  | "I"
  | "i"
  | "l"
  | "f"
  | "d"
  | "D"
  | "S"
  | "x"
  | "A"
  | "T"
  | "F"
  | "V";

/** A decimal: value × 10^-scale. */
export class Decimal {
  /**
   * `scale`: decimal places, 0 to 255; `value`: a 32-bit signed integer. `new Decimal(2, 1999)` is
   * 19.99. Out of range is a FieldTableError when encoded.
   */
  constructor(
    readonly scale: number,
    readonly value: number,
  ) {}
}

/** A value with an explicit wire type. */
export class TypedValue {
  /** Prefer the `Field` helpers, which pair each type with the value it takes. */
  constructor(
    readonly type: FieldType,
    readonly value: FieldValue,
  ) {}
}

/**
 * What a field table holds. Encoding infers the wire type from the JS value (the module comment);
 * decoding gives plain values (an int64 beyond 2^53 as a bigint, a decimal as a Decimal). Numbers
 * must be finite: RabbitMQ cannot decode NaN or ±Infinity, so encoding refuses them (FieldTableError).
 */
export type FieldValue =
  | boolean
  | number
  | bigint
  | string
  | Uint8Array
  | Date
  | Decimal
  | TypedValue
  | null
  | undefined
  | FieldValue[]
  | FieldTable;

/** An AMQP field table (headers, arguments): names (at most 255 bytes) to values. */
export interface FieldTable {
  [key: string]: FieldValue;
}

/**
 * Helpers that pin a wire type, e.g. `{ "x-retries": Field.int16(3) }`. A value out of the type's
 * range is a FieldTableError when encoded.
 */
export const Field = {
  /** t: a boolean. */
  bool: (v: boolean) => new TypedValue("t", v),
  /** b: a signed 8-bit integer. */
  int8: (v: number) => new TypedValue("b", v),
  /** B: an unsigned 8-bit integer. */
  uint8: (v: number) => new TypedValue("B", v),
  /** s: a signed 16-bit integer. */
  int16: (v: number) => new TypedValue("s", v),
  /** u: an unsigned 16-bit integer. */
  uint16: (v: number) => new TypedValue("u", v),
  /** I: a signed 32-bit integer. */
  int32: (v: number) => new TypedValue("I", v),
  /** i: an unsigned 32-bit integer. */
  uint32: (v: number) => new TypedValue("i", v),
  /** l: a signed 64-bit integer (a bigint for values beyond 2^53). */
  int64: (v: number | bigint) => new TypedValue("l", v),
  /** f: a 32-bit float. */
  float: (v: number) => new TypedValue("f", v),
  /** d: a 64-bit float. */
  double: (v: number) => new TypedValue("d", v),
  /** D: a decimal, value × 10^-scale. */
  decimal: (scale: number, value: number) => new TypedValue("D", new Decimal(scale, value)),
  /** S: a long string (UTF-8). */
  string: (v: string) => new TypedValue("S", v),
  /** x: a byte array. */
  bytes: (v: Uint8Array) => new TypedValue("x", v),
  /** T: a timestamp, in whole seconds on the wire. */
  timestamp: (v: Date) => new TypedValue("T", v),
  /** V: no value. */
  void: () => new TypedValue("V", null),
} as const;

const MAX_DEPTH = 64;

// ─── decode ─────────────────────────────────────────────────────────────────

let decodeEnd = 0; // end offset of the last decoded value (avoids tuple allocation)

/** Decodes a field table (4-byte size prefix) at off. Returns the table; `tableEnd(buf, off)` gives the next offset. */
export function decodeTable(buf: Buffer, off: number, depth = 0): FieldTable {
  if (off + 4 > buf.length) throw new FieldTableError("field table runs past the end of the frame");
  const size = buf.readUInt32BE(off);
  const start = off + 4;
  const end = start + size;
  if (end > buf.length) throw new FieldTableError("field table runs past the end of the frame");
  if (depth > MAX_DEPTH) throw new FieldTableError("field tables nested too deeply");
  const out: FieldTable = {};
  let p = start;
  while (p < end) {
    const klen = buf[p]!;
    const kend = p + 1 + klen;
    if (kend >= end) throw new FieldTableError("field table entry runs past the end of the table");
    const key = buf.toString("utf8", p + 1, kend);
    const value = decodeValue(buf, kend, end, depth);
    // A key named __proto__ must not reach the prototype.
    if (key === "__proto__")
      Object.defineProperty(out, key, { value, enumerable: true, writable: true, configurable: true });
    else out[key] = value;
    p = decodeEnd;
  }
  decodeEnd = end;
  return out;
}

function need(p: number, n: number, end: number): void {
  if (p + n > end) throw new FieldTableError("field value runs past the end of the table");
}

/** Decodes one typed value at p (the type letter). Sets decodeEnd. */
function decodeValue(buf: Buffer, p: number, end: number, depth: number): FieldValue {
  need(p, 1, end);
  const t = buf[p]!;
  p++;
  switch (t) {
    case 0x74: // t
      need(p, 1, end);
      decodeEnd = p + 1;
      return buf[p] !== 0;
    case 0x62: // b
      need(p, 1, end);
      decodeEnd = p + 1;
      return buf.readInt8(p);
    case 0x42: // B
      need(p, 1, end);
      decodeEnd = p + 1;
      return buf[p]!;
    case 0x73: // s
      need(p, 2, end);
      decodeEnd = p + 2;
      return buf.readInt16BE(p);
    case 0x75: // u
      need(p, 2, end);
      decodeEnd = p + 2;
      return buf.readUInt16BE(p);
    case 0x49: // I
      need(p, 4, end);
      decodeEnd = p + 4;
      return buf.readInt32BE(p);
    case 0x69: // i
      need(p, 4, end);
      decodeEnd = p + 4;
      return buf.readUInt32BE(p);
    case 0x6c: {
      // l
      need(p, 8, end);
      decodeEnd = p + 8;
      const big = buf.readBigInt64BE(p);
      return big >= BigInt(Number.MIN_SAFE_INTEGER) && big <= BigInt(Number.MAX_SAFE_INTEGER)
        ? Number(big)
        : big;
    }
    case 0x66: // f
      need(p, 4, end);
      decodeEnd = p + 4;
      return buf.readFloatBE(p);
    case 0x64: // d
      need(p, 8, end);
      decodeEnd = p + 8;
      return buf.readDoubleBE(p);
    case 0x44: // D
      need(p, 5, end);
      decodeEnd = p + 5;
      return new Decimal(buf[p]!, buf.readInt32BE(p + 1));
    case 0x53: {
      // S
      need(p, 4, end);
      const len = buf.readUInt32BE(p);
      need(p + 4, len, end);
      decodeEnd = p + 4 + len;
      return buf.toString("utf8", p + 4, p + 4 + len);
    }
    case 0x78: {
      // x
      need(p, 4, end);
      const len = buf.readUInt32BE(p);
      need(p + 4, len, end);
      decodeEnd = p + 4 + len;
      return Buffer.from(buf.subarray(p + 4, p + 4 + len)); // a copy: never a view into a frame buffer
    }
    case 0x41: // A
      return decodeArray(buf, p, end, depth + 1);
    case 0x54: // T
      need(p, 8, end);
      decodeEnd = p + 8;
      return new Date(readU64(buf, p) * 1000);
    case 0x46: {
      // F
      need(p, 4, end);
      const v = decodeTable(buf.subarray(0, end), p, depth + 1);
      return v;
    }
    case 0x56: // V
      decodeEnd = p;
      return null;
    default:
      throw new FieldTableError(`unknown field type 0x${t.toString(16)} in field table`);
  }
}

function decodeArray(buf: Buffer, p: number, end: number, depth: number): FieldValue[] {
  need(p, 4, end);
  const size = buf.readUInt32BE(p);
  const aend = p + 4 + size;
  if (aend > end) throw new FieldTableError("field array runs past the end of the table");
  if (depth > MAX_DEPTH) throw new FieldTableError("field arrays nested too deeply");
  const out: FieldValue[] = [];
  let q = p + 4;
  while (q < aend) {
    out.push(decodeValue(buf, q, aend, depth));
    q = decodeEnd;
  }
  decodeEnd = aend;
  return out;
}

/** Offset just past the table that starts at off (reads its size prefix). */
export function tableEnd(buf: Buffer, off: number): number {
  return off + 4 + buf.readUInt32BE(off);
}

// ─── encode ─────────────────────────────────────────────────────────────────

/** Encodes a table at off (with its 4-byte size). Returns the next offset. */
export function encodeTable(
  buf: Buffer,
  off: number,
  table: FieldTable | undefined | null,
  depth = 0,
): number {
  const start = off;
  let p = off + 4;
  if (table != null) {
    if (typeof table !== "object" || Array.isArray(table))
      throw new FieldTableError("a field table must be a plain object");
    if (depth > MAX_DEPTH) throw new FieldTableError("field tables nested too deeply");
    for (const key in table) {
      if (!Object.hasOwn(table, key)) continue;
      const v = table[key];
      if (v === undefined) continue; // undefined keys are dropped, as JSON does
      p = encodeValue(buf, writeShortBytes(buf, p, key, "field table key"), v, depth);
    }
  }
  // Single-octet writes (buf[p] = …) past the end are dropped silently; catch that here.
  if (p > buf.length) throw new RangeError("buffer too small");
  buf.writeUInt32BE(p - start - 4, start);
  return p;
}

function encodeArray(buf: Buffer, off: number, arr: FieldValue[], depth: number): number {
  if (depth > MAX_DEPTH) throw new FieldTableError("field arrays nested too deeply");
  let p = off + 4;
  for (const v of arr) p = encodeValue(buf, p, v, depth);
  if (p > buf.length) throw new RangeError("buffer too small");
  buf.writeUInt32BE(p - off - 4, off);
  return p;
}

function encodeValue(buf: Buffer, p: number, v: FieldValue, depth: number): number {
  switch (typeof v) {
    case "string":
      buf[p] = 0x53;
      return writeLongStrChecked(buf, p + 1, v);
    case "boolean":
      buf[p] = 0x74;
      buf[p + 1] = v ? 1 : 0;
      return p + 2;
    case "number":
      if (Number.isInteger(v)) {
        if (v >= -0x8000_0000 && v <= 0x7fff_ffff) {
          buf[p] = 0x49;
          buf.writeInt32BE(v, p + 1);
          return p + 5;
        }
        if (Number.isSafeInteger(v)) {
          buf[p] = 0x6c;
          buf.writeBigInt64BE(BigInt(v), p + 1);
          return p + 9;
        }
      }
      buf[p] = 0x64;
      buf.writeDoubleBE(finite(v), p + 1);
      return p + 9;
    case "bigint":
      buf[p] = 0x6c;
      buf.writeBigInt64BE(int64(v), p + 1);
      return p + 9;
    case "undefined":
      buf[p] = 0x56;
      return p + 1;
    case "object":
      if (v === null) {
        buf[p] = 0x56;
        return p + 1;
      }
      if (v instanceof TypedValue) return encodeTyped(buf, p, v, depth);
      if (v instanceof Uint8Array) {
        buf[p] = 0x78;
        return writeBytesChecked(buf, p + 1, v);
      }
      if (v instanceof Date) {
        buf[p] = 0x54;
        return writeTimestamp(buf, p + 1, v);
      }
      if (v instanceof Decimal) {
        buf[p] = 0x44;
        return writeDecimal(buf, p + 1, v);
      }
      if (Array.isArray(v)) {
        buf[p] = 0x41;
        return encodeArray(buf, p + 1, v, depth + 1);
      }
      buf[p] = 0x46;
      return encodeTable(buf, p + 1, v, depth + 1);
    default:
      throw new FieldTableError(`cannot encode a ${typeof v} in a field table`);
  }
}

/**
 * RabbitMQ cannot decode a non-finite float or double: one in a header crashes the
 * broker's channel process and closes the whole connection (541). Refuse it here.
 */
function finite(v: number): number {
  if (!Number.isFinite(v)) {
    throw new FieldTableError(`${v} cannot be sent in a field table: RabbitMQ refuses non-finite numbers`);
  }
  return v;
}

function writeLongStrChecked(buf: Buffer, p: number, s: string): number {
  const len = Buffer.byteLength(s);
  if (p + 4 + len > buf.length) throw new RangeError("buffer too small");
  buf.writeUInt32BE(len, p);
  buf.write(s, p + 4, "utf8");
  return p + 4 + len;
}

function writeBytesChecked(buf: Buffer, p: number, b: Uint8Array): number {
  if (p + 4 + b.length > buf.length) throw new RangeError("buffer too small");
  buf.writeUInt32BE(b.length, p);
  buf.set(b, p + 4);
  return p + 4 + b.length;
}

function writeDecimal(buf: Buffer, p: number, d: Decimal): number {
  if (!Number.isInteger(d.scale) || d.scale < 0 || d.scale > 255)
    throw new FieldTableError("decimal scale must be 0..255");
  if (!Number.isInteger(d.value) || d.value < -0x8000_0000 || d.value > 0x7fff_ffff)
    throw new FieldTableError(`decimal value must be a 32-bit signed integer, got ${d.value}`);
  buf[p] = d.scale;
  buf.writeInt32BE(d.value, p + 1);
  return p + 5;
}

function num(v: FieldValue, type: string): number {
  if (typeof v !== "number") throw new FieldTableError(`Field.${type} needs a number`);
  return v;
}

/**
 * Range checks happen here rather than by catching Node's RangeError: encoders'
 * callers read a RangeError as "buffer too small" and retry with a bigger one.
 */
function int(v: FieldValue, type: string, min: number, max: number): number {
  const n = num(v, type);
  if (!Number.isInteger(n) || n < min || n > max) {
    throw new FieldTableError(`Field.${type} needs an integer from ${min} to ${max}, got ${n}`);
  }
  return n;
}

const MIN_INT64 = -(2n ** 63n);
const MAX_INT64 = 2n ** 63n - 1n;

function int64(v: FieldValue): bigint {
  if (typeof v === "bigint") {
    if (v < MIN_INT64 || v > MAX_INT64)
      throw new FieldTableError(`${v} does not fit a signed 64-bit integer`);
    return v;
  }
  if (typeof v !== "number" || !Number.isSafeInteger(v)) {
    throw new FieldTableError(`Field.int64 needs a bigint or a safe integer, got ${String(v)}`);
  }
  return BigInt(v);
}

function encodeTyped(buf: Buffer, p: number, tv: TypedValue, depth: number): number {
  const v = tv.value;
  switch (tv.type) {
    case "t":
      buf[p] = 0x74;
      buf[p + 1] = v ? 1 : 0;
      return p + 2;
    case "b":
      buf[p] = 0x62;
      buf.writeInt8(int(v, "int8", -0x80, 0x7f), p + 1);
      return p + 2;
    case "B":
      buf[p] = 0x42;
      buf.writeUInt8(int(v, "uint8", 0, 0xff), p + 1);
      return p + 2;
    case "s":
      buf[p] = 0x73;
      buf.writeInt16BE(int(v, "int16", -0x8000, 0x7fff), p + 1);
      return p + 3;
    case "u":
      buf[p] = 0x75;
      buf.writeUInt16BE(int(v, "uint16", 0, 0xffff), p + 1);
      return p + 3;
    case "I":
      buf[p] = 0x49;
      buf.writeInt32BE(int(v, "int32", -0x8000_0000, 0x7fff_ffff), p + 1);
      return p + 5;
    case "i":
      buf[p] = 0x69;
      buf.writeUInt32BE(int(v, "uint32", 0, 0xffff_ffff), p + 1);
      return p + 5;
    case "l":
      buf[p] = 0x6c;
      buf.writeBigInt64BE(int64(v), p + 1);
      return p + 9;
    case "f":
      buf[p] = 0x66;
      buf.writeFloatBE(finite(num(v, "float")), p + 1);
      return p + 5;
    case "d":
      buf[p] = 0x64;
      buf.writeDoubleBE(finite(num(v, "double")), p + 1);
      return p + 9;
    case "D":
      if (!(v instanceof Decimal)) throw new FieldTableError("Field.decimal needs a Decimal");
      buf[p] = 0x44;
      return writeDecimal(buf, p + 1, v);
    case "S":
      if (typeof v !== "string") throw new FieldTableError("Field.string needs a string");
      buf[p] = 0x53;
      return writeLongStrChecked(buf, p + 1, v);
    case "x":
      if (!(v instanceof Uint8Array)) throw new FieldTableError("Field.bytes needs a Uint8Array");
      buf[p] = 0x78;
      return writeBytesChecked(buf, p + 1, v);
    case "T":
      if (!(v instanceof Date)) throw new FieldTableError("Field.timestamp needs a Date");
      buf[p] = 0x54;
      return writeTimestamp(buf, p + 1, v);
    case "V":
      buf[p] = 0x56;
      return p + 1;
    case "A":
      if (!Array.isArray(v)) throw new FieldTableError("an array field needs an array");
      buf[p] = 0x41;
      return encodeArray(buf, p + 1, v, depth + 1);
    case "F":
      if (v === null || typeof v !== "object" || Array.isArray(v))
        throw new FieldTableError("a table field needs an object");
      buf[p] = 0x46;
      return encodeTable(buf, p + 1, v as FieldTable, depth + 1);
    default:
      throw new FieldTableError(`unknown field type ${String(tv.type)}`);
  }
}
