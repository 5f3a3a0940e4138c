/**
 * The pubsub workload's bookkeeping, shared by every client: each body carries the time it was
 * handed to the client (a double, `performance.now()` in ms, in its first 8 bytes) and its index
 * (a uint32 in the next 4), so the consumer measures publish → deliver latency and can tell a
 * duplicate or a stray message from the ones expected. Publisher and consumer share the process,
 * hence the clock.
 */
import { performance } from "node:perf_hooks";

/** Bytes of each body the stamp uses: the time, then the index. */
const STAMP_BYTES = 12;

/** The pubsub workload's settings (bench/run.ts). */
export interface PubSubOptions {
  /** Publish promises (or, for drain-signalling clients, writes) outstanding at most. */
  window: number;
  /** basic.qos prefetch of the consumer. */
  prefetch: number;
  /** The consumer acknowledges automatically (true) or acks each delivery (false). */
  noAck: boolean;
}

// The stamp goes through one scratch buffer in the machine's byte order, read back the same way:
// no allocation and no Buffer needed on the consuming side (@cloudamqp/amqp-client hands a Uint8Array).
const scratch = new ArrayBuffer(8);
const scratchF64 = new Float64Array(scratch);
const scratchU32 = new Uint32Array(scratch, 0, 1);
const scratchU8 = new Uint8Array(scratch);

/**
 * A fresh copy of `template` stamped with message `index` and the current time. A fresh buffer
 * per message: a client may still hold the previous body when the next is stamped.
 */
export function stamped(template: Buffer, index: number): Buffer {
  const b = Buffer.allocUnsafe(template.length);
  template.copy(b, STAMP_BYTES, STAMP_BYTES);
  scratchU32[0] = index;
  for (let k = 0; k < 4; k++) b[8 + k] = scratchU8[k]!;
  scratchF64[0] = performance.now();
  for (let k = 0; k < 8; k++) b[k] = scratchU8[k]!;
  return b;
}

/**
 * The consumer's side: counts deliveries, records each one's latency and rejects `all` on a body
 * of the wrong size, an unknown index or a duplicate. `all` resolves at the `count`th distinct
 * message; `finish()`, called after the consumer was cancelled (every delivery the broker sent
 * before cancel-ok has then been seen), throws if fewer arrived or any failed the checks, e.g.
 * one more than `count` (necessarily a duplicate or a stray).
 */
export class Receipts {
  readonly all: Promise<void>;
  private received = 0;
  private readonly seen: Uint8Array;
  private readonly latencyUs: Float64Array;
  private resolve!: () => void;
  private reject!: (e: Error) => void;
  private failure: Error | undefined;

  constructor(
    private readonly count: number,
    private readonly bodySize: number,
  ) {
    if (bodySize < STAMP_BYTES) throw new Error(`pubsub bodies need at least ${STAMP_BYTES} bytes`);
    this.seen = new Uint8Array(count);
    this.latencyUs = new Float64Array(count);
    this.all = new Promise<void>((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
    // A failure surfaces through finish() or the awaited `all`; never as an unhandled rejection.
    this.all.catch(() => undefined);
  }

  /** One delivery's body (undefined/null: an empty body). */
  receive(body: Uint8Array | null | undefined): void {
    const now = performance.now();
    if (this.failure) return;
    const n = body?.length ?? 0;
    if (body == null || n !== this.bodySize) {
      this.fail(`a body of ${n} bytes, not ${this.bodySize}`);
      return;
    }
    for (let k = 0; k < 4; k++) scratchU8[k] = body[8 + k]!;
    const index = scratchU32[0]!;
    if (index >= this.count || this.seen[index] === 1) {
      this.fail(
        index >= this.count
          ? `a message with index ${index} of ${this.count}`
          : `message ${index} delivered twice`,
      );
      return;
    }
    this.seen[index] = 1;
    for (let k = 0; k < 8; k++) scratchU8[k] = body[k]!;
    this.latencyUs[index] = (now - scratchF64[0]!) * 1000;
    if (++this.received === this.count) this.resolve();
  }

  /** Each message's publish → deliver latency in µs, once all arrived and no more did. */
  finish(): Float64Array {
    if (this.failure) throw this.failure;
    if (this.received !== this.count)
      throw new Error(`pubsub: received ${this.received} messages, expected ${this.count}`);
    return this.latencyUs;
  }

  /** Fails the phase for a reason the consumer learnt, e.g. the broker cancelled it. */
  fail(what: string): void {
    if (this.failure) return;
    this.failure = new Error(`pubsub: ${what}`);
    this.reject(this.failure);
  }
}
