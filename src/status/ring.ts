/** A ring buffer: the last `capacity` items, oldest first. Memory never grows past it. */
import { ConfigError } from "../errors.js";

export class Ring<T> {
  private readonly items: (T | undefined)[];
  /** Where the next item goes. */
  private next = 0;
  private count = 0;
  /** Items pushed out by newer ones since the start. */
  dropped = 0;

  constructor(readonly capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1)
      throw new ConfigError(`a ring buffer holds at least 1 item (got ${capacity})`);
    this.items = new Array<T | undefined>(capacity);
  }

  /** Adds an item, pushing out the oldest when full. */
  push(item: T): void {
    if (this.count === this.capacity) this.dropped++;
    else this.count++;
    this.items[this.next] = item;
    this.next = (this.next + 1) % this.capacity;
  }

  get size(): number {
    return this.count;
  }

  /** A copy, oldest first. */
  toArray(): T[] {
    const out: T[] = [];
    const start = (this.next - this.count + this.capacity) % this.capacity;
    for (let i = 0; i < this.count; i++) out.push(this.items[(start + i) % this.capacity] as T);
    return out;
  }
}
