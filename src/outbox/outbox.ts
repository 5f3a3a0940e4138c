/**
 * The durable outbox: accepted messages kept in SQLite (better-sqlite3, WAL: store.ts) until the
 * broker confirmed them, so they survive a crash of the process. Appends are group committed:
 * the appends of one event-loop turn go into one transaction (a large turn in slices of 1000, one
 * per turn), and their promises resolve when it has committed (synced, under FULL). The rows just
 * committed are handed to the relay from memory (handoff.ts, bounded); it reads SQLite only after
 * a restart, after a channel died, or when it lags. Confirmed rows are deleted by runs of ids, the
 * confirms of a few ms in one transaction (not synced on its own: store.ts). Nacked or unroutable
 * messages move to a dead-letter table with the reason.
 *
 * Storage faults (the fault table, faults.ts; typed by storage-faults.ts) never escape as raw
 * SqliteErrors, nor from a timer:
 * - opening checks the file (not a database, corrupt by PRAGMA quick_check, read-only by a write
 *   tried and rolled back) and throws an OutboxError at once;
 * - a file busy or locked by another connection or process is waited out: SQLite waits at most
 *   10 ms per attempt (it blocks the event loop), then appends stay pending and are tried again
 *   with backoff (5 ms doubling to 250 ms); each rejects with a recoverable OutboxError once it
 *   waited `timeout`. Opening is retried the same way;
 * - any other fault rejects the appends of that commit at once, not stored (each is tried alone
 *   first, so one that cannot be stored does not take the others with it);
 * - deletes of confirmed rows and moves to the dead-letter table are kept and retried until they
 *   succeed (a confirmed row left behind would only be sent again after a restart);
 * - every fault is told to `report` (the client's `error` event, rate-limited there).
 */
import { ClientClosedError, ConfigError, OutboxError } from "../errors.js";
import { decodeBasicProperties } from "../protocol/generated/spec.js";
import { Handoff } from "./handoff.js";
import {
  type DeadMove,
  type EncodedMessage,
  encodeProps,
  type NewMessage,
  type Row,
  type StoredMessage,
  toMessage,
} from "./messages.js";
import { toOutboxError } from "./storage-faults.js";
import { betterSqlite3, openStore, type Store } from "./store.js";

export type { NewMessage, StoredMessage } from "./messages.js";

/** `client.publisher({ outbox })`: the SQLite file that holds accepted messages until confirmed. */
export interface OutboxOptions {
  /** SQLite file (created if missing). */
  path: string;
  /**
   * SQLite `synchronous`: FULL (default) syncs every commit of stored messages to disk (survives
   * power loss); NORMAL survives a crash of the process, not of the machine, and is faster.
   * Deletes of confirmed rows are never synced on their own: a power loss may bring back rows
   * already confirmed, which are then sent again (at least once).
   */
  synchronous?: "FULL" | "NORMAL";
}

/** How the outbox waits out a locked file, and whom it tells of faults. */
export interface OutboxHooks {
  /** How long an append may wait for a busy or locked file, in ms (default 60000: publishTimeout). */
  timeout?: number;
  /** Told of each storage fault as it happens. */
  report?: (error: OutboxError) => void;
  /** Told after each commit that stored messages (once per commit, before their promises resolve). */
  stored?: () => void;
  /**
   * @internal Opens the file read-only, as SQLite does by itself when it cannot open it for
   * writing (permissions, a read-only file system): for tests, which run as root.
   */
  readonly?: boolean;
}

/**
 * A message the outbox set aside because the broker would not take it: nacked after the retries,
 * unroutable, or refused (e.g. 404 no such exchange). See `publisher.deadLetters`.
 */
export interface DeadLetter extends StoredMessage {
  /**
   * Why: "Name: message" of the error that ended it (PublishNackedError, UnroutableError,
   * ChannelClosedByBroker).
   */
  reason: string;
  /** When it was set aside. */
  failedAt: Date;
}

/** Backoff between attempts while the file is busy, locked or failing. */
const RETRY_MIN_MS = 5;
const RETRY_MAX_MS = 250;

/**
 * Appends per transaction, at most: a larger turn commits in slices, one per turn, so the relay
 * starts sending the first while the next are stored (each publish still resolves once its own
 * row has committed).
 */
const MAX_COMMIT_ROWS = 1000;
/** Confirms gathered for one delete transaction, in ms (a crash meanwhile only sends them again). */
const DELETE_DELAY_MS = 5;

/** How many bytes of rows just committed wait in memory for the relay (handoff.ts), at most. */
const HANDOFF_MAX_BYTES = 16 * 1024 * 1024;

interface Append extends EncodedMessage {
  since: number;
  resolve: () => void;
  reject: (e: Error) => void;
}

