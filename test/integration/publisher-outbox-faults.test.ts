/**
 * The durable outbox's own storage faults, against the real broker and real SQLite files: a file
 * that is not a database, corruption found at start-up, a read-only database, a write lock held by
 * another process (at start-up, longer than publishTimeout, and in the middle of a stream), a full
 * disk (a small tmpfs) and a file-size limit (RLIMIT_FSIZE in a child process). Every fault is a
 * typed OutboxError (recoverable only for a lock), nothing escapes uncaught, and every publish that
 * resolved is stored and delivered.
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { mkdtemp, open, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
import { type Client, ConfigError, OutboxError } from "../../src/index.js";
import { Outbox } from "../../src/outbox/outbox.js";
import { useAdmin } from "../support/admin.js";
import { rejection, within } from "../support/async.js";
import { useClients } from "../support/clients.js";
import { closedPort } from "../support/ports.js";
import { drainQueue, messageIds } from "../support/queue.js";
import { thrown } from "../support/throws.js";
import { waitFor } from "../support/wait.js";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const LOCK_CHILD = join(ROOT, "test/fixtures/sqlite-lock-child.ts");
const STORE_CHILD = join(ROOT, "test/fixtures/outbox-store-child.ts");

const admin = useAdmin();
const children: ChildProcess[] = [];
const tempDirs: string[] = [];
const mounts: string[] = [];

// afterEach hooks run in the reverse order of registration: first the other processes are
// killed (a lock they hold is gone), then the clients close, then their files and mounts go.
afterEach(async () => {
  for (const m of mounts.splice(0)) spawnSync("umount", [m]);
  for (const d of tempDirs.splice(0)) await rm(d, { recursive: true, force: true });
});
const newClient = useClients("warren-outbox-faults");
afterEach(() => {
  for (const child of children.splice(0)) if (child.exitCode === null) child.kill("SIGKILL");
});

// ─── helpers ────────────────────────────────────────────────────────────────

/** A durable queue of the test's own (deleted after it). */
async function queue(): Promise<string> {
  const name = admin.queueName("warren.test.outbox-faults");
  await admin.pub.queueDeclare({ queue: name, durable: true });
  return name;
}

function client(): Client {
  return newClient().client;
}

/** A client that never reaches a broker: what it publishes through an outbox stays stored. */
async function offlineClient(): Promise<Client> {
  return newClient({ url: `amqp://guest:guest@127.0.0.1:${await closedPort()}/`, closeTimeout: 200 }).client;
}

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "warren-outbox-faults-"));
  tempDirs.push(dir);
  return dir;
}

async function outboxPath(): Promise<string> {
  return join(await tempDir(), "outbox.db");
}

/** The client's `error` events that are OutboxErrors. */
function outboxReports(c: Client): OutboxError[] {
  const seen: OutboxError[] = [];
  c.on("error", (e) => {
    if (e instanceof OutboxError) seen.push(e);
  });
  return seen;
}

interface Lock {
  /** Resolves once the other process holds the lock. */
  locked: Promise<void>;
  /** Tells it to commit and exit; resolves once it has. */
  release(): Promise<void>;
}

/** Another process (test/fixtures/sqlite-lock-child.ts) takes the write lock on `path` with BEGIN EXCLUSIVE. */
function lockedByAnotherProcess(path: string): Lock {
  const child = spawn(process.execPath, ["--import", "tsx", LOCK_CHILD, path], {
    cwd: ROOT,
    stdio: ["pipe", "pipe", "pipe"],
  });
  children.push(child);
  let out = "";
  let err = "";
  const waiters: { line: string; resolve: () => void }[] = [];
  child.stdout!.on("data", (d: Buffer) => {
    out += d.toString();
    for (const w of [...waiters]) if (out.split("\n").includes(w.line)) w.resolve();
  });
  child.stderr!.on("data", (d: Buffer) => {
    err += d.toString();
  });
  const exited = new Promise<number | null>((r) => child.on("exit", (code) => r(code)));
  const printed = (line: string) =>
    Promise.race([
      new Promise<void>((resolve) => {
        if (out.split("\n").includes(line)) resolve();
        else waiters.push({ line, resolve });
      }),
      exited.then((code) => {
        if (!out.split("\n").includes(line))
          throw new Error(`the lock holder exited (${code}) before printing "${line}": ${err}`);
      }),
    ]);
  return {
    locked: within(printed("locked"), 15_000, "the other process's lock"),
    release: async () => {
      child.stdin!.write("release\n");
      await within(printed("released"), 10_000, "the other process's release");
      await within(exited, 10_000, "the lock holder's exit");
    },
  };
}

