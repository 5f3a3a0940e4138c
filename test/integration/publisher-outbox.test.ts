/**
 * The durable outbox against a real broker: a publishing process killed with SIGKILL part-way
 * (every message it reported stored is delivered by the next process: at least once), stored rows
 * of a closed publisher sent by the next one, and a throughput smoke comparison with plain confirms.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
import { ClientClosedError } from "../../src/index.js";
import { useAdmin } from "../support/admin.js";
import { deferred, rejection, within } from "../support/async.js";
import { AMQP_URL, uniqueName } from "../support/broker.js";
import { useClients } from "../support/clients.js";
import { closedPort } from "../support/ports.js";
import { drainQueue, messageIds } from "../support/queue.js";
import { waitFor } from "../support/wait.js";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const CHILD = join(ROOT, "test/fixtures/outbox-child.ts");

// ─── helpers ────────────────────────────────────────────────────────────────

const admin = useAdmin();
const client = useClients("warren-outbox");
const children: ChildProcess[] = [];
const tempDirs: string[] = [];

afterEach(async () => {
  for (const child of children.splice(0)) if (child.exitCode === null) child.kill("SIGKILL");
  for (const d of tempDirs.splice(0)) await rm(d, { recursive: true, force: true });
});

/** A durable queue of the test's own (deleted after it). */
async function queue(): Promise<string> {
  const name = admin.queueName("warren.test.outbox");
  await admin.pub.queueDeclare({ queue: name, durable: true });
  return name;
}

async function depth(q: string): Promise<number> {
  return (await admin.pub.queueDeclare({ queue: q, passive: true })).messageCount;
}

async function outboxPath(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "warren-outbox-"));
  tempDirs.push(dir);
  return join(dir, "outbox.db");
}

// ─── a crash ────────────────────────────────────────────────────────────────

describe("a publishing process killed with SIGKILL", () => {
  it("every message it reported stored is delivered by the next process (at least once)", async () => {
    const N = 5000;
    const q = await queue();
    const path = await outboxPath();
    const child = spawn(
      process.execPath,
      ["--import", "tsx", CHILD, AMQP_URL, uniqueName("warren-outbox-child"), q, path, String(N), "50"],
      { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] },
    );
    children.push(child);
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
      child.on("exit", (code, signal) => resolve({ code, signal })),
    );
    const outputClosed = new Promise<void>((resolve) => child.stdout!.on("close", resolve));
    let stderr = "";
    child.stderr!.on("data", (d: Buffer) => {
      stderr += d.toString();
    });
    const stored = new Set<number>();
    let buffered = "";
    let killedAt = -1;
    const killed = deferred();
    child.stdout!.on("data", (d: Buffer) => {
      buffered += d.toString();
      const lines = buffered.split("\n");
      buffered = lines.pop()!;
      for (const line of lines) {
        const m = /^stored (\d+)$/.exec(line);
        if (m) stored.add(Number(m[1]));
      }
      if (killedAt < 0 && stored.size >= 1000) {
        killedAt = stored.size;
        child.kill("SIGKILL");
        killed.resolve();
      }
    });
    const early = exited.then(({ code }) => {
      if (killedAt < 0) throw new Error(`the child exited (${code}) before it was killed: ${stderr}`);
    });
    await within(Promise.race([killed.promise, early]), 30_000, "1000 messages stored by the child");
    const exit = await within(exited, 10_000, "the child's exit");
    await within(outputClosed, 10_000, "the child's stdout");
    expect(exit.signal).toBe("SIGKILL");
    const sentBeforeTheKill = await depth(q);

    // The next process: a publisher on the same outbox.
    const { client: c } = client();
    const pub = c.publisher({ maxInFlight: 1000, outbox: { path } });
    const left = pub.stored;
    await within(c.ready(), 10_000, "the client ready");
    await waitFor(() => pub.stored === 0, "the outbox emptied", 30_000);
    expect(pub.deadLetters.list()).toEqual([]);

    const got = messageIds(await drainQueue(admin.conn, q));
    const distinct = new Set(got);
    console.info(
      `crash: killed after ${killedAt} reported stored (${stored.size} reported in all); ` +
        `${sentBeforeTheKill} in the queue at the kill; ${left} rows left in the outbox; ` +
        `${got.length} delivered, ${distinct.size} distinct, ${got.length - distinct.size} duplicates`,
    );
    expect(left).toBeGreaterThan(0);
    const missing = [...stored].filter((i) => !distinct.has(`m-${i}`));
    expect(missing).toEqual([]);
    for (const id of distinct) expect(id).toMatch(/^m-\d+$/);
    // Nothing arrives that was not stored: the reported ones, plus at most what was committed unreported.
    expect(distinct.size).toBeGreaterThanOrEqual(stored.size);
    expect(distinct.size).toBeLessThanOrEqual(N);
  }, 60_000);
});