/**
 * The durable outbox behind `client.publisher({ outbox })` (see the module comment). The publisher
 * opens, fills and relays it; applications reach its dead letters through `publisher.deadLetters`.
 */
export class Outbox {
  /** The SQLite file. */
  readonly path: string;
  private store: Store | undefined;
  private readonly synchronous: "FULL" | "NORMAL";
  private readonly readonly: boolean;
  private readonly timeout: number;
  private readonly report: (error: OutboxError) => void;
  private readonly onStored: () => void;
  private batch: Append[] = [];
  private deletes: number[] = [];
  private moves: DeadMove[] = [];
  /** Rows just committed, for the relay. */
  private readonly handoff = new Handoff(HANDOFF_MAX_BYTES);
  private rows = 0;
  private flushScheduled = false;
  private deleteTimer: NodeJS.Timeout | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private retryDelay = 0;
  /** The fault the last attempt met, until one succeeds. */
  private fault: OutboxError | undefined;
  /** A permanent fault found while opening late (after the file was locked): nothing can be stored. */
  private broken: OutboxError | undefined;
  private closed = false;

  private constructor(options: OutboxOptions, hooks: OutboxHooks) {
    this.path = options.path;
    this.synchronous = options.synchronous ?? "FULL";
    this.readonly = hooks.readonly ?? false;
    this.timeout = hooks.timeout ?? 60_000;
    this.report = hooks.report ?? (() => {});
    this.onStored = hooks.stored ?? (() => {});
    try {
      this.opened(openStore(this.path, this.synchronous, this.readonly));
    } catch (e) {
      const err = toOutboxError(e, this.path, "opening it");
      if (!err.recoverable) throw err;
      this.failed(err); // locked by another process: opened later, appends wait meanwhile
    }
  }

  /**
   * Opens the outbox. Throws an OutboxError when the file cannot serve as one (not a database,
   * corrupt, read-only, cannot be opened), a MissingDependencyError when better-sqlite3 is not
   * installed; a file locked by another process is opened later.
   */
  static open(options: OutboxOptions, hooks: OutboxHooks = {}): Outbox {
    betterSqlite3(); // not installed: a MissingDependencyError, not an OutboxError about the file
    return new Outbox(options, hooks);
  }

  /** Stored messages not yet confirmed (and appends waiting to be stored). */
  count(): number {
    return this.rows + this.batch.length;
  }

  /** Messages in the dead-letter table (a COUNT over its primary key: no bodies read); 0 when it cannot be read. */
  deadLetterCount(): number {
    if (this.closed || this.store === undefined) return 0;
    try {
      return this.store.deadLetterCount();
    } catch {
      return 0;
    }
  }

  /** Stores a message; resolves once its transaction committed, rejects with an OutboxError if it could not be. */
  append(msg: NewMessage): Promise<void> {
    if (this.closed) return Promise.reject(new ConfigError("the outbox is closed"));
    if (this.broken !== undefined) return Promise.reject(this.broken);
    // Encoding errors (a bad header) are the caller's, before anything is stored.
    const props = encodeProps(msg.properties);
    return new Promise((resolve, reject) => {
      this.batch.push({ msg, props, since: Date.now(), resolve, reject });
      this.retryTimer?.ref(); // waiting out a lock: this append's promise must settle
      this.schedule();
    });
  }

  /** The broker confirmed it: delete (group committed, confirms of a few ms together). */
  confirmed(id: number): void {
    this.deletes.push(id);
    if (this.deleteTimer !== undefined || this.closed) return;
    this.deleteTimer = setTimeout(() => {
      this.deleteTimer = undefined;
      this.flush();
    }, DELETE_DELAY_MS);
  }

  /** Moves a row to the dead-letter table (group committed). */
  deadLetter(id: number, reason: string): void {
    this.moves.push({ id, reason, at: Date.now() });
    this.schedule();
  }

  /**
   * Up to `limit` rows after `afterId`, in id order: those just committed from memory, else read
   * from the file (pending appends and deletes committed first). Throws an OutboxError (reported)
   * when the file cannot be read, or is not open yet.
   */
  pending(afterId: number, limit: number): StoredMessage[] {
    let taken = this.handoff.take(afterId, limit);
    if (taken !== undefined && taken.length === 0 && this.batch.length > 0) {
      this.flush(); // appends of this turn: hand them over now
      taken = this.handoff.take(afterId, limit);
    }
    if (taken !== undefined) return taken;
    this.flush();
    const rows = this.reading("reading messages to send", (s) => s.pending(afterId, limit));
    this.handoff.read(afterId, rows, limit);
    if (this.deletes.length === 0 && this.moves.length === 0) return rows;
    // Deletes or moves not committed yet (the file is locked): those rows are done with.
    const done = new Set(this.deletes);
    for (const m of this.moves) done.add(m.id);
    return rows.filter((r) => !done.has(r.id));
  }