/** Root may mount a tmpfs here (CI containers often may not): probed once, with a mount and umount. */
function tmpfsMountable(): boolean {
  if (process.platform !== "linux" || process.getuid?.() !== 0) return false;
  const probe = spawnSync("mktemp", ["-d"], { encoding: "utf8" }).stdout.trim();
  if (!probe) return false;
  const ok = spawnSync("mount", ["-t", "tmpfs", "-o", "size=64k", "tmpfs", probe]).status === 0;
  if (ok) spawnSync("umount", [probe]);
  spawnSync("rmdir", [probe]);
  return ok;
}
const canMountTmpfs = tmpfsMountable();

// ─── faults found at start-up ───────────────────────────────────────────────

describe("faults found when the outbox is opened", () => {
  it("a file that is not a database: client.publisher() throws OutboxError (SQLITE_NOTADB) naming the file, and leaves it alone", async () => {
    const path = await outboxPath();
    const text = "these are not the bytes of an SQLite database\n".repeat(20);
    await writeFile(path, text);
    const c = client();
    const err = thrown(() => c.publisher({ outbox: { path } }));
    expect(err).toBeInstanceOf(OutboxError);
    expect(err).toMatchObject({
      name: "OutboxError",
      code: "OUTBOX_ERROR",
      sqliteCode: "SQLITE_NOTADB",
      path,
      recoverable: false,
    });
    expect((err as Error).message).toContain(path);
    expect((err as Error).message).toMatch(/not an SQLite database: point outbox\.path at/);
    expect(await readFile(path, "utf8")).toBe(text);
    // The client is not harmed: a publisher without an outbox works.
    const q = await queue();
    await c.ready();
    await c.publisher().publish({ exchange: "", routingKey: q, body: "fine" });
  });

  it("corruption is found at start-up (PRAGMA quick_check): OutboxError (SQLITE_CORRUPT), before anything is relayed", async () => {
    const path = await outboxPath();
    const first = await offlineClient();
    const pubA = first.publisher({ outbox: { path } });
    const body = Buffer.alloc(300, 0x62);
    await Promise.all(
      Array.from({ length: 200 }, (_, i) =>
        pubA.publish({ exchange: "", routingKey: "nowhere", body, properties: { messageId: `c-${i}` } }),
      ),
    );
    expect(pubA.stored).toBe(200);
    await first.close();
    // Garbage over the sixth 4 KiB page: a leaf page of the messages table's b-tree.
    expect((await stat(path)).size).toBeGreaterThan(10 * 4096);
    const fd = await open(path, "r+");
    await fd.write(Buffer.alloc(4096, 0xab), 0, 4096, 5 * 4096);
    await fd.close();

    const err = thrown(() => client().publisher({ outbox: { path } }));
    expect(err).toBeInstanceOf(OutboxError);
    expect(err).toMatchObject({ sqliteCode: "SQLITE_CORRUPT", path, recoverable: false });
    expect((err as Error).message).toMatch(/corrupt.*restore it from a backup, or move it away/);
  });

  it("a read-only database (opened read-only: root may write any file) is refused at once with OutboxError (SQLITE_READONLY)", async () => {
    const path = await outboxPath();
    Outbox.open({ path }).close(); // a valid outbox file
    const err = thrown(() => Outbox.open({ path }, { readonly: true }));
    expect(err).toBeInstanceOf(OutboxError);
    expect(err).toMatchObject({ sqliteCode: "SQLITE_READONLY", path, recoverable: false });
    expect((err as Error).message).toMatch(/cannot be written.*give the process write access/);
    // The same file, writable, still works.
    const o = Outbox.open({ path });
    expect(o.count()).toBe(0);
    o.close();
  });

  it("a missing directory: OutboxError (SQLITE_CANTOPEN), not a TypeError", async () => {
    const path = join(await tempDir(), "no-such-dir", "outbox.db");
    const err = thrown(() => client().publisher({ outbox: { path } }));
    expect(err).toBeInstanceOf(OutboxError);
    expect(err).toMatchObject({ sqliteCode: "SQLITE_CANTOPEN", path, recoverable: false });
  });
});

// ─── a lock held by another process ─────────────────────────────────────────

