/**
 * The outbox's SQLite file (better-sqlite3, WAL): opening and checking it, and its prepared
 * statements. Properties are stored in AMQP's own encoding (so every header type survives exactly).
 *
 * Appends commit at the configured `synchronous` level. Deletes of confirmed rows commit at NORMAL
 * even under FULL (no fsync of their own): a power loss can only undo deletes not yet synced by a
 * later commit, so rows the broker already confirmed come back and are sent again (at least once,
 * as after a crash between a confirm and its delete). SQLite switches per connection, outside a
 * transaction; every other write switches back first.
 */
import type Database from "better-sqlite3";
import { OutboxError } from "../errors.js";
import { loadPeer } from "../peers.js";
import { type DeadMove, type EncodedMessage, type Row, type StoredMessage, toMessage } from "./messages.js";

/** SQLite's own wait for a lock per attempt, in ms: short, since it blocks the event loop. */
const BUSY_WAIT_MS = 10;

/** The open database and its statements. */
export class Store {
  private readonly insertMany: (rows: EncodedMessage[]) => number[];
  private readonly removeMany: (ids: number[]) => number;
  private readonly moveMany: (moves: DeadMove[]) => number;
  private readonly select: Database.Statement;
  private readonly countRows: Database.Statement;
  private readonly countDead: Database.Statement;
  /** Deletes run at NORMAL (the file is at FULL otherwise). */
  private readonly relax: boolean;
  /** The connection is at NORMAL now (after deletes), to be set back before any other write. */
  private relaxed = false;

  constructor(
    readonly db: Database.Database,
    synchronous: "FULL" | "NORMAL",
  ) {
    const insert = db.prepare(
      "INSERT INTO messages (exchange, routing_key, mandatory, properties, body, created_at) VALUES (?, ?, ?, ?, ?, ?)",
    );
    const remove = db.prepare("DELETE FROM messages WHERE id = ?");
    const removeRange = db.prepare("DELETE FROM messages WHERE id BETWEEN ? AND ?");
    const toDead = db.prepare(
      "INSERT INTO dead_letters SELECT id, exchange, routing_key, mandatory, properties, body, created_at, ?, ? FROM messages WHERE id = ?",
    );
    this.select = db.prepare(
      "SELECT id, exchange, routing_key, mandatory, properties, body FROM messages WHERE id > ? ORDER BY id LIMIT ?",
    );
    this.countRows = db.prepare("SELECT count(*) AS n FROM messages");
    this.countDead = db.prepare("SELECT count(*) AS n FROM dead_letters");
    this.relax = synchronous === "FULL";
    this.insertMany = db.transaction((rows: EncodedMessage[]) => {
      const now = Date.now();
      const ids: number[] = new Array(rows.length);
      for (let i = 0; i < rows.length; i++) {
        const { msg: m, props } = rows[i]!;
        ids[i] = Number(
          insert.run(m.exchange, m.routingKey, m.mandatory ? 1 : 0, props, m.body, now).lastInsertRowid,
        );
      }
      return ids;
    });
    // Confirms come mostly in id order: one DELETE per run of consecutive ids.
    this.removeMany = db.transaction((ids: number[]) => {
      ids.sort((a, b) => a - b);
      let n = 0;
      for (let i = 0; i < ids.length; ) {
        let j = i;
        while (j + 1 < ids.length && ids[j + 1]! <= ids[j]! + 1) j++;
        n += (i === j ? remove.run(ids[i]) : removeRange.run(ids[i], ids[j])).changes;
        i = j + 1;
      }
      return n;
    });
    this.moveMany = db.transaction((moves: DeadMove[]) => {
      let n = 0;
      for (const m of moves) {
        if (toDead.run(m.at, m.reason, m.id).changes > 0) n += remove.run(m.id).changes;
      }
      return n;
    });
  }

  /** Stores the messages in one transaction; their row ids, in order. */
  insert(rows: EncodedMessage[]): number[] {
    this.strict();
    return this.insertMany(rows);
  }

