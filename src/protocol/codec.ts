/**
 * Codec primitives. A decoder takes (buffer, offset) and returns a value while the
 * caller advances the offset by a known width, or returns `[value, next]` for
 * variable-width values. An encoder returns the next offset.
 *
 * Nothing here imports net, timers or any state machine.
 */
import { FieldTableError } from "../errors.js";

export const EMPTY = Buffer.alloc(0);

/** Reads an AMQP short string (1-byte length + UTF-8). Returns the value; length is buf[off]. */
export function readShortStr(buf: Buffer, off: number): string {
  const len = buf[off];
  if (len === undefined) throw new FieldTableError("short string runs past the end of the frame");
  const end = off + 1 + len;
  if (end > buf.length) throw new FieldTableError("short string runs past the end of the frame");
  return buf.toString("utf8", off + 1, end);
}

/** Writes an AMQP short string; throws when it encodes to more than 255 bytes. */
export function writeShortStr(buf: Buffer, off: number, value: string): number {
  if (typeof value !== "string") throw new FieldTableError(`expected a string, got ${typeof value}`);
  if (value.length === 0) {
    buf.writeUInt8(0, off); // not buf[off] = 0, which past the end would be dropped silently
    return off + 1;
  }
  return writeShortBytes(buf, off, value, "short string");
}

/**
 * Writes a 1-byte length and the UTF-8 of value. Never truncates silently: throws
 * FieldTableError past 255 bytes and RangeError when the buffer lacks room.
 */
export function writeShortBytes(buf: Buffer, off: number, value: string, what: string): number {
  // A string of <= 85 UTF-16 units can never exceed 255 UTF-8 bytes; otherwise measure exactly.
  const len = value.length <= 85 ? -1 : Buffer.byteLength(value);
  if (len > 255) throw new FieldTableError(`${what} is longer than 255 bytes: ${value.slice(0, 40)}…`);
  if (off + 256 > buf.length && off + 1 + (len < 0 ? Buffer.byteLength(value) : len) > buf.length) {
    throw new RangeError("buffer too small");
  }
  const n = buf.write(value, off + 1, "utf8");
  buf[off] = n;
  return off + 1 + n;
}

export function readLongStrBytes(buf: Buffer, off: number): Buffer {
  if (off + 4 > buf.length) throw new FieldTableError("long string runs past the end of the frame");
  const len = buf.readUInt32BE(off);
  const start = off + 4;
  const end = start + len;
  if (end > buf.length) throw new FieldTableError("long string runs past the end of the frame");
  return buf.subarray(start, end);
}

export function writeLongStr(buf: Buffer, off: number, value: string | Uint8Array): number {
  if (typeof value === "string") {
    const len = Buffer.byteLength(value);
    if (off + 4 + len > buf.length) throw new RangeError("buffer too small");
    buf.writeUInt32BE(len, off);
    buf.write(value, off + 4, "utf8");
    return off + 4 + len;
  }
  if (!(value instanceof Uint8Array))
    throw new FieldTableError(`expected a string or bytes, got ${typeof value}`);
  if (off + 4 + value.length > buf.length) throw new RangeError("buffer too small");
  buf.writeUInt32BE(value.length, off);
  buf.set(value, off + 4);
  return off + 4 + value.length;
}

/**
 * Checks an unsigned integer (octet, short, long) before it is written. Node's own
 * range errors are RangeErrors, which encoders' callers read as "buffer too small";
 * and Node silently truncates fractions. Returns the value.
 */
export function checkUInt(value: number, max: number, what: string): number {
  if (!Number.isInteger(value) || value < 0 || value > max) {
    throw new FieldTableError(`${what} must be an integer from 0 to ${max}, got ${String(value)}`);
  }
  return value;
}

/** 64-bit unsigned as a JS number (exact up to 2^53). */
export function readU64(buf: Buffer, off: number): number {
  return buf.readUInt32BE(off) * 0x1_0000_0000 + buf.readUInt32BE(off + 4);
}

export function writeU64(buf: Buffer, off: number, value: number): number {
  if (!Number.isSafeInteger(value) || value < 0)
    throw new FieldTableError(`not an unsigned 64-bit integer: ${value}`);
  buf.writeUInt32BE(Math.floor(value / 0x1_0000_0000), off);
  buf.writeUInt32BE(value >>> 0, off + 4);
  return off + 8;
}

/** AMQP timestamps are seconds since the epoch (64-bit). */
export function readTimestamp(buf: Buffer, off: number): Date {
  return new Date(readU64(buf, off) * 1000);
}

export function writeTimestamp(buf: Buffer, off: number, value: Date): number {
  if (!(value instanceof Date) || Number.isNaN(value.getTime())) {
    throw new FieldTableError("timestamp must be a valid Date");
  }
  return writeU64(buf, off, Math.floor(value.getTime() / 1000));
}
