/**
 * The outbox's storage faults: an error thrown by better-sqlite3 (a SqliteError, carrying SQLite's
 * extended result code) turned into a typed OutboxError that names the file and says what to do.
 * Which codes are transient is the fault table's decision (faults.ts: sqliteFaultIsTransient).
 */
import { OutboxError } from "../errors.js";

/** The SQLite result code an error carries (better-sqlite3's SqliteError has it as `code`), if any. */
export function sqliteCodeOf(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null | undefined)?.code;
  return typeof code === "string" && code.startsWith("SQLITE_") ? code : undefined;
}

/** What to do about a result code (by its primary code: SQLITE_IOERR_WRITE → SQLITE_IOERR). */
export function outboxAdvice(sqliteCode: string): string {
  switch (/^SQLITE_[A-Z]+/.exec(sqliteCode)?.[0]) {
    case "SQLITE_BUSY":
    case "SQLITE_LOCKED":
      return "another connection or process holds a lock on it; publishes wait and retry until publishTimeout: let one process at a time use this file";
    case "SQLITE_NOTADB":
      return "it is not an SQLite database: point outbox.path at an outbox or at a new file";
    case "SQLITE_CORRUPT":
      return "the database is corrupt: restore it from a backup, or move it away (sqlite3's .recover may save its rows) and start on a new file";
    case "SQLITE_READONLY":
      return "it cannot be written (a read-only file, directory or file system): give the process write access to the file and its directory";
    case "SQLITE_FULL":
      return "the disk (or a size limit) is full: free some space";
    case "SQLITE_IOERR":
      return "the disk or the file system failed, or a write went past the process's file-size limit (ulimit -f): check them";
    case "SQLITE_CANTOPEN":
      return "it cannot be opened: point outbox.path at a file in an existing, writable directory";
    case "SQLITE_PERM":
    case "SQLITE_AUTH":
      return "access to it was denied: give the process access to the file and its directory";
    default:
      return "see SQLite's documentation of this result code";
  }
}

/** better-sqlite3 checks the directory itself, and throws a TypeError rather than SQLite's SQLITE_CANTOPEN. */
const MISSING_DIRECTORY = /directory does not exist/;

/**
 * `err`, thrown by better-sqlite3 while `doing` something with the outbox at `path`, as an
 * OutboxError (recoverable only when the file is busy or locked). An error that is not SQLite's
 * counts as SQLITE_ERROR (permanent), keeping its message and cause.
 */
export function toOutboxError(err: unknown, path: string, doing: string): OutboxError {
  if (err instanceof OutboxError) return err;
  const message = err instanceof Error ? err.message : String(err);
  const sqliteCode =
    sqliteCodeOf(err) ?? (MISSING_DIRECTORY.test(message) ? "SQLITE_CANTOPEN" : "SQLITE_ERROR");
  return new OutboxError(
    `the outbox at ${path} failed while ${doing} (${sqliteCode}: ${message}): ${outboxAdvice(sqliteCode)}`,
    { sqliteCode, path, cause: err },
  );
}