  /** Deletes confirmed rows (at NORMAL under FULL: see the module comment); how many were there. */
  remove(ids: number[]): number {
    if (this.relax && !this.relaxed) {
      // Not a statement prepared once: SQLite applies this pragma when it compiles it.
      this.db.exec("PRAGMA synchronous = NORMAL");
      this.relaxed = true;
    }
    return this.removeMany(ids);
  }

  /** Moves rows to the dead-letter table; how many were there. */
  move(moves: DeadMove[]): number {
    this.strict();
    return this.moveMany(moves);
  }

  /** Runs other writes (dead letters put back or dropped) at the configured level. */
  write<T>(fn: (db: Database.Database) => T): T {
    this.strict();
    return fn(this.db);
  }

  rows(): number {
    return (this.countRows.get() as { n: number }).n;
  }

  deadLetterCount(): number {
    return (this.countDead.get() as { n: number }).n;
  }

  pending(afterId: number, limit: number): StoredMessage[] {
    return (this.select.all(afterId, limit) as Row[]).map(toMessage);
  }

  /** Back to FULL before a write that must be synced (throws as any write would). */
  private strict(): void {
    if (!this.relaxed) return;
    this.db.exec("PRAGMA synchronous = FULL");
    this.relaxed = false;
  }
}

let sqlite: typeof Database | undefined;

/**
 * better-sqlite3, loaded by the first outbox opened (an optional peer package: src/peers.ts), or a
 * MissingDependencyError when it is not installed.
 */
export function betterSqlite3(): typeof Database {
  sqlite ??= loadPeer<typeof Database>("better-sqlite3");
  return sqlite;
}

/**
 * Opens the file and checks it: an SQLite database (SQLITE_NOTADB), not corrupt (PRAGMA
 * quick_check), writable (a write in a transaction rolled back: SQLITE_READONLY, or SQLITE_BUSY
 * while another process holds the write lock). Throws what better-sqlite3 throws, closing the file.
 */
export function openStore(path: string, synchronous: "FULL" | "NORMAL", readonly: boolean): Store {
  const db = new (betterSqlite3())(path, { timeout: BUSY_WAIT_MS, readonly });
  try {
    db.pragma("journal_mode = WAL");
    db.pragma(`synchronous = ${synchronous}`);
    const check = db.pragma("quick_check") as { quick_check: string }[];
    if (check.length !== 1 || check[0]?.quick_check !== "ok") {
      const problems = check.slice(0, 3).map((r) => r.quick_check);
      throw new OutboxError(
        `the outbox at ${path} is corrupt (SQLITE_CORRUPT: PRAGMA quick_check found ${check.length} problem${check.length === 1 ? "" : "s"}: ${problems.join("; ")}): restore it from a backup, or move it away (sqlite3's .recover may save its rows) and start on a new file`,
        { sqliteCode: "SQLITE_CORRUPT", path },
      );
    }
    db.exec(`
      CREATE TABLE IF NOT EXISTS messages (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        exchange TEXT NOT NULL, routing_key TEXT NOT NULL, mandatory INTEGER NOT NULL,
        properties BLOB NOT NULL, body BLOB NOT NULL, created_at INTEGER NOT NULL);
      CREATE TABLE IF NOT EXISTS dead_letters (
        id INTEGER PRIMARY KEY,
        exchange TEXT NOT NULL, routing_key TEXT NOT NULL, mandatory INTEGER NOT NULL,
        properties BLOB NOT NULL, body BLOB NOT NULL, created_at INTEGER NOT NULL,
        failed_at INTEGER NOT NULL, reason TEXT NOT NULL);
    `);
    // A write that changes nothing: the file must take writes now, not at the first publish.
    db.exec("BEGIN IMMEDIATE");
    try {
      db.prepare("DELETE FROM messages WHERE 0").run();
    } finally {
      db.exec("ROLLBACK");
    }
    return new Store(db, synchronous);
  } catch (e) {
    db.close();
    throw e;
  }
}
