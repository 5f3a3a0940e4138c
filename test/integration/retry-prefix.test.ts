/**
 * `retry: { prefix }` against the real broker: the retry exchange, the delay queue and the
 * dead-letter queue carry the prefix (and warren's default names are not made), a message goes
 * round the prefixed delay queue and its attempts are counted; everything deleted afterwards.
 */
import { afterAll, describe, expect, it } from "vitest";
import { deadLetterQueueName, delayQueueName, retryExchangeName } from "../../src/index.js";
import { useAdmin } from "../support/admin.js";
import { uniqueName } from "../support/broker.js";
import { useClients } from "../support/clients.js";
import { drainQueue } from "../support/queue.js";
import { until } from "../support/wait.js";

const admin = useAdmin();
const clients = useClients("retry-prefix");

/** A delay no other test uses, so warren's default delay queue for it must not appear. */
const DELAY = 237;
const prefix = uniqueName("team");

// Registered after useAdmin(): after-hooks run in reverse order, so the admin connection is still open.
afterAll(async () => {
  const ch = await admin.conn.openChannel();
  await ch.queueDelete({ queue: delayQueueName(DELAY, prefix) }).catch(() => undefined);
  if (ch.isOpen) await ch.exchangeDelete({ exchange: retryExchangeName(prefix) }).catch(() => undefined);
  if (ch.isOpen) await ch.close();
});

/** The queue exists (a passive declare on a channel of its own: a 404 closes only that one). */
async function exists(queue: string): Promise<boolean> {
  const ch = await admin.conn.openChannel();
  try {
    await ch.queueDeclare({ queue, passive: true });
    return true;
  } catch {
    return false;
  } finally {
    if (ch.isOpen) await ch.close();
  }
}

async function exchangeExists(exchange: string): Promise<boolean> {
  const ch = await admin.conn.openChannel();
  try {
    await ch.exchangeDeclare({ exchange, type: "headers", passive: true });
    return true;
  } catch {
    return false;
  } finally {
    if (ch.isOpen) await ch.close();
  }
}

describe("retry.prefix", () => {
  it("names the retry exchange, the delay queue and the dead-letter queue; attempts are counted through them", async () => {
    const { client } = clients();
    const queue = admin.queueName("prefixed");
    const dead = deadLetterQueueName(queue, prefix);
    await client.declare({ queues: [{ name: queue }] });
    const attempts: number[] = [];
    const consumer = client.consume(
      { queue, maxAttempts: 3, retry: { delays: DELAY, prefix, deadLetter: "queue" } },
      (m) => {
        attempts.push(m.attempt);
        throw new Error("not yet");
      },
    );
    try {
      consumer.on("error", () => undefined);
      await consumer.ready();
      expect(dead).toBe(`${prefix}.dead.${queue}`);
      expect(await exchangeExists(`${prefix}.retry`)).toBe(true);
      expect(await exists(`${prefix}.retry.${DELAY}ms`)).toBe(true);
      expect(await exists(dead)).toBe(true);
      expect(await exists(`warren.retry.${DELAY}ms`)).toBe(false);
      expect(await exists(`warren.dead.${queue}`)).toBe(false);

      await admin.pub.publish("", queue, "m", { messageId: "m" });
      await until(async () => (await drainQueue(admin.conn, dead)).length === 1, "the dead letter", 20_000);
      expect(attempts).toEqual([1, 2, 3]);
      expect(consumer.stats).toMatchObject({ retried: 2, deadLettered: 1 });
    } finally {
      await consumer.cancel();
      const ch = await admin.conn.openChannel();
      await ch.queueDelete({ queue: dead }).catch(() => undefined);
      if (ch.isOpen) await ch.close();
    }
  });
});
