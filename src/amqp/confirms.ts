/**
 * Publisher-confirm bookkeeping for one channel: entries by sequence number (from 1
 * after confirm.select), settled by basic.ack / basic.nack, singly or `multiple`
 * (everything up to and including the tag), in any order. Amortised O(1) per entry:
 * a `multiple` walks each sequence number at most once over the channel's life.
 */
export class ConfirmTracker<T> {
  private readonly entries = new Map<number, T>();
  /** Every sequence number below this is settled (or was never tracked). */
  private lowest = 1;
  /** The sequence number the next publish gets. */
  private next = 1;

  /** Entries not yet settled. */
  get size(): number {
    return this.entries.size;
  }

  get nextSeq(): number {
    return this.next;
  }

  /** Takes the next sequence number; tracks `entry` under it unless undefined (fire-and-forget publishes). */
  add(entry: T | undefined): number {
    const seq = this.next++;
    if (entry !== undefined) this.entries.set(seq, entry);
    return seq;
  }

  /** Settles `tag` (and, when `multiple`, every lower one); calls `fn` for each entry, in sequence order. */
  settle(tag: number, multiple: boolean, fn: (seq: number, entry: T) => void): void {
    if (multiple) {
      const upto = Math.min(tag, this.next - 1);
      for (let seq = this.lowest; seq <= upto; seq++) {
        const e = this.entries.get(seq);
        if (e !== undefined) {
          this.entries.delete(seq);
          fn(seq, e);
        }
      }
      if (upto + 1 > this.lowest) this.lowest = upto + 1;
      return;
    }
    const e = this.entries.get(tag);
    if (e !== undefined) {
      this.entries.delete(tag);
      fn(tag, e);
    }
    if (tag === this.lowest) this.advance();
  }

  private advance(): void {
    while (this.lowest < this.next && !this.entries.has(this.lowest)) this.lowest++;
  }

  /** Entries in sequence order (for matching returns). */
  values(): IterableIterator<T> {
    return this.entries.values();
  }

  /** Removes and returns every unsettled entry, in sequence order (the channel closed). */
  drain(): [number, T][] {
    const out = [...this.entries];
    this.entries.clear();
    this.lowest = this.next;
    return out;
  }
}