describe("a write lock held by another process", () => {
  it("at start-up: publisher() returns, publishes wait (reported as a recoverable OutboxError), then are stored and delivered once the lock is gone", async () => {
    const q = await queue();
    const path = await outboxPath();
    // A new file, created and locked by the other process: not even readable while it holds the lock.
    const lock = lockedByAnotherProcess(path);
    await lock.locked;
    const c = client();
    const reports = outboxReports(c);
    await c.ready();
    const pub = c.publisher({ outbox: { path }, publishTimeout: 30_000 });
    let resolved = 0;
    const all = Promise.all(
      Array.from({ length: 50 }, (_, i) =>
        pub
          .publish({ exchange: "", routingKey: q, body: `l-${i}`, properties: { messageId: `l-${i}` } })
          .then(() => {
            resolved += 1;
          }),
      ),
    );
    await waitFor(() => reports.length > 0, "the lock reported on the client's error event", 10_000);
    expect(resolved).toBe(0); // nothing is stored while the other process holds the lock
    expect(reports[0]).toMatchObject({ recoverable: true, path });
    expect(reports[0]!.sqliteCode).toMatch(/^SQLITE_(BUSY|LOCKED)/);
    expect(reports[0]!.message).toMatch(/lock/);

    await lock.release();
    await within(all, 10_000, "the publishes after the lock was released");
    await waitFor(() => pub.stored === 0, "the outbox relayed and emptied", 15_000);
    const got = messageIds(await drainQueue(admin.conn, q));
    expect(got).toEqual(Array.from({ length: 50 }, (_, i) => `l-${i}`));
  });

  it("longer than publishTimeout: the publish rejects with a recoverable OutboxError (not ConfigError); once the lock is gone publishing goes on", async () => {
    const q = await queue();
    const path = await outboxPath();
    const c = client();
    const reports = outboxReports(c);
    await c.ready();
    const publishTimeout = 1000;
    const pub = c.publisher({ outbox: { path }, publishTimeout });
    await pub.publish({ exchange: "", routingKey: q, body: "before", properties: { messageId: "before" } });
    await waitFor(() => pub.stored === 0, "the first message relayed", 10_000);

    const lock = lockedByAnotherProcess(path);
    await lock.locked;
    // Date.now(), the clock the outbox measures publishTimeout with.
    const t0 = Date.now();
    const err = await rejection(
      pub.publish({ exchange: "", routingKey: q, body: "during", properties: { messageId: "during" } }),
    );
    const waited = Date.now() - t0;
    expect(err).toBeInstanceOf(OutboxError);
    expect(err).not.toBeInstanceOf(ConfigError);
    expect(err).toMatchObject({ code: "OUTBOX_ERROR", recoverable: true, path });
    expect((err as OutboxError).sqliteCode).toMatch(/^SQLITE_(BUSY|LOCKED)/);
    expect((err as Error).message).toMatch(/stayed busy or locked for 1000 ms.*not stored; publish it again/);
    // Not before publishTimeout; after it by no more than a loaded machine's delay (5x the timeout).
    expect(waited).toBeGreaterThanOrEqual(publishTimeout);
    expect(waited).toBeLessThan(5 * publishTimeout);
    expect(reports.some((r) => r.recoverable)).toBe(true);

    await lock.release();
    await pub.publish({ exchange: "", routingKey: q, body: "after", properties: { messageId: "after" } });
    await waitFor(() => pub.stored === 0, "the outbox emptied", 10_000);
    expect(messageIds(await drainQueue(admin.conn, q))).toEqual(["before", "after"]);
  });

  it("in the middle of a stream: no publish rejects within publishTimeout, every one resolved is delivered, the deletes of confirmed rows catch up", async () => {
    const q = await queue();
    const path = await outboxPath();
    const c = client();
    const reports = outboxReports(c);
    await c.ready();
    const pub = c.publisher({ outbox: { path }, maxInFlight: 200, publishTimeout: 30_000 });
    let resolved = 0;
    const window = (w: number) =>
      Promise.all(
        Array.from({ length: 100 }, (_, j) =>
          pub
            .publish({
              exchange: "",
              routingKey: q,
              body: `s-${w * 100 + j}`,
              properties: { messageId: `s-${w * 100 + j}` },
            })
            .then(() => {
              resolved += 1;
            }),
        ),
      );
    for (let w = 0; w < 5; w++) await window(w);
    const lock = lockedByAnotherProcess(path);
    await lock.locked;
    const rest = (async () => {
      for (let w = 5; w < 20; w++) await window(w);
    })();
    await waitFor(() => reports.length > 0, "the lock reported", 10_000);
    expect(resolved).toBe(500); // stored before the lock; the next ones wait for it
    await lock.release();
    await within(rest, 30_000, "the rest of the stream");
    expect(resolved).toBe(2000);
    await waitFor(() => pub.stored === 0, "the outbox emptied (confirmed rows deleted)", 30_000);
    const got = new Set(messageIds(await drainQueue(admin.conn, q)));
    const missing = Array.from({ length: 2000 }, (_, i) => `s-${i}`).filter((id) => !got.has(id));
    expect(missing).toEqual([]);
  }, 60_000);
});

