/** The outbox's storage faults: SQLite result codes as typed OutboxErrors, classified by the fault table. */
import { describe, expect, it } from "vitest";
import { OutboxError } from "../../src/errors.js";
import { isPermanent, isReported, isTransient, sqliteFaultIsTransient } from "../../src/faults.js";
import { outboxAdvice, sqliteCodeOf, toOutboxError } from "../../src/outbox/storage-faults.js";

/** An error shaped as better-sqlite3's SqliteError. */
const sqlite = (code: string, message = "boom") =>
  Object.assign(new Error(message), { name: "SqliteError", code });

const PATH = "/var/lib/app/outbox.db";

describe("storage faults", () => {
  const cases: [string, boolean, RegExp][] = [
    ["SQLITE_BUSY", true, /holds a lock/],
    ["SQLITE_BUSY_SNAPSHOT", true, /holds a lock/],
    ["SQLITE_LOCKED", true, /holds a lock/],
    ["SQLITE_LOCKED_SHAREDCACHE", true, /holds a lock/],
    ["SQLITE_NOTADB", false, /not an SQLite database/],
    ["SQLITE_CORRUPT", false, /corrupt/],
    ["SQLITE_READONLY", false, /write access/],
    ["SQLITE_READONLY_DBMOVED", false, /write access/],
    ["SQLITE_FULL", false, /free some space/],
    ["SQLITE_IOERR_WRITE", false, /file-size limit/],
    ["SQLITE_CANTOPEN", false, /existing, writable directory/],
    ["SQLITE_PERM", false, /access/],
  ];
  for (const [code, transient, advice] of cases) {
    it(`${code}: ${transient ? "transient (recoverable, reported)" : "permanent"}`, () => {
      const original = sqlite(code, "the SQLite message");
      const err = toOutboxError(original, PATH, "storing messages");
      expect(err).toBeInstanceOf(OutboxError);
      expect(err).toMatchObject({
        code: "OUTBOX_ERROR",
        sqliteCode: code,
        path: PATH,
        recoverable: transient,
      });
      expect(err.message).toContain(PATH);
      expect(err.message).toContain(`(${code}: the SQLite message)`);
      expect(err.message).toMatch(advice);
      expect(err.cause).toBe(original);
      expect(sqliteFaultIsTransient(code)).toBe(transient);
      expect(isTransient(err)).toBe(transient);
      expect(isPermanent(err)).toBe(!transient);
      expect(isReported(err)).toBe(transient);
    });
  }

  it("a code that only starts like BUSY is not transient", () => {
    expect(sqliteFaultIsTransient("SQLITE_BUSYNESS")).toBe(false);
    expect(sqliteFaultIsTransient("SQLITE_ERROR")).toBe(false);
  });

  it("better-sqlite3's TypeError for a missing directory is SQLITE_CANTOPEN", () => {
    const err = toOutboxError(
      new TypeError("Cannot open database because the directory does not exist"),
      PATH,
      "opening it",
    );
    expect(err).toMatchObject({ sqliteCode: "SQLITE_CANTOPEN", recoverable: false });
  });

  it("an error that is not SQLite's is SQLITE_ERROR (permanent); an OutboxError is kept as it is", () => {
    expect(toOutboxError(new RangeError("x"), PATH, "storing messages")).toMatchObject({
      sqliteCode: "SQLITE_ERROR",
      recoverable: false,
    });
    expect(toOutboxError("a string", PATH, "storing messages").message).toContain("a string");
    const kept = new OutboxError("kept", { sqliteCode: "SQLITE_CORRUPT", path: PATH });
    expect(toOutboxError(kept, PATH, "opening it")).toBe(kept);
  });

  it("sqliteCodeOf reads only SQLite codes; every primary code has advice", () => {
    expect(sqliteCodeOf(sqlite("SQLITE_FULL"))).toBe("SQLITE_FULL");
    expect(sqliteCodeOf(Object.assign(new Error("x"), { code: "ENOSPC" }))).toBeUndefined();
    expect(sqliteCodeOf(undefined)).toBeUndefined();
    expect(outboxAdvice("SQLITE_SCHEMA")).toMatch(/SQLite's documentation/);
  });
});
