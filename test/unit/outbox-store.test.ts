/**
 * The outbox on a real SQLite file, without a broker (src/outbox/outbox.ts, store.ts): rows just
 * committed reach the relay from memory, with the properties as they were when stored; rows of an
 * earlier run, and rows of a reader that went back, come from the file; deletes of confirmed rows
 * go by runs of ids, at NORMAL under FULL, and every other write is back at FULL.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { Outbox } from "../../src/outbox/outbox.js";
import { openStore } from "../../src/outbox/store.js";

const dirs: string[] = [];
const open: { close(): void }[] = [];

afterEach(() => {
  for (const o of open.splice(0)) o.close();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function file(): string {
  const d = mkdtempSync(join(tmpdir(), "warren-outbox-unit-"));
  dirs.push(d);
  return join(d, "outbox.db");
}

function outbox(path: string): Outbox {
  const o = Outbox.open({ path });
  open.push(o);
  return o;
}

const msg = (i: number, headers?: Record<string, string>) => ({
  exchange: "",
  routingKey: "q",
  mandatory: false,
  properties: { messageId: `m-${i}`, ...(headers ? { headers } : {}) },
  body: Buffer.from(`body ${i}`),
});

describe("outbox on a file", () => {
  it("hands rows just committed to the relay from memory, with their properties as stored", async () => {
    const o = outbox(file());
    expect(o.pending(0, 10)).toEqual([]); // the file is empty: memory takes over
    const headers = { n: "1" };
    await Promise.all([o.append(msg(1, headers)), o.append(msg(2))]);
    headers.n = "changed after publish() resolved";
    const rows = o.pending(0, 10);
    expect(rows.map((r) => r.properties.messageId)).toEqual(["m-1", "m-2"]);
    expect(rows[0]!.properties.headers).toEqual({ n: "1" });
    expect(rows.map((r) => r.body.toString())).toEqual(["body 1", "body 2"]);
    expect(o.pending(rows[1]!.id, 10)).toEqual([]);
  });

  it("appends of this turn are committed and handed over when the relay asks", () => {
    const o = outbox(file());
    expect(o.pending(0, 10)).toEqual([]);
    void o.append(msg(1));
    expect(o.pending(0, 10).map((r) => r.properties.messageId)).toEqual(["m-1"]);
  });

  it("rows of an earlier run, and rows after a reader went back, are read from the file", async () => {
    const path = file();
    const a = outbox(path);
    await Promise.all([1, 2, 3].map((i) => a.append(msg(i))));
    a.close();
    const b = outbox(path);
    expect(b.count()).toBe(3);
    const first = b.pending(0, 10);
    expect(first.map((r) => r.properties.messageId)).toEqual(["m-1", "m-2", "m-3"]);
    await b.append(msg(4));
    const fourth = b.pending(first[2]!.id, 10);
    expect(fourth.map((r) => r.properties.messageId)).toEqual(["m-4"]);
    b.confirmed(first[0]!.id);
    // The channel died before the other confirms: the relay goes back.
    expect(b.pending(first[0]!.id, 10).map((r) => r.properties.messageId)).toEqual(["m-2", "m-3", "m-4"]);
  });

  it("confirmed rows are deleted, whatever their order; the count follows", async () => {
    const o = outbox(file());
    o.pending(0, 10);
    await Promise.all([1, 2, 3, 4, 5, 6].map((i) => o.append(msg(i))));
    const rows = o.pending(0, 10);
    for (const i of [4, 0, 1, 5, 2]) o.confirmed(rows[i]!.id);
    o.flush();
    expect(o.count()).toBe(1);
    o.close();
    const again = outbox(o.path);
    expect(again.pending(0, 10).map((r) => r.properties.messageId)).toEqual(["m-4"]);
  });
});

describe("a large turn of appends", () => {
  it("commits in slices of 1000, one per turn: the relay gets the first before the rest are stored", async () => {
    const o = outbox(file());
    expect(o.pending(0, 10)).toEqual([]);
    const all = Array.from({ length: 2500 }, (_, i) => o.append(msg(i)));
    await all[0];
    expect(o.pending(0, 5000)).toHaveLength(1000);
    await Promise.all(all);
    expect(o.pending(1000, 5000)).toHaveLength(1500);
    expect(o.count()).toBe(2500);
  });

  it("close() stores every slice before closing", async () => {
    const path = file();
    const o = outbox(path);
    const all = Array.from({ length: 2500 }, (_, i) => o.append(msg(i)));
    o.close();
    await Promise.all(all);
    expect(outbox(path).count()).toBe(2500);
  });
});

describe("the store's synchronous levels", () => {
  it("under FULL, deletes run at NORMAL and appends and dead-letter moves at FULL again", () => {
    const s = openStore(file(), "FULL", false);
    open.push(s.db);
    const level = () => (s.db.pragma("synchronous") as { synchronous: number }[])[0]!.synchronous;
    const enc = (i: number) => ({ msg: msg(i), props: Buffer.from([0, 0]) });
    expect(level()).toBe(2);
    const ids = s.insert([enc(1), enc(2), enc(3), enc(4)]);
    expect(s.remove([ids[0]!, ids[1]!])).toBe(2);
    expect(level()).toBe(1);
    s.insert([enc(5)]);
    expect(level()).toBe(2);
    s.remove([ids[2]!]);
    expect(s.move([{ id: ids[3]!, reason: "test", at: 0 }])).toBe(1);
    expect(level()).toBe(2);
    expect(s.rows()).toBe(1);
    expect(s.deadLetterCount()).toBe(1);
  });

  it("under NORMAL it stays at NORMAL", () => {
    const s = openStore(file(), "NORMAL", false);
    open.push(s.db);
    const ids = s.insert([{ msg: msg(1), props: Buffer.from([0, 0]) }]);
    s.remove(ids);
    expect((s.db.pragma("synchronous") as { synchronous: number }[])[0]!.synchronous).toBe(1);
  });
});
