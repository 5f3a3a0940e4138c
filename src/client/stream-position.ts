/**
 * Where a stream consumer resumes after its channel was lost: RabbitMQ streams keep every message
 * and a new subscription starts at the `x-stream-offset` it names, so the consumer tracks the
 * offsets it handed out and not yet acked, and the last one it saw.
 */
import type { FieldValue } from "../protocol/table.js";

export class StreamPosition {
  /** Offsets handed out and not acked. */
  private readonly pending = new Set<number>();
  private last: number | undefined;

  /** `start`: the consumer's `streamOffset` (where the first subscription begins). */
  constructor(private readonly start: FieldValue) {}

  /** A delivery arrived; returns its offset (the `x-stream-offset` header), when it has one. */
  delivered(headers: Record<string, unknown> | undefined): number | undefined {
    const off = headers?.["x-stream-offset"];
    if (typeof off !== "number") return undefined;
    this.pending.add(off);
    this.last = off;
    return off;
  }

  /** The delivery at `offset` was acked. */
  acked(offset: number): void {
    this.pending.delete(offset);
  }

  /**
   * The offset to subscribe from: the first one handed out and not acked, or the one after the
   * last; the first time, the consumer's `streamOffset`.
   */
  resume(): FieldValue {
    if (this.last === undefined) return this.start;
    let from = this.last + 1;
    for (const n of this.pending) if (n < from) from = n;
    this.pending.clear();
    return from;
  }
}
