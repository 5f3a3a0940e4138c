/**
 * Rows just committed, handed to the relay from memory, so that it reads SQLite only after a
 * restart, when it went back (a channel died before its confirms), or when it lags: the handoff is
 * bounded (`maxBytes`), and past the bound it spills: later rows stay in SQLite only until the
 * relay has read everything stored, then memory takes over again.
 *
 * The invariant: every stored row with an id above `after` is in `rows` (in id order) or, once
 * spilled, has an id above the last of them. A reader asking for rows after an id below `after`
 * reads SQLite.
 */
import type { StoredMessage } from "./messages.js";

/** What a row costs besides its body (the objects around it, its properties), in bytes. */
const ROW_COST = 256;

export class Handoff {
  private rows: StoredMessage[] = [];
  private head = 0;
  private bytes = 0;
  private after = 0;
  /** Rows of an earlier run, and rows past the bound, are in SQLite only. */
  private spilled = true;

  constructor(private readonly maxBytes: number) {}

  /** Rows held (for tests and metrics). */
  get size(): number {
    return this.rows.length - this.head;
  }

  /** A row just committed (ids increasing). Past the bound it spills: this row and later ones are read from SQLite. */
  add(row: StoredMessage): void {
    if (this.spilled) return;
    const cost = row.body.length + ROW_COST;
    if (this.bytes + cost > this.maxBytes) {
      this.spilled = true;
      return;
    }
    this.rows.push(row);
    this.bytes += cost;
  }

  /** A row was stored without add() (a dead letter put back): it is read from SQLite. */
  spill(): void {
    this.spilled = true;
  }

  /**
   * Up to `limit` rows after `afterId` from memory, each handed out once; undefined when they must
   * be read from SQLite (the reader went back, or memory holds none of them and rows spilled).
   */
  take(afterId: number, limit: number): StoredMessage[] | undefined {
    if (afterId < this.after) return undefined;
    this.after = afterId;
    while (this.head < this.rows.length && this.rows[this.head]!.id <= afterId) this.drop();
    if (this.head === this.rows.length) {
      this.compact();
      return this.spilled ? undefined : [];
    }
    const out: StoredMessage[] = [];
    while (out.length < limit && this.head < this.rows.length) out.push(this.drop());
    this.after = out[out.length - 1]!.id;
    this.compact();
    return out;
  }

  /**
   * SQLite gave `rows` (at most `limit`) after `afterId`, pending appends committed first: fewer
   * than `limit` means every stored row after `afterId`, so memory takes over after the last.
   */
  read(afterId: number, rows: readonly StoredMessage[], limit: number): void {
    if (rows.length >= limit) return;
    this.clear();
    this.spilled = false;
    this.after = rows.length > 0 ? Math.max(afterId, rows[rows.length - 1]!.id) : afterId;
  }

  /** Drops everything: rows are read from SQLite (on close). */
  clear(): void {
    this.rows = [];
    this.head = 0;
    this.bytes = 0;
    this.spilled = true;
  }

  private drop(): StoredMessage {
    const row = this.rows[this.head]!;
    this.rows[this.head] = undefined as unknown as StoredMessage; // let it be collected
    this.head++;
    this.bytes -= row.body.length + ROW_COST;
    return row;
  }

  private compact(): void {
    if (this.head === this.rows.length) {
      this.rows = [];
      this.head = 0;
    } else if (this.head > 1024 && this.head * 2 > this.rows.length) {
      this.rows = this.rows.slice(this.head);
      this.head = 0;
    }
  }
}
