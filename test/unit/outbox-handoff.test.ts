/**
 * The outbox's in-memory handoff (src/outbox/handoff.ts): rows just committed go to the relay from
 * memory, each once, in id order; a reader that went back, a handoff past its bound, or a row stored
 * elsewhere sends the reader to SQLite until it has read everything stored.
 */
import { describe, expect, it } from "vitest";
import { Handoff } from "../../src/outbox/handoff.js";
import type { StoredMessage } from "../../src/outbox/messages.js";

function row(id: number, bytes = 10): StoredMessage {
  return {
    id,
    exchange: "",
    routingKey: "q",
    mandatory: false,
    properties: { messageId: `m-${id}` },
    body: Buffer.alloc(bytes),
  };
}

const ids = (rows: StoredMessage[] | undefined): number[] | undefined => rows?.map((r) => r.id);

/** A handoff that has read everything stored (nothing) from SQLite, so memory serves after `after`. */
function live(maxBytes = 1 << 20, after = 0): Handoff {
  const h = new Handoff(maxBytes);
  expect(h.take(after, 10)).toBeUndefined(); // at open: rows of an earlier run are in the file
  h.read(after, [], 10);
  return h;
}

describe("outbox handoff", () => {
  it("at open it sends the reader to SQLite, and takes over once SQLite gave fewer rows than asked", () => {
    const h = new Handoff(1 << 20);
    h.add(row(1)); // not held: rows of an earlier run may come first
    expect(h.size).toBe(0);
    expect(h.take(0, 10)).toBeUndefined();
    h.read(0, [row(1), row(2)], 2); // as many as asked: maybe more in the file
    expect(h.take(2, 10)).toBeUndefined();
    h.read(2, [row(3)], 10);
    h.add(row(4));
    expect(ids(h.take(3, 10))).toEqual([4]);
  });

  it("hands out rows in id order, at most `limit` at a time, each once", () => {
    const h = live();
    for (let id = 1; id <= 5; id++) h.add(row(id));
    expect(ids(h.take(0, 2))).toEqual([1, 2]);
    expect(ids(h.take(2, 2))).toEqual([3, 4]);
    expect(ids(h.take(4, 10))).toEqual([5]);
    expect(h.take(5, 10)).toEqual([]);
    expect(h.size).toBe(0);
  });

  it("a reader past some rows (it sent them already) skips them", () => {
    const h = live();
    for (let id = 1; id <= 4; id++) h.add(row(id));
    expect(ids(h.take(2, 10))).toEqual([3, 4]);
  });

  it("a reader that went back (a channel died before its confirms) reads SQLite until it caught up", () => {
    const h = live();
    for (let id = 1; id <= 6; id++) h.add(row(id));
    expect(ids(h.take(0, 3))).toEqual([1, 2, 3]);
    expect(h.take(1, 10)).toBeUndefined(); // rows 2 and 3 are not in memory any more
    h.read(1, [row(2), row(3), row(4)], 3); // a full page: memory still holds 4..6
    expect(ids(h.take(4, 10))).toEqual([5, 6]);
  });

  it("past its bound it spills: later rows come from SQLite, then memory takes over again", () => {
    const h = live(3 * (100 + 256));
    for (let id = 1; id <= 5; id++) h.add(row(id, 100));
    expect(h.size).toBe(3);
    expect(ids(h.take(0, 10))).toEqual([1, 2, 3]);
    h.add(row(6, 100)); // spilled: not held, though there is room again
    expect(h.take(3, 10)).toBeUndefined();
    h.read(3, [row(4), row(5), row(6)], 10);
    h.add(row(7, 100));
    expect(ids(h.take(6, 10))).toEqual([7]);
  });

  it("a row stored without it (a dead letter put back) sends the reader to SQLite after what memory holds", () => {
    const h = live();
    h.add(row(1));
    h.spill();
    h.add(row(3));
    expect(ids(h.take(0, 10))).toEqual([1]);
    expect(h.take(1, 10)).toBeUndefined();
    h.read(1, [row(2), row(3)], 10);
    expect(h.take(3, 10)).toEqual([]);
  });

  it("clear() drops everything and sends the reader to SQLite", () => {
    const h = live();
    h.add(row(1));
    h.clear();
    expect(h.size).toBe(0);
    expect(h.take(0, 10)).toBeUndefined();
  });

  it("holds many rows without quadratic shifting (compacts as it hands out)", () => {
    const h = live(1 << 30);
    for (let id = 1; id <= 5000; id++) h.add(row(id, 1));
    let cursor = 0;
    const seen: number[] = [];
    for (;;) {
      const got = h.take(cursor, 7)!;
      if (got.length === 0) break;
      for (const r of got) seen.push(r.id);
      cursor = got[got.length - 1]!.id;
    }
    expect(seen).toEqual(Array.from({ length: 5000 }, (_, i) => i + 1));
  });
});
