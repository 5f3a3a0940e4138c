/**
 * Frames: a push parser that yields whole frames, and encoders that write whole
 * frames into a caller's buffer.
 *
 * Parser: `push(chunk)` calls `onFrame(type, channel, payload)` for every complete
 * frame. A frame lying wholly inside the chunk is passed as a subarray of it (no
 * copy); only a frame split across chunks is copied, into a buffer of exactly its
 * size, allocated after its declared size was checked against frame_max. The
 * frame-end octet is checked. The parser never reuses a buffer it has handed out.
 * Whether a view of a chunk outlives `onFrame` is the caller's matter: node hands
 * each 'data' event its own buffer, but with `transient` every read lands in the
 * same buffer and the consumer copies what it keeps (see SocketReader).
 */
import { FrameError, FrameTooLargeError } from "../errors.js";
import {
  type BasicProperties,
  encodeBasicProperties,
  encodeMethod,
  FRAME_BODY,
  FRAME_END,
  FRAME_HEADER,
  FRAME_HEARTBEAT,
  FRAME_METHOD,
  type MethodInput,
} from "./generated/spec.js";

export const FRAME_HEADER_SIZE = 7;
/** Header (7) + frame-end (1). */
export const FRAME_OVERHEAD = 8;
export const HEARTBEAT_FRAME = Buffer.from([FRAME_HEARTBEAT, 0, 0, 0, 0, 0, 0, FRAME_END]);

export type FrameCallback = (type: number, channel: number, payload: Buffer) => void;

export interface FrameParserOptions {
  /**
   * Deliver a body frame that is split across chunks as several body "frames" (views of
   * the chunks, in order), instead of copying it into a buffer of its own. A body frame
   * carries only bytes to append to the message, so its boundaries mean nothing to the
   * reader, and this saves a copy of every large message. The last piece of a frame is
   * delivered only after its frame-end octet was checked.
   */
  streamBodies?: boolean;
  /**
   * The chunks are reused after `push` returns (one read buffer for every read): the parser keeps
   * no view of one across calls, it copies what it holds back. The payloads it hands to `onFrame`
   * are still views, valid only during that call.
   */
  transient?: boolean;
}

export class FrameParser {
  /** Largest accepted frame payload (frame_max - 8). */
  private maxPayload = 0;
  private head = Buffer.alloc(FRAME_HEADER_SIZE);
  private headLen = 0;
  private partial: Buffer | null = null;
  private partialFilled = 0;
  private readonly streamBodies: boolean;
  private readonly transient: boolean;
  /** Streaming a body frame: its channel, payload bytes still to come, and its last piece (held until frame-end). */
  private streaming = false;
  private streamChannel = 0;
  private streamRemaining = 0;
  private streamLast: Buffer | null = null;

  constructor(
    private readonly onFrame: FrameCallback,
    frameMax: number,
    options: FrameParserOptions = {},
  ) {
    this.setFrameMax(frameMax);
    this.streamBodies = options.streamBodies ?? false;
    this.transient = options.transient ?? false;
  }

  /** frame_max as negotiated (whole frame, header and end octet included); 0 means no limit. */
  setFrameMax(frameMax: number): void {
    this.maxPayload = frameMax === 0 ? 0xffff_ffff : frameMax - FRAME_OVERHEAD;
  }

  /** Bytes held for a frame not yet complete. */
  get buffered(): number {
    return this.headLen + this.partialFilled + (this.streamLast?.length ?? 0);
  }

