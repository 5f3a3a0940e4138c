/**
 * The durable outbox: accepted messages kept in SQLite (better-sqlite3, WAL) until the
 * broker confirmed them, so they survive a crash of the process. Appends are group
 * committed: every append of one event-loop turn goes into one transaction, and their
 * promises resolve when it has committed. Confirmed rows are deleted the same way.
 * Nacked or unroutable messages move to a dead-letter table with the reason.
 *
 * Properties are stored in AMQP's own encoding (so every header type survives exactly).
 */
import Database from "better-sqlite3";
import { ConfigError } from "../errors.js";
import {
  type BasicProperties,
  decodeBasicProperties,
  encodeBasicProperties,
} from "../protocol/generated/spec.js";

export interface OutboxOptions {
  /** SQLite file (created if missing). */
  path: string;
  /**
   * SQLite `synchronous`: FULL (default) syncs every commit to disk (survives power loss);
   * NORMAL survives a crash of the process, not of the machine, and is faster.
   */
  synchronous?: "FULL" | "NORMAL";
}

export interface StoredMessage {
  id: number;
  exchange: string;
  routingKey: string;
  mandatory: boolean;
  properties: BasicProperties;
  body: Buffer;
}

export interface DeadLetter extends StoredMessage {
  reason: string;
  failedAt: Date;
}

export interface NewMessage {
  exchange: string;
  routingKey: string;
  mandatory: boolean;
  properties: BasicProperties;
  body: Buffer;
}

interface Row {
  id: number;
  exchange: string;
  routing_key: string;
  mandatory: number;
  properties: Buffer;
  body: Buffer;
}

let scratch = Buffer.allocUnsafe(64 * 1024);

function encodeProps(p: BasicProperties): Buffer {
  for (;;) {
    try {
      const end = encodeBasicProperties(scratch, 0, p);
      return Buffer.from(scratch.subarray(0, end));
    } catch (e) {
      if (!(e instanceof RangeError) || scratch.length > 64 * 1024 * 1024) throw e;
      scratch = Buffer.allocUnsafe(scratch.length * 4);
    }
  }
}

export class Outbox {
  private readonly db: Database.Database;
  private readonly insert: Database.Statement;
  private readonly remove: Database.Statement;
  private readonly select: Database.Statement;
  private readonly toDead: Database.Statement;
  private readonly insertMany: (rows: NewMessage[]) => void;
  private readonly removeMany: (ids: number[]) => number;
  private batch: { msg: NewMessage; resolve: () => void; reject: (e: Error) => void }[] = [];
  private deletes: number[] = [];
  private flushScheduled = false;
  private rows: number;
  private closed = false;

