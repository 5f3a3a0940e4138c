/**
 * Incoming content on one channel: a content-bearing method (basic.deliver, basic.get-ok,
 * basic.return), then its content header, then body frames until the declared size
 * (AMQP 0-9-1 §4.2.6). Other methods pass straight through. Any frame out of that order, a
 * header or body that does not add up, or a message over maxMessageSize is a connection error
 * (FrameError with the reply code the spec names: 501 frame error, 502 syntax error,
 * 505 unexpected frame).
 *
 * A body that arrives in one frame is handed over as that frame's payload (no copy) unless the
 * frames are transient (views of a read buffer used again for the next read: then it is copied);
 * a body split over frames is gathered into one buffer, allocated at its first frame at the size
 * the header declared up to 16 MiB (larger ones grow with what arrives, so a header declaring a
 * huge size costs little until its bodies come).
 */
import { FrameError, WarrenError } from "../errors.js";
import { readU64 } from "../protocol/codec.js";
import {
  type BasicProperties,
  CONTENT_METHODS,
  decodeBasicProperties,
  decodeMethod,
  FRAME_BODY,
  FRAME_HEADER,
  FRAME_METHOD,
  type Method,
} from "../protocol/generated/spec.js";

/** Where assembled frames go: methods without content, and whole messages. */
export interface ContentSink {
  method(m: Method): void;
  content(m: Method, properties: BasicProperties, body: Buffer): void;
}

enum Expect {
  Method = 0,
  Header = 1,
  Body = 2,
}

/** The smallest content header: class-id, weight, body size, property flags (§4.2.6.1). */
const MIN_HEADER_SIZE = 14;
/** A body up to this size gets its whole buffer at its first frame; a larger one grows by doubling from it. */
export const BODY_PREALLOCATE = 16 * 1024 * 1024;
/**
 * The first body at least this big raises the allocator's thresholds (see keepFreedMemory). Bodies
 * of 64 KiB, a thousand prefetched, cost twice the CPU without it (175 against 92 µs each in
 * bench/scaling.ts); smaller ones come from node's buffer pool or are too few pages to matter.
 */
const LARGE_BODY = 64 * 1024;
/** 30 MiB: under glibc's ceiling for its dynamic mmap threshold (32 MiB on 64-bit). */
const THRESHOLD_RAISER = 30 * 1024 * 1024;
let raised = false;

/**
 * Large bodies are allocated per message and freed in bulk when V8 collects them (every ~64 MiB
 * of buffers). glibc's malloc hands such a batch back to the kernel (heap trim above 2× its mmap
 * threshold, which starts at 128 KiB and rises only to the largest mmapped block ever freed), so
 * the next bodies land on fresh pages: ~256 page faults per MiB copied, which was most of the CPU
 * of consuming 1 MiB messages. Freeing one 30 MiB block (allocated, never touched: no page is
 * mapped) makes glibc raise its thresholds to 30 MiB and 60 MiB, so freed bodies are reused
 * instead. Done once per process, on the first large body. Other allocators ignore it: the block
 * is just an untouched allocation that is freed again.
 */
function keepFreedMemory(): void {
  raised = true;
  Buffer.allocUnsafeSlow(THRESHOLD_RAISER);
}

export class ContentAssembler {
  private expect = Expect.Method;
  private method: Method | undefined;
  private properties: BasicProperties | undefined;
  private size = 0;
  private body: Buffer | undefined;
  private received = 0;

  /**
   * @param channel the channel number (named in errors)
   * @param maxMessageSize the largest body accepted, read per message (an option of the connection)
   * @param transient payloads are overwritten after `push` returns: a body is never handed over as one
   */
  constructor(
    private readonly channel: number,
    private readonly maxMessageSize: () => number,
    private readonly sink: ContentSink,
    private readonly transient = false,
  ) {}

  /** True between a content method and the last byte of its body. */
  get busy(): boolean {
    return this.expect !== Expect.Method;
  }

  /** Takes one frame's payload; throws FrameError when the frame breaks the content rules. */
  push(type: number, payload: Buffer): void {
    switch (type) {
      case FRAME_METHOD:
        this.onMethod(payload);
        return;
      case FRAME_HEADER:
        this.onHeader(payload);
        return;
      case FRAME_BODY:
        this.onBody(payload);
        return;
      default:
        throw new FrameError(`frame type ${type} on channel ${this.channel}`, { replyCode: 503 });
    }
  }

  private onMethod(payload: Buffer): void {
    if (this.expect !== Expect.Method) {
      throw new FrameError(`method frame on channel ${this.channel} while content was expected`, {
        replyCode: 505,
      });
    }
    const m = decodeMethod(payload);
    if (CONTENT_METHODS.has(m.id)) {
      this.method = m;
      this.expect = Expect.Header;
    } else this.sink.method(m);
  }

  private onHeader(payload: Buffer): void {
    if (this.expect !== Expect.Header) {
      throw new FrameError(`content header on channel ${this.channel} without a content method`, {
        replyCode: 505,
      });
    }
    if (payload.length < MIN_HEADER_SIZE)
      throw new FrameError("content header frame too short", { replyCode: 501 });
    const size = readU64(payload, 4);
    const max = this.maxMessageSize();
    if (size > max) {
      throw new FrameError(`incoming message of ${size} bytes exceeds maxMessageSize (${max})`, {
        replyCode: 501,
      });
    }
    try {
      this.properties = decodeBasicProperties(payload, 12);
    } catch (e) {
      if (e instanceof WarrenError) throw e;
      throw new FrameError(`malformed content header: ${(e as Error).message}`, { cause: e, replyCode: 502 });
    }
    this.size = size;
    this.received = 0;
    this.body = undefined;
    if (size === 0) this.complete(Buffer.alloc(0));
    else this.expect = Expect.Body;
  }

  private onBody(payload: Buffer): void {
    if (this.expect !== Expect.Body) {
      throw new FrameError(`body frame on channel ${this.channel} without a content header`, {
        replyCode: 505,
      });
    }
    const n = payload.length;
    const total = this.received + n;
    if (total > this.size) {
      throw new FrameError(`message body larger than the ${this.size} bytes its header declared`, {
        replyCode: 501,
      });
    }
    if (this.received === 0 && n === this.size) {
      // Whole body in one frame: no copy, unless the frame is a view of a read buffer used again.
      this.complete(this.transient ? Buffer.from(payload) : payload);
      return;
    }
    let b = this.body;
    if (b === undefined || total > b.length) {
      if (!raised && this.size >= LARGE_BODY) keepFreedMemory();
      const grown = Buffer.allocUnsafe(
        Math.min(this.size, Math.max(total, 2 * (b?.length ?? 0), BODY_PREALLOCATE)),
      );
      if (b !== undefined) b.copy(grown, 0, 0, this.received);
      this.body = b = grown;
    }
    payload.copy(b, this.received);
    this.received = total;
    if (total === this.size) {
      this.body = undefined;
      this.complete(b);
    }
  }

  private complete(body: Buffer): void {
    const m = this.method as Method;
    const properties = this.properties as BasicProperties;
    this.expect = Expect.Method;
    this.method = undefined;
    this.properties = undefined;
    this.sink.content(m, properties, body);
  }
}