  /** Feeds bytes. Throws FrameError on bytes that are not a valid frame stream. */
  push(chunk: Buffer): void {
    let off = 0;
    const len = chunk.length;

    if (this.headLen > 0) {
      const n = Math.min(FRAME_HEADER_SIZE - this.headLen, len);
      chunk.copy(this.head, this.headLen, 0, n);
      this.headLen += n;
      off = n;
      if (this.headLen < FRAME_HEADER_SIZE) return;
      this.headLen = 0;
      const size = this.checkHeader(this.head, 0);
      if (this.streamBodies && this.head[0] === FRAME_BODY) {
        this.startStream(this.head.readUInt16BE(1), size);
      } else {
        this.partial = Buffer.allocUnsafe(size + FRAME_OVERHEAD);
        this.head.copy(this.partial, 0);
        this.partialFilled = FRAME_HEADER_SIZE;
      }
    }

    if (this.streaming) {
      off = this.continueStream(chunk, off);
      if (this.streaming) return;
    }

    if (this.partial !== null) {
      const p = this.partial;
      const n = Math.min(p.length - this.partialFilled, len - off);
      chunk.copy(p, this.partialFilled, off, off + n);
      this.partialFilled += n;
      off += n;
      if (this.partialFilled < p.length) return;
      this.partial = null;
      this.partialFilled = 0;
      const end = p.length - 1;
      if (p[end] !== FRAME_END) throw badEnd(p[end]!);
      this.onFrame(p[0]!, p.readUInt16BE(1), p.subarray(FRAME_HEADER_SIZE, end));
    }

    while (off < len) {
      if (len - off < FRAME_HEADER_SIZE) {
        chunk.copy(this.head, 0, off, len);
        this.headLen = len - off;
        return;
      }
      const size = this.checkHeader(chunk, off);
      const end = off + FRAME_HEADER_SIZE + size;
      if (end < len) {
        if (chunk[end] !== FRAME_END) throw badEnd(chunk[end]!);
        this.onFrame(chunk[off]!, chunk.readUInt16BE(off + 1), chunk.subarray(off + FRAME_HEADER_SIZE, end));
        off = end + 1;
      } else if (this.streamBodies && chunk[off] === FRAME_BODY) {
        this.startStream(chunk.readUInt16BE(off + 1), size);
        off = this.continueStream(chunk, off + FRAME_HEADER_SIZE);
        if (this.streaming) return;
      } else {
        const p = Buffer.allocUnsafe(size + FRAME_OVERHEAD);
        chunk.copy(p, 0, off, len);
        this.partial = p;
        this.partialFilled = len - off;
        return;
      }
    }
  }

  private startStream(channel: number, size: number): void {
    this.streaming = true;
    this.streamChannel = channel;
    this.streamRemaining = size;
    // An empty body frame has no piece to hold back: dispatched at its end octet like any other.
    this.streamLast = size === 0 ? EMPTY : null;
  }

  /** Consumes streamed body bytes from chunk at off; returns the new offset. */
  private continueStream(chunk: Buffer, off: number): number {
    const len = chunk.length;
    if (this.streamRemaining > 0) {
      const n = Math.min(this.streamRemaining, len - off);
      const piece = chunk.subarray(off, off + n);
      off += n;
      this.streamRemaining -= n;
      if (this.streamRemaining > 0) {
        if (n > 0) this.onFrame(FRAME_BODY, this.streamChannel, piece);
        return off;
      }
      this.streamLast = piece;
    }
    if (off >= len) {
      // The frame-end octet is in the next chunk; a transient chunk's piece is gone by then.
      if (this.transient && this.streamLast !== null && this.streamLast !== EMPTY)
        this.streamLast = Buffer.from(this.streamLast);
      return off;
    }
    if (chunk[off] !== FRAME_END) throw badEnd(chunk[off]!);
    this.streaming = false;
    const last = this.streamLast;
    this.streamLast = null;
    if (last !== null && (last.length > 0 || last === EMPTY))
      this.onFrame(FRAME_BODY, this.streamChannel, last);
    return off + 1;
  }

  /** Validates type and size; returns the payload size. */
  private checkHeader(buf: Buffer, off: number): number {
    const type = buf[off]!;
    if (type !== FRAME_METHOD && type !== FRAME_HEADER && type !== FRAME_BODY && type !== FRAME_HEARTBEAT) {
      if (type === 0x41 && buf[off + 1] === 0x4d && buf[off + 2] === 0x51 && buf[off + 3] === 0x50) {
        // "AMQP" then 4 version octets (0-9-1: 0 0 9 1); only the first three are in a frame header.
        throw new FrameError(
          `the server rejected our protocol header and answered with its own (AMQP ${buf[off + 4]} ${buf[off + 5]} ${buf[off + 6]} …): it does not accept AMQP 0-9-1 as we offered it`,
          { replyCode: 501 },
        );
      }
      throw new FrameError(`unknown frame type ${type}`, { replyCode: 501 });
    }
    const size = buf.readUInt32BE(off + 3);
    if (size > this.maxPayload) {
      throw new FrameError(
        `frame of ${size} bytes is larger than frame_max allows (${this.maxPayload} payload bytes)`,
        {
          replyCode: 501,
        },
      );
    }
    return size;
  }
}