  /** Up to `limit` dead letters, oldest first. Throws OutboxError (reported) when the file cannot be read. */
  deadLetters(limit: number): DeadLetter[] {
    return this.reading("listing dead letters", (s) => {
      const rows = s.db
        .prepare(
          "SELECT id, exchange, routing_key, mandatory, properties, body, failed_at, reason FROM dead_letters ORDER BY id LIMIT ?",
        )
        .all(limit) as (Row & { failed_at: number; reason: string })[];
      return rows.map((r) => ({ ...toMessage(r), reason: r.reason, failedAt: new Date(r.failed_at) }));
    });
  }

  /** Puts a dead letter back in the queue to send (with a new id, so at the end). */
  retryDeadLetter(id: number): void {
    this.handoff.spill(); // a row not in memory: the relay reads it from the file
    this.rows += this.reading("retrying a dead letter", (s) =>
      s.write((db) =>
        db.transaction(() => {
          const r = db
            .prepare(
              "INSERT INTO messages (exchange, routing_key, mandatory, properties, body, created_at) SELECT exchange, routing_key, mandatory, properties, body, created_at FROM dead_letters WHERE id = ?",
            )
            .run(id);
          db.prepare("DELETE FROM dead_letters WHERE id = ?").run(id);
          return r.changes;
        })(),
      ),
    );
  }

  /** Deletes a dead letter for good. Throws OutboxError (reported) when the file cannot be written. */
  dropDeadLetter(id: number): void {
    this.reading("dropping a dead letter", (s) =>
      s.write((db) => db.prepare("DELETE FROM dead_letters WHERE id = ?").run(id)),
    );
  }

  /** Commits pending appends, deletes and dead-letter moves now (unless a retry is already armed). */
  flush(): void {
    this.flushScheduled = false;
    if (this.closed || this.retryTimer !== undefined) return;
    this.commit();
  }

  /**
   * Commits what it can, then closes the file: appends not stored yet reject with ClientClosedError.
   * Stored rows stay for the next run. Idempotent.
   */
  close(): void {
    if (this.closed) return;
    this.clearRetry();
    this.commit(true); // a last attempt
    this.clearRetry();
    if (this.deleteTimer !== undefined) clearTimeout(this.deleteTimer);
    this.deleteTimer = undefined;
    this.closed = true;
    const left = this.batch;
    this.batch = [];
    if (left.length > 0) {
      const f = this.fault ?? this.broken;
      const err = new ClientClosedError(
        `the publisher closed before the message could be stored in the outbox at ${this.path}${f ? ` (${f.message})` : ""}`,
        f ? { cause: f } : undefined,
      );
      for (const a of left) a.reject(err);
    }
    this.handoff.clear();
    this.store?.db.close();
    this.store = undefined;
  }

  // ─── committing, and waiting out faults ────────────────────────────────

  private opened(store: Store): void {
    this.store = store;
    this.rows = store.rows();
  }

  private schedule(): void {
    if (this.flushScheduled || this.closed) return;
    this.flushScheduled = true;
    setImmediate(() => this.flush());
  }

  /**
   * One attempt at what is pending: a slice of the appends (`all`: every slice), the deletes and
   * moves; a fault arms the retry (never throws).
   */
  private commit(all = false): void {
    if (this.broken !== undefined) {
      this.rejectAll(this.broken);
      return;
    }
    if (this.store === undefined && !this.openLate()) return;
    const store = this.store!;
    do {
      if (!this.commitAppends(store)) return;
    } while (all && this.batch.length > 0);
    if (!this.commitRemovals(store)) return;
    if (this.batch.length > 0) this.schedule(); // the next slice, next turn
    this.fault = undefined;
    this.retryDelay = 0;
  }

  /** Opens the file after it was locked at start-up; false while it cannot be. */
  private openLate(): boolean {
    try {
      this.opened(openStore(this.path, this.synchronous, this.readonly));
      return true;
    } catch (e) {
      const err = toOutboxError(e, this.path, "opening it");
      if (err.recoverable) {
        this.expire(err);
        this.failed(err);
      } else {
        this.broken = err;
        this.report(err);
        this.rejectAll(err);
      }
      return false;
    }
  }

  private commitAppends(store: Store): boolean {
    const pending = this.batch;
    if (pending.length === 0) return true;
    const batch = pending.length > MAX_COMMIT_ROWS ? pending.slice(0, MAX_COMMIT_ROWS) : pending;
    const rest = batch === pending ? [] : pending.slice(MAX_COMMIT_ROWS);
    let ids: number[];
    try {
      ids = store.insert(batch);
    } catch (e) {
      const err = toOutboxError(e, this.path, "storing messages");
      if (err.recoverable) {
        this.expire(err);
        this.failed(err);
        return false;
      }
      this.report(err);
      this.batch = rest;
      return this.storeEach(store, batch, err);
    }
    this.batch = rest;
    this.rows += batch.length;
    for (let i = 0; i < batch.length; i++) this.handoff.add(stored(ids[i]!, batch[i]!));
    this.onStored();
    for (const a of batch) a.resolve();
    return true;
  }

