/**
 * Writing a message (basic.publish, its content header, its body frames) and the small
 * fire-and-forget methods of the hot path (basic.ack, basic.nack) straight into a frame sink's
 * buffer: no intermediate allocation, bodies of ZERO_COPY_THRESHOLD bytes or more handed over
 * uncopied, split at frame_max (AMQP 0-9-1 §4.2.6).
 */
import { FrameTooLargeError } from "../errors.js";
import { ZERO_COPY_THRESHOLD } from "../transport/writer.js";
import {
  FRAME_HEADER_SIZE,
  FRAME_OVERHEAD,
  writeBodyFrame,
  writeBodyFrameHeader,
  writeHeaderFrame,
  writeMethodFrameWith,
} from "./frame.js";
import { type BasicProperties, CLASS_IDS, encodeBasicPublish, FRAME_END } from "./generated/spec.js";

/**
 * Where frames are written: a growable buffer, written from `pos`, `reserve(n)` before writing
 * n bytes, `commit(end)` after; `writeBuffer` queues a buffer without copying it.
 * (src/transport/writer.ts's FrameWriter.)
 */
export interface FrameSink {
  readonly buf: Buffer;
  readonly pos: number;
  reserve(n: number): void;
  commit(end: number): void;
  writeBuffer(b: Buffer): void;
}

export interface PublishArgs {
  exchange: string;
  routingKey: string;
  mandatory?: boolean | undefined;
  immediate?: boolean | undefined;
}

/**
 * Writes basic.publish, its content header and its body on `channel`. Throws
 * FrameTooLargeError when the properties do not fit in one frame (nothing is committed then).
 */
export function writePublish(
  w: FrameSink,
  channel: number,
  frameMax: number,
  args: PublishArgs,
  body: Uint8Array,
  properties: BasicProperties | undefined,
): void {
  const maxPayload = frameMax === 0 ? 0x7fff_ffff : frameMax - FRAME_OVERHEAD;
  const size = body.length;
  // method + header frames: properties with headers may be large, up to frame_max.
  const headerRoom = properties?.headers ? (frameMax === 0 ? 1 << 20 : frameMax) + 1024 : 4096;
  const inline = size <= maxPayload && size < ZERO_COPY_THRESHOLD;
  w.reserve(headerRoom + (inline ? size + FRAME_OVERHEAD : 0));
  const buf = w.buf;
  let p: number;
  try {
    p = writeMethodFrameWith(buf, w.pos, channel, encodeBasicPublish, args, frameMax);
    p = writeHeaderFrame(buf, p, channel, CLASS_IDS.basic, size, properties, frameMax);
  } catch (e) {
    if (e instanceof RangeError) {
      throw new FrameTooLargeError("message properties do not fit in one frame (frame_max)", { cause: e });
    }
    throw e;
  }
  if (size === 0) {
    w.commit(p);
    return;
  }
  if (inline) {
    w.commit(writeBodyFrame(buf, p, channel, body, 0, size));
    return;
  }
  w.commit(p);
  for (let from = 0; from < size; from += maxPayload) {
    const to = Math.min(size, from + maxPayload);
    const n = to - from;
    if (n < ZERO_COPY_THRESHOLD) {
      w.reserve(n + FRAME_OVERHEAD);
      w.commit(writeBodyFrame(w.buf, w.pos, channel, body, from, to));
    } else {
      // The frame header, the body uncopied, then the frame-end octet.
      w.reserve(FRAME_HEADER_SIZE + 1);
      w.commit(writeBodyFrameHeader(w.buf, w.pos, channel, n));
      const view = body.subarray(from, to);
      w.writeBuffer(
        Buffer.isBuffer(view) ? view : Buffer.from(view.buffer, view.byteOffset, view.byteLength),
      );
      w.reserve(1);
      w.buf[w.pos] = FRAME_END;
      w.commit(w.pos + 1);
    }
  }
}

/** The largest frame writeSmallMethod is used for (basic.ack/nack are 21 bytes). */
const SMALL_METHOD_ROOM = 32;

/** Writes a method frame of a few fixed-size fields (basic.ack, basic.nack) with its own encoder. */
export function writeSmallMethod<A>(
  w: FrameSink,
  channel: number,
  encode: (b: Buffer, o: number, a: A) => number,
  args: A,
): void {
  w.reserve(SMALL_METHOD_ROOM);
  w.commit(writeMethodFrameWith(w.buf, w.pos, channel, encode, args, 0));
}