const EMPTY = Buffer.alloc(0);

function badEnd(octet: number): FrameError {
  return new FrameError(`frame does not end with 0xCE (found 0x${octet.toString(16)})`, { replyCode: 501 });
}

// ─── encoding ───────────────────────────────────────────────────────────────

function finishFrame(buf: Buffer, start: number, end: number, frameMax: number): number {
  // No room for the frame-end octet (or a payload octet was already dropped): `buf[end] =` would
  // fail silently and the caller would commit a truncated frame.
  if (end >= buf.length) throw new RangeError("buffer too small");
  const size = end - start - FRAME_HEADER_SIZE;
  if (frameMax !== 0 && size + FRAME_OVERHEAD > frameMax) {
    throw new FrameTooLargeError(`frame of ${size + FRAME_OVERHEAD} bytes exceeds frame_max ${frameMax}`);
  }
  buf.writeUInt32BE(size, start + 3);
  buf[end] = FRAME_END;
  return end + 1;
}

/** Writes a complete method frame at off; returns the next offset. */
export function writeMethodFrame(
  buf: Buffer,
  off: number,
  channel: number,
  method: MethodInput,
  frameMax: number,
): number {
  buf[off] = FRAME_METHOD;
  buf.writeUInt16BE(channel, off + 1);
  const end = encodeMethod(buf, off + FRAME_HEADER_SIZE, method);
  return finishFrame(buf, off, end, frameMax);
}

/** Writes a method frame using a specific encoder (hot paths avoid the generic dispatch). */
export function writeMethodFrameWith<A>(
  buf: Buffer,
  off: number,
  channel: number,
  encode: (b: Buffer, o: number, a: A) => number,
  args: A,
  frameMax: number,
): number {
  buf[off] = FRAME_METHOD;
  buf.writeUInt16BE(channel, off + 1);
  const end = encode(buf, off + FRAME_HEADER_SIZE, args);
  return finishFrame(buf, off, end, frameMax);
}

/** Writes a content header frame (class-id, weight 0, body size, properties). */
export function writeHeaderFrame(
  buf: Buffer,
  off: number,
  channel: number,
  classId: number,
  bodySize: number,
  props: BasicProperties | undefined,
  frameMax: number,
): number {
  buf[off] = FRAME_HEADER;
  buf.writeUInt16BE(channel, off + 1);
  let p = off + FRAME_HEADER_SIZE;
  buf.writeUInt16BE(classId, p);
  buf.writeUInt16BE(0, p + 2);
  buf.writeUInt32BE(Math.floor(bodySize / 0x1_0000_0000), p + 4);
  buf.writeUInt32BE(bodySize >>> 0, p + 8);
  p = encodeBasicProperties(buf, p + 12, props);
  return finishFrame(buf, off, p, frameMax);
}

/** Writes a body frame whose payload is copied from body[from, to). */
export function writeBodyFrame(
  buf: Buffer,
  off: number,
  channel: number,
  body: Uint8Array,
  from: number,
  to: number,
): number {
  buf[off] = FRAME_BODY;
  buf.writeUInt16BE(channel, off + 1);
  buf.writeUInt32BE(to - from, off + 3);
  buf.set(from === 0 && to === body.length ? body : body.subarray(from, to), off + FRAME_HEADER_SIZE);
  const end = off + FRAME_HEADER_SIZE + (to - from);
  if (end >= buf.length) throw new RangeError("buffer too small");
  buf[end] = FRAME_END;
  return end + 1;
}

/** Writes only the 7-byte header of a body frame (the payload is written separately, uncopied). */
export function writeBodyFrameHeader(buf: Buffer, off: number, channel: number, size: number): number {
  buf[off] = FRAME_BODY;
  buf.writeUInt16BE(channel, off + 1);
  buf.writeUInt32BE(size, off + 3);
  return off + FRAME_HEADER_SIZE;
}

/** Decoded content header. */
export interface ContentHeader {
  classId: number;
  bodySize: number;
  properties: BasicProperties;
}