  private constructor(path: string, synchronous: "FULL" | "NORMAL") {
    try {
      this.db = new Database(path);
    } catch (e) {
      throw new ConfigError(`cannot open the outbox at ${path}: ${(e as Error).message}`, { cause: e });
    }
    this.db.pragma("journal_mode = WAL");
    this.db.pragma(`synchronous = ${synchronous}`);
    this.db.exec(`
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
    this.insert = this.db.prepare(
      "INSERT INTO messages (exchange, routing_key, mandatory, properties, body, created_at) VALUES (?, ?, ?, ?, ?, ?)",
    );
    this.remove = this.db.prepare("DELETE FROM messages WHERE id = ?");
    this.select = this.db.prepare(
      "SELECT id, exchange, routing_key, mandatory, properties, body FROM messages WHERE id > ? ORDER BY id LIMIT ?",
    );
    this.toDead = this.db.prepare(
      "INSERT INTO dead_letters SELECT id, exchange, routing_key, mandatory, properties, body, created_at, ?, ? FROM messages WHERE id = ?",
    );
    this.insertMany = this.db.transaction((rows: NewMessage[]) => {
      const now = Date.now();
      for (const m of rows) {
        this.insert.run(
          m.exchange,
          m.routingKey,
          m.mandatory ? 1 : 0,
          encodeProps(m.properties),
          m.body,
          now,
        );
      }
    });
    this.removeMany = this.db.transaction((ids: number[]) => {
      let n = 0;
      for (const id of ids) n += this.remove.run(id).changes;
      return n;
    });
    this.rows = (this.db.prepare("SELECT count(*) AS n FROM messages").get() as { n: number }).n;
  }

  static open(options: OutboxOptions): Outbox {
    return new Outbox(options.path, options.synchronous ?? "FULL");
  }

  /** Stored messages not yet confirmed. */
  count(): number {
    return this.rows + this.batch.length;
  }

  /** Messages in the dead-letter table (a COUNT over its primary key: no bodies read). */
  deadLetterCount(): number {
    if (this.closed) return 0;
    return (this.db.prepare("SELECT count(*) AS n FROM dead_letters").get() as { n: number }).n;
  }

  /** Stores a message; resolves once its transaction committed. */
  append(msg: NewMessage): Promise<void> {
    if (this.closed) return Promise.reject(new ConfigError("the outbox is closed"));
    // Encoding errors (a bad header) are the caller's, before anything is stored.
    encodeProps(msg.properties);
    return new Promise((resolve, reject) => {
      this.batch.push({ msg, resolve, reject });
      this.schedule();
    });
  }

  /** The broker confirmed it: delete (group committed). */
  confirmed(id: number): void {
    this.deletes.push(id);
    this.schedule();
  }

  /** Moves a row to the dead-letter table. */
  deadLetter(id: number, reason: string): void {
    this.flush();
    const moved = this.db.transaction(() => {
      const r = this.toDead.run(Date.now(), reason, id);
      if (r.changes > 0) this.remove.run(id);
      return r.changes;
    })();
    this.rows -= moved;
  }

  /** Rows after `afterId`, in id order (flushes pending appends and deletes first). */
  pending(afterId: number, limit: number): StoredMessage[] {
    this.flush();
    return (this.select.all(afterId, limit) as Row[]).map(toMessage);
  }

  deadLetters(limit: number): DeadLetter[] {
    const rows = this.db
      .prepare(
        "SELECT id, exchange, routing_key, mandatory, properties, body, failed_at, reason FROM dead_letters ORDER BY id LIMIT ?",
      )
      .all(limit) as (Row & { failed_at: number; reason: string })[];
    return rows.map((r) => ({ ...toMessage(r), reason: r.reason, failedAt: new Date(r.failed_at) }));
  }

  /** Puts a dead letter back in the queue to send (with a new id, so at the end). */
  retryDeadLetter(id: number): void {
    const moved = this.db.transaction(() => {
      const r = this.db
        .prepare(
          "INSERT INTO messages (exchange, routing_key, mandatory, properties, body, created_at) SELECT exchange, routing_key, mandatory, properties, body, created_at FROM dead_letters WHERE id = ?",
        )
        .run(id);
      this.db.prepare("DELETE FROM dead_letters WHERE id = ?").run(id);
      return r.changes;
    })();
    this.rows += moved;
  }

  dropDeadLetter(id: number): void {
    this.db.prepare("DELETE FROM dead_letters WHERE id = ?").run(id);
  }

  private schedule(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(() => this.flush());
  }

  /** Commits pending appends and deletes now. */
  flush(): void {
    this.flushScheduled = false;
    if (this.closed) return;
    if (this.batch.length > 0) {
      const batch = this.batch;
      this.batch = [];
      try {
        this.insertMany(batch.map((b) => b.msg));
        this.rows += batch.length;
        for (const b of batch) b.resolve();
      } catch (e) {
        const err = new ConfigError(`the outbox could not store messages: ${(e as Error).message}`, {
          cause: e,
        });
        for (const b of batch) b.reject(err);
      }
    }
    if (this.deletes.length > 0) {
      const ids = this.deletes;
      this.deletes = [];
      this.rows -= this.removeMany(ids);
    }
  }

  close(): void {
    if (this.closed) return;
    this.flush();
    this.closed = true;
    this.db.close();
  }
}

function toMessage(r: Row): StoredMessage {
  return {
    id: r.id,
    exchange: r.exchange,
    routingKey: r.routing_key,
    mandatory: r.mandatory === 1,
    properties: decodeBasicProperties(r.properties, 0),
    body: r.body,
  };
}