// ─── a restart ──────────────────────────────────────────────────────────────

describe("a restart without a crash", () => {
  it("rows stored by a closed publisher are sent, in order, by the next one", async () => {
    const q = await queue();
    const path = await outboxPath();
    // The first client never reaches a broker: everything stays in the outbox.
    const { client: first } = client({
      url: `amqp://guest:guest@127.0.0.1:${await closedPort()}/`,
      closeTimeout: 200,
    });
    const pubA = first.publisher({ outbox: { path } });
    await Promise.all(
      Array.from({ length: 100 }, (_, i) =>
        pubA.publish({ exchange: "", routingKey: q, body: `r-${i}`, properties: { messageId: `r-${i}` } }),
      ),
    );
    expect(pubA.stored).toBe(100);
    await first.close();
    expect(pubA.stored).toBe(100);
    const late = await rejection(pubA.publish({ exchange: "", routingKey: q, body: "late" }));
    expect(late).toBeInstanceOf(ClientClosedError);
    expect((late as ClientClosedError).message).toBe("the publisher is closed");

    const { client: second } = client();
    const pubB = second.publisher({ outbox: { path } });
    expect(pubB.stored).toBe(100);
    await waitFor(() => pubB.stored === 0, "the outbox emptied", 15_000);
    const got = await drainQueue(admin.conn, q);
    expect(messageIds(got)).toEqual(Array.from({ length: 100 }, (_, i) => `r-${i}`));
    expect(got.map((m) => m.body.toString())).toEqual(Array.from({ length: 100 }, (_, i) => `r-${i}`));
  }, 30_000);
});

// ─── throughput (a smoke comparison, not a timed assertion) ─────────────────

describe("throughput", () => {
  it("outbox vs plain confirms, 5000 messages each", async () => {
    const N = 5000;
    const { client: c } = client();
    await c.ready();
    const body = Buffer.alloc(256, 97);

    const q1 = await queue();
    const plain = c.publisher({ maxInFlight: 1000 });
    await plain.publish({ exchange: "", routingKey: q1, body: "warm-up" }); // its channel is open
    let t0 = performance.now();
    await within(
      Promise.all(
        Array.from({ length: N }, (_, i) =>
          plain.publish({ exchange: "", routingKey: q1, body, properties: { messageId: `p-${i}` } }),
        ),
      ),
      30_000,
      "plain publishes",
    );
    const plainMs = performance.now() - t0;

    const rates: string[] = [`plain confirms ${Math.round(N / (plainMs / 1000))}/s`];
    for (const synchronous of ["FULL", "NORMAL"] as const) {
      const q = await queue();
      const ob = c.publisher({ maxInFlight: 1000, outbox: { path: await outboxPath(), synchronous } });
      await ob.publish({ exchange: "", routingKey: q, body: "warm-up" });
      await waitFor(() => ob.stored === 0, "the warm-up message sent");
      t0 = performance.now();
      await within(
        Promise.all(
          Array.from({ length: N }, (_, i) =>
            ob.publish({ exchange: "", routingKey: q, body, properties: { messageId: `o-${i}` } }),
          ),
        ),
        30_000,
        "outbox publishes",
      );
      const storedMs = performance.now() - t0;
      await waitFor(() => ob.stored === 0, "the outbox emptied", 30_000);
      const deliveredMs = performance.now() - t0;
      expect(await depth(q)).toBe(N + 1);
      rates.push(
        `outbox (${synchronous}) stored ${Math.round(N / (storedMs / 1000))}/s, ` +
          `delivered and deleted ${Math.round(N / (deliveredMs / 1000))}/s`,
      );
    }
    expect(await depth(q1)).toBe(N + 1);
    console.info(`throughput, ${N} messages of 256 bytes: ${rates.join("; ")}`);
  }, 60_000);
});