// ─── no room ────────────────────────────────────────────────────────────────

describe("no room to store", () => {
  it.skipIf(!canMountTmpfs)(
    "a full disk (a 256 KiB tmpfs): the publish that does not fit rejects with OutboxError (SQLITE_FULL), what resolved is stored, and once there is room publishing goes on" +
      (canMountTmpfs ? "" : " [skipped: mounting a tmpfs needs root and a mount namespace that allows it]"),
    async () => {
      const dir = await tempDir();
      expect(spawnSync("mount", ["-t", "tmpfs", "-o", "size=256k", "tmpfs", dir]).status).toBe(0);
      mounts.push(dir);
      const filler = join(dir, "filler");
      await writeFile(filler, Buffer.alloc(96 * 1024));
      const path = join(dir, "outbox.db");
      const c = await offlineClient();
      const pub = c.publisher({ outbox: { path } });
      const body = Buffer.alloc(4096, 0x66);
      let stored = 0;
      let err: unknown;
      for (let i = 0; i < 200 && err === undefined; i++) {
        try {
          await pub.publish({
            exchange: "",
            routingKey: "nowhere",
            body,
            properties: { messageId: `f-${i}` },
          });
          stored += 1;
        } catch (e) {
          err = e;
        }
      }
      expect(err).toBeInstanceOf(OutboxError);
      expect(err).toMatchObject({ sqliteCode: "SQLITE_FULL", path, recoverable: false });
      expect((err as Error).message).toMatch(/full: free some space/);
      expect(stored).toBeGreaterThan(0);
      expect(pub.stored).toBe(stored);

      await rm(filler); // room again
      await pub.publish({
        exchange: "",
        routingKey: "nowhere",
        body: "small",
        properties: { messageId: "room" },
      });
      expect(pub.stored).toBe(stored + 1);
      await c.close();
      const o = Outbox.open({ path });
      expect(o.pending(0, 1000).map((m) => m.properties.messageId)).toEqual([
        ...Array.from({ length: stored }, (_, i) => `f-${i}`),
        "room",
      ]);
      o.close();
    },
  );

  it("a file-size limit (RLIMIT_FSIZE, in a child process): the write past it rejects with OutboxError, nothing uncaught, every message reported stored is in the file", async () => {
    const path = await outboxPath();
    const port = await closedPort();
    const child = spawn(
      "bash",
      [
        "-c",
        'ulimit -f 256 && exec "$0" "$@"', // 256 KiB
        process.execPath,
        "--import",
        "tsx",
        STORE_CHILD,
        `amqp://guest:guest@127.0.0.1:${port}/`,
        path,
        "4096",
        "1000",
      ],
      { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] },
    );
    children.push(child);
    let out = "";
    let err = "";
    child.stdout!.on("data", (d: Buffer) => {
      out += d.toString();
    });
    child.stderr!.on("data", (d: Buffer) => {
      err += d.toString();
    });
    const code = await within(
      new Promise<number | null>((r) => child.on("close", (c) => r(c))),
      30_000,
      "the child's exit",
    );
    expect(code, err).toBe(0);
    const lines = out.split("\n");
    const stored = lines.filter((l) => /^stored \d+$/.test(l)).length;
    const rejected = lines.find((l) => l.startsWith("rejected "));
    expect(rejected, out).toMatch(/^rejected \{/);
    const e = JSON.parse(rejected!.slice("rejected ".length)) as Record<string, unknown>;
    expect(e).toMatchObject({ name: "OutboxError", code: "OUTBOX_ERROR", path, recoverable: false });
    expect(e["sqliteCode"]).toMatch(/^SQLITE_(IOERR|FULL)/);
    expect(stored).toBeGreaterThan(0);
    console.info(`file-size limit 256 KiB: ${stored} stored, then ${e["sqliteCode"]}: ${e["message"]}`);

    // Without the limit: the file opens (quick_check passes) and holds exactly what was reported stored.
    const o = Outbox.open({ path });
    expect(o.pending(0, 1000).map((m) => m.properties.messageId)).toEqual(
      Array.from({ length: stored }, (_, i) => `s-${i}`),
    );
    o.close();
  });
});