  /**
   * After a permanent fault on a group commit: each append alone, in order, so that only those that
   * cannot be stored reject. A lock met meanwhile puts the rest back to wait.
   */
  private storeEach(store: Store, batch: Append[], first: OutboxError): boolean {
    if (batch.length === 1) {
      batch[0]!.reject(first);
      return true;
    }
    let any = false;
    for (let i = 0; i < batch.length; i++) {
      const a = batch[i]!;
      try {
        const [id] = store.insert([a]);
        this.rows += 1;
        this.handoff.add(stored(id!, a));
        if (!any) this.onStored();
        any = true;
        a.resolve();
      } catch (e) {
        const err = toOutboxError(e, this.path, "storing a message");
        if (err.recoverable) {
          this.batch = batch.slice(i).concat(this.batch);
          this.expire(err);
          this.failed(err);
          return false;
        }
        a.reject(err);
      }
    }
    return true;
  }

  private commitRemovals(store: Store): boolean {
    if (this.deletes.length > 0) {
      const ids = this.deletes;
      try {
        this.rows -= store.remove(ids);
        this.deletes = [];
        if (this.deleteTimer !== undefined) clearTimeout(this.deleteTimer);
        this.deleteTimer = undefined;
      } catch (e) {
        this.failed(toOutboxError(e, this.path, "deleting confirmed messages"));
        return false;
      }
    }
    if (this.moves.length > 0) {
      const moves = this.moves;
      try {
        this.rows -= store.move(moves);
        this.moves = [];
      } catch (e) {
        this.failed(toOutboxError(e, this.path, "moving a message to the dead-letter table"));
        return false;
      }
    }
    return true;
  }

  /** Rejects the appends that waited `timeout` for a busy or locked file (oldest first). */
  private expire(cause: OutboxError): void {
    const limit = Date.now() - this.timeout;
    let n = 0;
    while (n < this.batch.length && this.batch[n]!.since <= limit) n++;
    if (n === 0) return;
    const err = new OutboxError(
      `the outbox at ${this.path} stayed busy or locked for ${this.timeout} ms (publishTimeout): the message was not stored; publish it again (another connection or process holds a lock on the file: let one process at a time use it)`,
      { sqliteCode: cause.sqliteCode, path: this.path, cause },
    );
    for (const a of this.batch.splice(0, n)) a.reject(err);
  }

  /** Tells of a fault and tries again after a backoff. */
  private failed(err: OutboxError): void {
    this.fault = err;
    this.report(err);
    if (this.closed || this.retryTimer !== undefined) return;
    this.retryDelay = Math.min(RETRY_MAX_MS, Math.max(RETRY_MIN_MS, this.retryDelay * 2));
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      if (!this.closed) this.commit();
    }, this.retryDelay);
    // Appends waiting keep the process alive (their promises must settle); deletes alone do not.
    if (this.batch.length === 0) this.retryTimer.unref();
  }

  private clearRetry(): void {
    if (this.retryTimer !== undefined) clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
  }

  private rejectAll(err: Error): void {
    const batch = this.batch;
    this.batch = [];
    for (const a of batch) a.reject(err);
  }

  /** Runs `fn` on the open database; its faults (or the file not being open) throw as reported OutboxErrors. */
  private reading<T>(doing: string, fn: (s: Store) => T): T {
    const store = this.store;
    if (store === undefined || this.closed) {
      throw (
        this.broken ??
        this.fault ??
        new OutboxError(`the outbox at ${this.path} is closed`, {
          sqliteCode: "SQLITE_MISUSE",
          path: this.path,
        })
      );
    }
    try {
      return fn(store);
    } catch (e) {
      const err = toOutboxError(e, this.path, doing);
      this.report(err);
      throw err;
    }
  }
}

/**
 * An append just committed as row `id`, for the handoff. Its properties object is the publisher's
 * own copy; one with headers or a timestamp (objects the application may change once publish()
 * resolved) is decoded from what was stored instead.
 */
function stored(id: number, a: EncodedMessage): StoredMessage {
  const m = a.msg;
  const p = m.properties;
  const properties =
    p.headers === undefined && p.timestamp === undefined ? p : decodeBasicProperties(a.props, 0);
  return {
    id,
    exchange: m.exchange,
    routingKey: m.routingKey,
    mandatory: m.mandatory,
    properties,
    body: m.body,
  };
}
