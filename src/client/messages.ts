/**
 * The async-iterator form of consuming:
 *
 *   for await (const msg of client.messages({ queue: "jobs", prefetch: 10 })) {
 *     await work(msg.body);
 *     msg.ack(); // or msg.nack({ requeue }), msg.reject()
 *   }
 *
 * A supervised consumer (its own channel, resubscribed after recoveries) whose deliveries are
 * handed out unsettled, in order. Buffering is bounded by the prefetch (the broker sends no more
 * than that many unacked). Settling after the delivery's channel died is a no-op (the broker
 * redelivers it: never a stale tag). Breaking out of the loop cancels the consumer at once:
 * deliveries buffered and not handed out are requeued, and the channel is closed, so settle a
 * message before you break. `client.close()` ends the loop after a drain: buffered deliveries
 * are requeued and the one being worked on may still be settled (up to `drainTimeout`).
 */
import type { Consumer } from "./consumer.js";
import type { ConsumedMessage } from "./consumer-types.js";
import { Deque } from "./deque.js";
import { asyncDispose } from "./dispose.js";

/**
 * `client.messages()`: deliveries as an async iterator, handed out in order and unsettled (call
 * `msg.ack()`, `msg.nack()` or `msg.reject()` on each). See the module comment.
 */
export class MessageStream implements AsyncIterableIterator<ConsumedMessage>, AsyncDisposable {
  /** The supervised consumer behind the stream (its `stats`, `state`, `error` events). */
  readonly consumer: Consumer;
  private readonly buffer = new Deque<ConsumedMessage>();
  private waiter: ((r: IteratorResult<ConsumedMessage>) => void) | undefined;
  private ended = false;

  /** @internal `start` creates the manual consumer. */
  constructor(start: () => Consumer) {
    this.consumer = start();
    this.consumer.setSink((d) => this.push(d));
    this.consumer.on("state", ({ to }) => {
      if (to === "draining") this.releaseBuffered();
      else if (to === "cancelled" || to === "failed") this.end();
    });
  }

  /** Deliveries received and not handed out yet. */
  get buffered(): number {
    return this.buffer.length;
  }

  private push(d: ConsumedMessage): void {
    if (this.ended) {
      this.consumer.release(d);
      return;
    }
    const w = this.waiter;
    if (w !== undefined) {
      this.waiter = undefined;
      w({ value: d, done: false });
    } else this.buffer.push(d);
  }

  private releaseBuffered(): void {
    for (const d of this.buffer.drain()) this.consumer.release(d);
  }

  private end(): void {
    if (this.ended) return;
    this.ended = true;
    this.releaseBuffered();
    const w = this.waiter;
    this.waiter = undefined;
    w?.({ value: undefined, done: true });
  }

  /**
   * The next delivery, waiting for one if none is buffered; `done` once the consumer was cancelled,
   * failed (a refused subscription) or the client closed; it never rejects (`consumer.state` tells a
   * failure from a cancel). Deliveries from a channel that died since are skipped: the broker
   * redelivers them.
   */
  next(): Promise<IteratorResult<ConsumedMessage>> {
    for (;;) {
      const d = this.buffer.shift();
      if (d === undefined) break;
      // From a channel that died since: the broker redelivers it on the new one.
      if (this.consumer.isLive(d)) return Promise.resolve({ value: d, done: false });
      this.consumer.release(d);
    }
    if (this.ended) return Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve) => {
      this.waiter = resolve;
    });
  }

  /** Breaking out of the loop: cancels the consumer (buffered deliveries requeued, channel closed). */
  async return(): Promise<IteratorResult<ConsumedMessage>> {
    this.end();
    await this.consumer.cancel({ drainTimeout: 0 });
    return { value: undefined, done: true };
  }

  /** Same as breaking out: stops the consumer. */
  async close(): Promise<void> {
    await this.return();
  }

  /** Stops the consumer (close()) at the end of an `await using` block, as breaking out of the loop does. */
  [asyncDispose](): Promise<void> {
    return this.close();
  }

  /** The stream itself: `for await (const msg of stream)`. */
  [Symbol.asyncIterator](): MessageStream {
    return this;
  }
}
